//! A look at an idle keep-alive connection before it is used again.
//!
//! A pooled upstream connection sits idle between exchanges. If the origin closed it, or sent
//! bytes that belong to no request, reusing it would fail or, worse, hand those bytes to the
//! next client as its response. [`idle_connection_is_clean`] peeks without blocking and
//! without consuming anything: the connection is clean only if nothing at all is waiting.

use std::os::fd::AsRawFd;

/// True when nothing (no data, no end of stream, no error) is pending on the socket.
#[allow(unsafe_code)] // recv(2) with MSG_PEEK has no safe wrapper in std for a borrowed fd
pub fn idle_connection_is_clean(socket: &impl AsRawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: the fd is open for the duration of the call because `socket` borrows its owner;
    // the buffer is one valid, writable byte; MSG_PEEK leaves the data in the socket and
    // MSG_DONTWAIT makes the call return at once whatever the socket's blocking mode.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && {
        let err = std::io::Error::last_os_error().raw_os_error();
        err == Some(libc::EAGAIN) || err == Some(libc::EWOULDBLOCK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    fn eventually(f: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn quiet_then_data_then_close() {
        let (client, mut server) = pair();
        assert!(idle_connection_is_clean(&client));
        server.write_all(b"x").unwrap();
        assert!(eventually(|| !idle_connection_is_clean(&client)));
        let (client, server) = pair();
        drop(server);
        assert!(eventually(|| !idle_connection_is_clean(&client)));
    }
}
