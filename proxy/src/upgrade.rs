//! Binary upgrade without dropping a connection (nginx's `USR2`, HAProxy's `-sf`).
//!
//! On SIGUSR2 (`ringwall upgrade`), the running process starts the binary at its own `argv[0]`
//! path (the new build installed there) with its own arguments, and hands it every listening
//! socket: the descriptors are inherited across the `exec`, and `RINGWALL_LISTEN_FDS` says
//! which descriptor is which address. The new process takes them over (checking each is the
//! socket it should be), binds nothing that is already bound, and once all its workers serve it
//! says so on a socket pair (`RINGWALL_UPGRADE_NOTIFY_FD`). Only then does the old process stop
//! accepting and drain: the sockets stay open in the kernel the whole time, so a connection
//! queued on them is accepted by one process or the other, never refused. A new process that
//! fails (a bad configuration, an old binary, no word within 30 s) is stopped, and the old one
//! keeps serving.
//!
//! While both run, neither takes the sockets out of the kernel's group when it drains
//! ([`ringwall_runtime::Shutdown::share_sockets`]).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::control::{Handed, Kind, Sockets};

/// The listening sockets handed over: `tcp|CONFIGURED|BOUND|FD,FD;udp|…`.
const LISTEN_FDS: &str = "RINGWALL_LISTEN_FDS";
/// The descriptor the new process says `ready` on.
const NOTIFY_FD: &str = "RINGWALL_UPGRADE_NOTIFY_FD";
/// How long the old process waits for the new one to serve.
const READY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the new process exited ({0}) before serving; its log says why")]
    Exited(std::process::ExitStatus),
    #[error("no word from the new process within {READY_WAIT:?}: it was stopped")]
    Silent,
    #[error("the inherited sockets cannot be used: {0}")]
    Inherited(String),
}

/// In a process started by a binary upgrade: the sockets it was handed, and where to say
/// that it serves.
pub struct Inherited {
    pub sockets: Vec<Handed>,
    notify: Option<UnixStream>,
}

impl Inherited {
    /// Tells the old process that this one serves (it then drains).
    pub fn notify_ready(&mut self) {
        if let Some(mut notify) = self.notify.take() {
            if let Err(e) = notify.write_all(b"ready\n") {
                tracing::error!("cannot tell the old process that this one serves: {e}");
            }
        }
    }
}

/// The sockets this process inherited from a binary upgrade, if it was started by one.
pub fn inherited() -> Result<Option<Inherited>, UpgradeError> {
    let Ok(text) = std::env::var(LISTEN_FDS) else {
        return Ok(None);
    };
    let sockets = decode(&text).map_err(UpgradeError::Inherited)?;
    let notify = match std::env::var(NOTIFY_FD) {
        Ok(fd) => {
            let fd: i32 = fd
                .parse()
                .map_err(|_| UpgradeError::Inherited(format!("{NOTIFY_FD}={fd:?}")))?;
            Some(ringwall_runtime::adopt_unix_stream(fd)?)
        }
        Err(_) => None,
    };
    Ok(Some(Inherited { sockets, notify }))
}

/// Starts the new process on `sockets` and waits until it serves; returns its process id.
pub fn start_new_process(sockets: &Sockets) -> Result<u32, UpgradeError> {
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_else(|| "ringwall".into());
    let (mut ours, theirs) = UnixStream::pair()?;
    ringwall_runtime::socket2::SockRef::from(&theirs).set_cloexec(false)?;
    let handed = sockets.handover(true)?;
    let spawned = Command::new(&program)
        .args(args)
        .env(LISTEN_FDS, encode(&handed))
        .env(NOTIFY_FD, theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .spawn();
    // Ours again: a later spawn must not inherit them.
    sockets.handover(false)?;
    drop(theirs);
    let mut child = spawned.map_err(|source| UpgradeError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    ours.set_read_timeout(Some(READY_WAIT))?;
    let mut word = [0u8; 6];
    if ours.read_exact(&mut word).is_ok() && &word == b"ready\n" {
        return Ok(child.id());
    }
    // No word: it exited, or it hangs (then it is stopped at once, with no drain of its own
    // that could close the sockets this process still serves on).
    if let Some(status) = child.try_wait()? {
        return Err(UpgradeError::Exited(status));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(UpgradeError::Silent)
}

fn encode(handed: &[Handed]) -> String {
    handed
        .iter()
        .map(|h| {
            let kind = match h.kind {
                Kind::Tcp => "tcp",
                Kind::Udp => "udp",
            };
            let fds: Vec<String> = h.fds.iter().map(ToString::to_string).collect();
            format!("{kind}|{}|{}|{}", h.configured, h.bound, fds.join(","))
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn decode(text: &str) -> Result<Vec<Handed>, String> {
    let bad = |part: &str| format!("{LISTEN_FDS}: cannot read {part:?}");
    text.split(';')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let fields: Vec<&str> = part.split('|').collect();
            let [kind, configured, bound, fds] = fields[..] else {
                return Err(bad(part));
            };
            let kind = match kind {
                "tcp" => Kind::Tcp,
                "udp" => Kind::Udp,
                _ => return Err(bad(part)),
            };
            Ok(Handed {
                kind,
                configured: configured.parse().map_err(|_| bad(part))?,
                bound: bound.parse().map_err(|_| bad(part))?,
                fds: fds
                    .split(',')
                    .filter(|fd| !fd.is_empty())
                    .map(|fd| fd.parse().map_err(|_| bad(part)))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handed_sockets_read_back() {
        let handed = vec![
            Handed {
                kind: Kind::Tcp,
                configured: "127.0.0.1:0".parse().unwrap(),
                bound: "127.0.0.1:4000".parse().unwrap(),
                fds: vec![5, 6],
            },
            Handed {
                kind: Kind::Udp,
                configured: "[::1]:53".parse().unwrap(),
                bound: "[::1]:53".parse().unwrap(),
                fds: vec![7],
            },
        ];
        let back = decode(&encode(&handed)).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].kind, Kind::Tcp);
        assert_eq!(back[0].bound, handed[0].bound);
        assert_eq!(back[0].fds, vec![5, 6]);
        assert_eq!(back[1].configured, handed[1].configured);
        assert!(decode("tcp|nonsense").is_err());
        assert!(decode("sctp|1.2.3.4:1|1.2.3.4:1|3").is_err());
        assert!(decode("tcp|1.2.3.4:1|1.2.3.4:1|x").is_err());
    }
}
