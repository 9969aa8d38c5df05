//! ringwall-runtime: the per-core engine.
//!
//! One worker thread per core, each pinned to its core, each running its own monoio runtime
//! (io_uring with the fast setup flags where the kernel has them, epoll otherwise), each with its
//! own `SO_REUSEPORT` listening socket. Nothing on the request path is shared between workers.
//!
//! Data enters through [`Engine::run`]: it binds the listeners ([`bind_listeners`]), starts the
//! workers, and hands every accepted connection to the connection handler that the caller's
//! factory built for that worker, with the index of the listener that accepted it. The
//! proxy's connection code is generic over [`Stream`], so TLS and in-memory test streams
//! ([`memory_pair`]) run through the same request path as TCP. Shutdown comes from SIGINT / SIGTERM ([`Shutdown`]): workers
//! stop accepting, let in-flight connections finish up to the drain deadline, and return.

mod deadlines;
mod driver;
mod either;
mod engine;
mod gather;
mod idle_probe;
mod limits;
mod listener;
mod mesh;
mod shutdown;
mod stream;
mod tls;

pub use deadlines::{Deadlines, Timer, Within};
pub use driver::{DriverChoice, DriverKind};
pub use either::Either;
pub use engine::{ConnectionCount, Engine, EngineError, EngineOptions, Listeners, WorkerContext};
pub use gather::Gather;
pub use idle_probe::idle_connection_is_clean;
pub use limits::{raise_open_files_limit, signal_process};
pub use listener::{adopt_socket, adopt_unix_stream, bind_listeners, bind_udp};
pub use mesh::{Mesh, Outside, Postbox};
/// rustls, as the runtime's TLS streams use it.
pub use rustls;
pub use shutdown::{Drain, Shutdown, Signal};
/// socket2, as the runtime's listeners use it.
pub use socket2;
pub use stream::{memory_pair, MemoryStream, Stream};
pub use tls::{HandshakeError, MaybeTls, PeerName, TlsInfo, TlsStream};

/// A monoio runtime for unit tests that need one (epoll: it runs anywhere).
#[cfg(test)]
mod test_support {
    pub fn run<F: std::future::Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(future)
    }
}
