//! The HTTP/1.1 server of the web role: accepts connections and serves the
//! router on each one.
//!
//! It does what `axum::serve` did for the router (the peer address as
//! [`ConnectInfo`], a graceful shutdown that lets requests in progress finish)
//! and adds two things a public service needs:
//!
//! - a header-read timeout: a client must send a request's whole head within
//!   [`ServerOptions::header_read_timeout`] of starting it, or of the previous
//!   answer on a keep-alive connection, or the connection is closed. Without
//!   it, clients that connect and send nothing (or one byte a minute) hold a
//!   connection and a file descriptor forever;
//! - one scheduling of a connection's task per request: see [`WakeCoalescing`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use futures_util::task::AtomicWaker;
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
        // Answers go out in one write each; do not hold them back (Nagle).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let service = PeerService {
            router: router.clone(),
            peer,
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let mut stop = stop_rx.clone();
        let closed = closed_rx.clone();
        tokio::spawn(WakeCoalescing::new(async move {
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
        }));
    }
    drop(listener);
    tracing::info!("web server stopping: finishing open requests");
    // Receivers may all be gone already; nothing then waits for the signal.
    let _ = stop_tx.send(());
    drop(closed_rx);
    closed_tx.closed().await;
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

/// Polls a connection's future so that a wake-up the future causes itself,
/// while it is being polled, polls it again at once, instead of rescheduling
/// the task through the runtime.
///
/// hyper's HTTP/1 server does this once per request with a body: reading the
/// body wakes the connection's own task, which is running. Tokio then queues
/// the task behind the others and wakes an idle worker thread to steal it: a
/// futex call, a context switch and a cross-CPU wake-up per request, for a
/// poll that finds nothing to do.
///
/// Only wake-ups on the polling thread during the poll are coalesced: those
/// from anywhere else (the I/O driver, timers, other threads) go to the
/// runtime's waker unchanged, so none can be lost. Repeated self-wake-ups are
/// re-polled [`MAX_REPOLLS`] times, then handed to the runtime, which keeps
/// hyper's own fairness yield after many pipelined requests.
pub(crate) struct WakeCoalescing<F> {
    future: Pin<Box<F>>,
    state: Arc<WakeState>,
    waker: Waker,
}

/// Immediate re-polls of one poll before a self-wake-up goes to the runtime.
const MAX_REPOLLS: usize = 4;

/// What the wrapper's waker needs: the runtime's waker to forward to, and who
/// is polling.
struct WakeState {
    runtime: AtomicWaker,
    /// [`thread_mark`] of the thread polling the future, 0 when none is.
    polling: AtomicUsize,
    /// Whether the polling thread woke the future during its poll.
    woken: AtomicBool,
}

/// A number unique to the calling thread among live threads (the address of a
/// thread-local), never 0.
fn thread_mark() -> usize {
    thread_local! {
        static MARK: u8 = const { 0 };
    }
    MARK.with(|m| std::ptr::from_ref(m) as usize)
}

impl Wake for WakeState {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Only the polling thread itself can read its own mark here, and only
        // while it is inside `poll` (it clears the mark before returning), so
        // plain loads and stores suffice.
        if self.polling.load(Ordering::Relaxed) == thread_mark() {
            self.woken.store(true, Ordering::Relaxed);
        } else {
            self.runtime.wake();
        }
    }
}

impl<F: Future> WakeCoalescing<F> {
    /// Wraps `future`.
    pub(crate) fn new(future: F) -> Self {
        let state = Arc::new(WakeState {
            runtime: AtomicWaker::new(),
            polling: AtomicUsize::new(0),
            woken: AtomicBool::new(false),
        });
        WakeCoalescing {
            future: Box::pin(future),
            waker: Waker::from(Arc::clone(&state)),
            state,
        }
    }
}

impl<F: Future> Future for WakeCoalescing<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.state.runtime.register(cx.waker());
        let mark = thread_mark();
        let mut inner = Context::from_waker(&this.waker);
        for _ in 0..=MAX_REPOLLS {
            this.state.polling.store(mark, Ordering::Relaxed);
            let result = this.future.as_mut().poll(&mut inner);
            this.state.polling.store(0, Ordering::Relaxed);
            if result.is_ready() {
                return result;
            }
            if !this.state.woken.swap(false, Ordering::Relaxed) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Counts the wake-ups it gets.
    #[derive(Default)]
    struct Counter(AtomicU32);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Wakes itself during each of its first `n` polls, then is ready.
    struct SelfWaking {
        left: u32,
        polls: u32,
    }

    impl Future for SelfWaking {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            self.polls += 1;
            if self.left == 0 {
                return Poll::Ready(self.polls);
            }
            self.left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn poll_once<F: Future>(f: &mut WakeCoalescing<F>, counter: &Arc<Counter>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::clone(counter));
        Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn self_wake_ups_are_polled_again_at_once() {
        let counter = Arc::new(Counter::default());
        let mut f = WakeCoalescing::new(SelfWaking { left: 2, polls: 0 });
        assert_eq!(poll_once(&mut f, &counter), Poll::Ready(3));
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn endless_self_wake_ups_go_to_the_runtime() {
        let counter = Arc::new(Counter::default());
        let mut f = WakeCoalescing::new(SelfWaking {
            left: u32::MAX,
            polls: 0,
        });
        assert_eq!(poll_once(&mut f, &counter), Poll::Pending);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(f.future.polls, 1 + MAX_REPOLLS as u32);
    }

    /// Pending until `flag`, leaving its waker with another thread.
    struct WokenElsewhere {
        flag: Arc<AtomicBool>,
        sent: bool,
    }

    impl Future for WokenElsewhere {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.flag.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            if !self.sent {
                self.sent = true;
                let (flag, waker) = (Arc::clone(&self.flag), cx.waker().clone());
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    flag.store(true, Ordering::SeqCst);
                    waker.wake();
                });
            }
            Poll::Pending
        }
    }

    #[test]
    fn wake_ups_from_other_threads_reach_the_runtime() {
        let counter = Arc::new(Counter::default());
        let flag = Arc::new(AtomicBool::new(false));
        let mut f = WakeCoalescing::new(WokenElsewhere {
            flag: Arc::clone(&flag),
            sent: false,
        });
        assert_eq!(poll_once(&mut f, &counter), Poll::Pending);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while counter.0.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "wake-up lost");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(poll_once(&mut f, &counter), Poll::Ready(()));
    }

    #[test]
    fn a_wake_up_on_the_same_thread_outside_the_poll_reaches_the_runtime() {
        let counter = Arc::new(Counter::default());
        let mut f = WakeCoalescing::new(std::future::pending::<()>());
        assert_eq!(poll_once(&mut f, &counter), Poll::Pending);
        f.waker.wake_by_ref();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    }
}
