//! Binary upgrade (SIGUSR2, `ringwall upgrade`): a new process takes over the listening
//! sockets, the old one finishes its requests and exits, and no connection is refused on the
//! way; a new process that cannot start leaves the old one serving.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{echo, run_ringwall, Client, Origin, Proxy, TempFile};

/// Kills a process by id when dropped (the new process outlives the harness's `Proxy`).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')))
}

fn pid_in(file: &TempFile) -> Option<u32> {
    std::fs::read_to_string(&file.path)
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn an_upgrade_hands_the_sockets_over_and_the_old_process_drains() {
    let origin = Origin::start(|req, conn| {
        if req.target == "/slow" {
            std::thread::sleep(Duration::from_millis(1500));
        }
        echo("origin", req, conn)
    });
    let pid_file = TempFile::new("upgrade.pid", "");
    let mut proxy = Proxy::start(&[origin.addr], &["--pid-file", &pid_file.display()]);
    let old = proxy.pid();
    assert!(common::wait_until(Duration::from_secs(3), || pid_in(
        &pid_file
    ) == Some(
        old
    )));
    let addr = proxy.addr;

    // A request in flight on the old process when the upgrade comes.
    let slow = std::thread::spawn(move || {
        Client::connect(addr).request("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
    });
    std::thread::sleep(Duration::from_millis(200));
    // New connections all along: every one is served, by one process or the other.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let prober = {
        let (stop, served) = (stop.clone(), served.clone());
        std::thread::spawn(move || -> Result<(), String> {
            for i in 0..10_000 {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let stream = std::net::TcpStream::connect(addr)
                    .map_err(|e| format!("connection {i} refused: {e}"))?;
                drop(stream);
                let response = Client::connect(addr)
                    .request("GET /probe HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
                if response.status != 200 {
                    return Err(format!("probe {i}: {}", response.status));
                }
                served.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })
    };
    let sent = run_ringwall(&["upgrade", "--pid-file", &pid_file.display()]);
    assert!(sent.status.success(), "{}", sent.stderr);
    assert!(sent.stdout.contains("upgrade sent"), "{}", sent.stdout);

    let exited = proxy.wait_exit(Duration::from_secs(15));
    let new = pid_in(&pid_file).expect("the new process wrote the pid file");
    let _cleanup = KillOnDrop(new);
    let status = exited.unwrap_or_else(|| panic!("the old process still runs:\n{}", proxy.logs()));
    assert!(status.success(), "the old process exits 0: {status}");
    assert_ne!(new, old);
    assert!(alive(new), "the new process serves");
    let logs = proxy.logs();
    assert!(
        logs.contains("binary upgrade: the new process serves"),
        "{logs}"
    );
    assert!(
        logs.contains("serving on the sockets of the old process"),
        "{logs}"
    );

    let slow = slow.join().unwrap();
    assert_eq!(
        slow.status, 200,
        "the request in flight on the old process finished"
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    prober
        .join()
        .unwrap()
        .expect("no connection refused or failed");
    assert!(served.load(Ordering::Relaxed) > 10);
    let after = Client::connect(addr).request("GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(
        after.status, 200,
        "the new process serves on the same address"
    );

    // The new process stops as any does, and takes its pid file with it.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &new.to_string()])
        .status();
    assert!(common::wait_until(Duration::from_secs(10), || !alive(new)));
    assert!(
        !pid_file.path.exists(),
        "the new process removed its pid file"
    );
}

#[test]
fn a_new_process_that_cannot_start_leaves_the_old_one_serving() {
    let origin = Origin::echo("origin");
    let file = TempFile::new(
        "upgrade-bad.toml",
        &format!(
            "[[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n[[route]]\nupstream = \"app\"\n",
            origin.addr
        ),
    );
    let proxy = Proxy::with_config_path(&file.display(), &[], true);
    // The new process would read this, and refuse it.
    std::fs::write(&file.path, "[[route]]\nupstream = \"nowhere\"\n").unwrap();
    let status = std::process::Command::new("kill")
        .args(["-USR2", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        common::wait_until(Duration::from_secs(15), || proxy
            .logs()
            .contains("binary upgrade failed, still serving")),
        "{}",
        proxy.logs()
    );
    let response = proxy.client().request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(response.status, 200, "the old process still serves");
    let _: SocketAddr = proxy.addr;
}
