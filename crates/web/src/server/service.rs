//! The router as one connection's hyper service.
//!
//! Per request it adds the peer address (what `ConnectInfo<SocketAddr>`
//! extracts), counts the request as in progress for the connection registry,
//! and watches whether the handler read the request body to its end. A request
//! answered before its body was read (a refused key, an unknown path, a body
//! timeout) leaves unread bytes on the connection, so the connection cannot be
//! reused: the answer then says `Connection: close`, and the client knows to
//! open a new connection instead of failing on its next request.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tower::Service;

/// The service of one connection.
#[derive(Clone)]
pub(crate) struct PeerService {
    pub(crate) router: Router,
    pub(crate) peer: SocketAddr,
    /// The connection's in-progress request count (see the registry).
    pub(crate) busy: Arc<AtomicUsize>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for PeerService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(self.peer));
        let ended = Arc::new(AtomicBool::new(body.is_end_stream()));
        let body = WatchedBody {
            inner: body,
            ended: ended.clone(),
        };
        // The router is always ready; `call` needs `&mut`, so a clone (one
        // reference count) per request.
        let answer = self
            .router
            .clone()
            .call(hyper::Request::from_parts(parts, body));
        let busy = InProgress::new(self.busy.clone());
        Box::pin(async move {
            let mut response = answer.await?;
            if !ended.load(Ordering::Acquire) {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            drop(busy);
            Ok(response)
        })
    }
}

/// Counts one request as in progress until dropped.
struct InProgress(Arc<AtomicUsize>);

impl InProgress {
    fn new(busy: Arc<AtomicUsize>) -> InProgress {
        busy.fetch_add(1, Ordering::AcqRel);
        InProgress(busy)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request body that records when it has been read to its end.
struct WatchedBody {
    inner: Incoming,
    ended: Arc<AtomicBool>,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
