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

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Service;

/// Settings of the HTTP server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// How long a client may take to send a request head, counted from its
    /// first byte or, on a keep-alive connection, from the previous answer
    /// (so it also closes idle keep-alive connections); `None`: no limit.
    pub header_read_timeout: Option<Duration>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_read_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then stops
/// accepting, lets every connection finish the request it is serving (idle
/// keep-alive connections are closed), and returns once all have closed.
///
/// Accept errors never end the server: a dropped handshake is skipped, and
/// anything else (out of file descriptors) is logged and retried a second later.
pub async fn serve<S>(listener: TcpListener, router: Router, options: ServerOptions, shutdown: S)
where
    S: Future<Output = ()> + Send,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
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
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        spawn_connection(&builder, stream, peer, &router, &stop_rx, &closed_rx);
    }
    drop(listener);
    tracing::info!("web server stopping: finishing open requests");
    // Receivers may all be gone already; nothing then waits for the signal.
    let _ = stop_tx.send(());
    drop(closed_rx);
    closed_tx.closed().await;
}

/// Serves one accepted connection on its own task until it closes, or until
/// `stop` changes: then the request in progress is finished and the
/// connection closed. The task holds `closed` until it ends.
fn spawn_connection(
    builder: &http1::Builder,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: &Router,
    stop: &watch::Receiver<()>,
    closed: &watch::Receiver<()>,
) {
    // Answers go out in one write each; do not hold them back (Nagle).
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
    let service = PeerService {
        router: router.clone(),
        peer,
    };
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut stop = stop.clone();
    let closed = closed.clone();
    tokio::spawn(async move {
        let mut connection = std::pin::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            // A change, or the server gone: finish the current request, then close.
            _ = stop.changed() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
        drop(closed);
    });
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

/// The router as one connection's hyper service, with the peer address in each
/// request's extensions (what `ConnectInfo<SocketAddr>` extracts).
#[derive(Clone)]
struct PeerService {
    router: Router,
    peer: SocketAddr,
}

impl hyper::service::Service<hyper::Request<Incoming>> for PeerService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn call(&self, mut request: hyper::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        // The router is always ready; `call` needs `&mut`, so a clone (one
        // reference count) per request.
        self.router.clone().call(request)
    }
}
