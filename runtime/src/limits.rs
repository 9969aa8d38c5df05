//! Process resource limits the engine needs.
//!
//! Every client and upstream connection is a file descriptor, and the usual soft limit (1024)
//! is far below what one worker should hold; like nginx's `worker_rlimit_nofile` and HAProxy,
//! ringwall raises its soft limit to the hard limit at start.

use std::io;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Returns the limit now in force.
#[allow(unsafe_code)] // getrlimit/setrlimit have no safe wrapper in std
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit read by the call; raising the soft limit up to
        // the hard limit needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
    }
    Ok(limit.rlim_cur)
}

/// Sends `signal` (a `libc::SIG*` number) to process `pid`.
#[allow(unsafe_code)] // kill(2) has no safe wrapper in std
pub fn signal_process(pid: i32, signal: i32) -> std::io::Result<()> {
    if pid <= 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{pid} is not a process id"),
        ));
    }
    // SAFETY: kill takes plain integers; a positive pid names one process.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let now = super::raise_open_files_limit().unwrap();
        assert!(now >= 1024, "{now}");
        assert_eq!(super::raise_open_files_limit().unwrap(), now);
    }
}
