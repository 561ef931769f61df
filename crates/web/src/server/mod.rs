//! The HTTP/1.1 server of the web role: accepts connections and serves the
//! router on each one.
//!
//! It does what `axum::serve` does for the router (the peer address as
//! [`ConnectInfo`], a graceful shutdown that lets requests in progress finish)
//! and adds what a public service needs: a header-read timeout. A client must
//! send a request's whole head within [`ServerOptions::header_read_timeout`] of
//! starting it, or of the previous answer on a keep-alive connection, or the
//! connection is closed; otherwise clients that connect and send nothing (or
//! one byte a minute) would hold a connection and a file descriptor forever.
//!
//! It also bounds the open connections ([`ServerOptions::max_connections`]):
//! when the server is full, or the process is out of file descriptors, the
//! oldest connection not serving a request is closed to make room (see
//! [`registry`]), so idle and slow-header clients cannot lock others out. An
//! answer given before the request body was read says `Connection: close`
//! (see [`service`]).

mod registry;
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use registry::Registry;
use service::PeerService;

/// Settings of the HTTP server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// How long a client may take to send a request head, counted from its
    /// first byte or, on a keep-alive connection, from the previous answer
    /// (so it also closes idle keep-alive connections); `None`: no limit.
    pub header_read_timeout: Option<Duration>,
    /// Most connections open at once; at the limit, the oldest connection not
    /// serving a request is closed for a new one (0: no limit).
    pub max_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_read_timeout: Some(Duration::from_secs(30)),
            max_connections: 1_024,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then stops
/// accepting, lets every connection finish the request it is serving (idle
/// keep-alive connections are closed), and returns once all have closed.
///
/// Accept errors never end the server: a dropped handshake is skipped; out of
/// file descriptors, the oldest idle connection is closed and accepting goes
/// on (or, with none to close, resumes shortly); anything else is logged and
/// retried a second later.
pub async fn serve<S>(listener: TcpListener, router: Router, options: ServerOptions, shutdown: S)
where
    S: Future<Output = ()> + Send,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let registry = Registry::default();
    // Connections hold a receiver of `closed`; the sender's `closed()` resolves
    // once the last of them is gone.
    let (stop_tx, stop_rx) = watch::channel(());
    let (closed_tx, closed_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e, &registry).await;
                    continue;
                }
            },
        };
        if options.max_connections > 0 && registry.len() >= options.max_connections {
            // Close the oldest idle connection, or, when every one is serving
            // a request, wait for one to end (bodies are bounded by their
            // timeouts); meanwhile new connections wait in the listen queue.
            metrics::counter!("http.connection.limit_reached").increment(1);
            tokio::select! {
                () = &mut shutdown => break,
                () = registry.make_room(options.max_connections) => {}
            }
        }
        let connection = Connection {
            builder: &builder,
            router: &router,
            registry: &registry,
            stop: &stop_rx,
            closed: &closed_rx,
        };
        connection.spawn(stream, peer);
    }
    drop(listener);
    tracing::info!("web server stopping: finishing open requests");
    // Receivers may all be gone already; nothing then waits for the signal.
    let _ = stop_tx.send(());
    drop(closed_rx);
    closed_tx.closed().await;
}

/// What an accept error means for the accept loop.
async fn accept_failed(e: &std::io::Error, registry: &Registry) {
    if is_connection_error(e) {
        return;
    }
    if is_out_of_descriptors(e) {
        metrics::counter!("http.connection.fd_exhausted").increment(1);
        if registry.shed_oldest_idle() {
            tracing::warn!(error = %e, "out of file descriptors: closed the oldest idle connection");
            // The descriptor is released once the connection's task has run.
            tokio::task::yield_now().await;
        } else {
            tracing::error!(error = %e, "out of file descriptors and no idle connection to close");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// What a new connection's task needs from the server loop.
struct Connection<'a> {
    builder: &'a http1::Builder,
    router: &'a Router,
    registry: &'a Registry,
    stop: &'a watch::Receiver<()>,
    closed: &'a watch::Receiver<()>,
}

impl Connection<'_> {
    /// Serves one accepted connection on its own task until it closes, the
    /// registry sheds it, or `stop` changes (then the request in progress is
    /// finished and the connection closed). The task holds `closed` until it
    /// ends.
    fn spawn(self, stream: TcpStream, peer: SocketAddr) {
        // Answers go out in one write each; do not hold them back (Nagle).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let registration = self.registry.register();
        let service = PeerService {
            router: self.router.clone(),
            peer,
            busy: registration.busy.clone(),
        };
        let connection = self.builder.serve_connection(TokioIo::new(stream), service);
        let mut stop = self.stop.clone();
        let closed = self.closed.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                // Shed to make room: closed at once (it serves no request).
                () = registration.close.cancelled() => Ok(()),
                // A change, or the server gone: finish the current request, then close.
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(registration);
            drop(closed);
        });
    }
}

/// Errors of one incoming connection, not of the listening socket.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// `EMFILE` / `ENFILE`: the process or the system has no file descriptor left.
fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}
