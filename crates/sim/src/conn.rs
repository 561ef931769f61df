//! The HTTP/1.1 client of `sim load`: one keep-alive connection per worker,
//! driven in the worker's own task, so a request costs no pool checkout, no extra
//! task and no cross-task wake-up. Everything that is the same for every request
//! (the request target, the headers) is built once.
//!
//! The connection's future (hyper's dispatcher, which reads and writes the
//! socket) is polled together with the request and body futures; a request that
//! the connection never sent (the server closed it while idle, or after a
//! `Connection: close` answer) is sent again once on a fresh connection.

use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::SimError;

/// Why a request got no complete answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No complete answer within `--timeout` (connecting included).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The address tried, as `host:port`.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP/1.1 connection could not be set up.
    #[error("HTTP/1.1 handshake failed")]
    Handshake(#[source] hyper::Error),
    /// The request failed before the response head arrived (the connection
    /// broke, or the answer is not HTTP).
    #[error("error sending request")]
    Request(#[source] hyper::Error),
    /// The response body could not be read to its end.
    #[error("error reading the response body")]
    Body(#[source] hyper::Error),
}

impl RequestError {
    /// The error kind as counted in the summary.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::Timeout(_) => "timeout",
            RequestError::Connect { .. } | RequestError::Handshake(_) => "connect",
            RequestError::Request(_) => "request",
            RequestError::Body(_) => "body",
        }
    }
}

/// Where to connect.
#[derive(Debug)]
enum Addr {
    /// An IP address (no resolution).
    Ip(SocketAddr),
    /// A name, resolved at each connect (connects are rare: once per worker
    /// unless the server closes connections).
    Name(String, u16),
}

impl std::fmt::Display for Addr {
    /// `host:port`, as connection errors name it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Ip(addr) => write!(f, "{addr}"),
            Addr::Name(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

/// What every request of a run shares: the address, the request target and the
/// headers, built once.
#[derive(Debug)]
pub struct Target {
    addr: Addr,
    /// Origin-form request target (`/v1/geolocate?key=…`).
    uri: Uri,
    /// Host, Content-Type, (Content-Encoding,) User-Agent.
    headers: HeaderMap,
    timeout: Duration,
}

impl Target {
    /// The target of `url` (an already checked `http://` URL), sending bodies
    /// with `Content-Encoding: gzip` when `gzip`, each request bounded by `timeout`.
    pub fn new(url: &Url, gzip: bool, timeout: Duration) -> Result<Target, SimError> {
        let invalid = |reason: &str| SimError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid("no port"))?;
        let host = url.host_str().ok_or_else(|| invalid("no host"))?;
        // The URL parser has normalised IP addresses; IPv6 ones come bracketed.
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let addr = match bare.parse::<IpAddr>() {
            Ok(ip) => Addr::Ip(SocketAddr::new(ip, port)),
            Err(_) => Addr::Name(bare.to_string(), port),
        };
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        let uri = Uri::try_from(target).map_err(|e| invalid(&e.to_string()))?;
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(
            HOST,
            HeaderValue::try_from(host).map_err(|e| invalid(&e.to_string()))?,
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("ichnaea-sim/", env!("CARGO_PKG_VERSION"))),
        );
        Ok(Target {
            addr,
            uri,
            headers,
            timeout,
        })
    }

    /// A POST of `body` (hyper adds Content-Length from the body's size).
    fn request(&self, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }

    async fn connect(&self) -> Result<Conn, RequestError> {
        let connected = match &self.addr {
            Addr::Ip(addr) => TcpStream::connect(addr).await,
            Addr::Name(name, port) => TcpStream::connect((name.as_str(), *port)).await,
        };
        let stream = connected.map_err(|source| RequestError::Connect {
            addr: self.addr.to_string(),
            source,
        })?;
        // Small requests and answers: send each at once.
        stream
            .set_nodelay(true)
            .map_err(|source| RequestError::Connect {
                addr: self.addr.to_string(),
                source,
            })?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(RequestError::Handshake)?;
        Ok(Conn {
            sender,
            driver: Some(Box::pin(driver)),
        })
    }
}

/// hyper's side of one connection: the future that reads and writes the socket.
type Driver = Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// One open connection.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// `None` once the connection has ended.
    driver: Option<Pin<Box<Driver>>>,
}

impl Conn {
    fn is_open(&self) -> bool {
        self.driver.is_some() && !self.sender.is_closed()
    }
}

/// Polls `fut` and, while it is pending, the connection's driver, in the caller's
/// task. When the driver ends it is dropped, which hands requests it never sent
/// back to their senders, so `fut` always ends.
async fn drive<F: Future>(driver: &mut Option<Pin<Box<Driver>>>, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        // The driver first: it delivers what it reads to `fut`'s channels.
        if let Some(d) = driver.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            *driver = None;
        }
        fut.as_mut().poll(cx)
    })
    .await
}

/// One result of a try on one connection.
enum Try {
    /// Answered with this status, body read.
    Answered(u16),
    /// The connection never sent the request: it may go on a fresh one.
    NotSent(Box<Request<Full<Bytes>>>, hyper::Error),
    /// Failed after (possibly) being sent.
    Failed(RequestError),
}

/// Sends `request` on `conn` and reads the whole answer, so the connection can
/// carry the next request.
async fn exchange(conn: &mut Conn, request: Request<Full<Bytes>>) -> Try {
    let sent = conn.sender.try_send_request(request);
    let answer = async move {
        let response = match sent.await {
            Ok(response) => response,
            Err(mut e) => {
                return match e.take_message() {
                    Some(request) => Try::NotSent(Box::new(request), e.into_error()),
                    None => Try::Failed(RequestError::Request(e.into_error())),
                };
            }
        };
        let status = response.status().as_u16();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            if let Err(e) = frame {
                return Try::Failed(RequestError::Body(e));
            }
        }
        Try::Answered(status)
    };
    drive(&mut conn.driver, answer).await
}

/// A worker's client: its connection (opened on first use and again after an
/// error) and its timeout timer, reused from request to request.
pub struct Client<'a> {
    target: &'a Target,
    conn: Option<Conn>,
    /// Reset for each request; moving a timer's deadline later costs no timer
    /// wheel operation in tokio, unlike a new timer per request.
    timer: Pin<Box<Sleep>>,
}

impl<'a> Client<'a> {
    /// A client with no connection yet; must be created inside a tokio runtime.
    pub fn new(target: &'a Target) -> Client<'a> {
        Client {
            target,
            conn: None,
            timer: Box::pin(tokio::time::sleep(target.timeout)),
        }
    }

    /// POSTs `body` and reads the answer, within the timeout; returns the status.
    /// On any error the connection is closed and the next request opens another.
    pub async fn send(&mut self, body: &Bytes) -> Result<u16, RequestError> {
        let timeout = self.target.timeout;
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::now() + timeout);
        let outcome = {
            let Client {
                target,
                conn,
                timer,
            } = &mut *self;
            let mut attempt = pin!(attempt(target, conn, body));
            poll_fn(|cx| {
                if let Poll::Ready(outcome) = attempt.as_mut().poll(cx) {
                    return Poll::Ready(outcome);
                }
                timer
                    .as_mut()
                    .poll(cx)
                    .map(|()| Err(RequestError::Timeout(timeout)))
            })
            .await
        };
        if outcome.is_err() {
            // Also after a timeout: the connection may still carry the late answer.
            self.conn = None;
        }
        outcome
    }

    /// Waits for `fut` (the next job) while keeping the idle connection driven,
    /// so that a connection the server closes is noticed and dropped.
    pub async fn idle<F: Future>(&mut self, fut: F) -> F::Output {
        match self.conn.as_mut() {
            Some(conn) => drive(&mut conn.driver, fut).await,
            None => fut.await,
        }
    }
}

/// One request on the open connection, or on a new one if there is none or the
/// open one turns out to have been closed before it sent the request.
async fn attempt(
    target: &Target,
    slot: &mut Option<Conn>,
    body: &Bytes,
) -> Result<u16, RequestError> {
    let mut request = target.request(body.clone());
    loop {
        let (conn, fresh) = match slot.take().filter(Conn::is_open) {
            Some(conn) => (conn, false),
            None => (target.connect().await?, true),
        };
        let conn = slot.insert(conn);
        match exchange(conn, request).await {
            Try::Answered(status) => return Ok(status),
            Try::NotSent(unsent, _) if !fresh => {
                *slot = None;
                request = *unsent;
            }
            Try::NotSent(_, e) => {
                *slot = None;
                return Err(RequestError::Request(e));
            }
            Try::Failed(e) => {
                *slot = None;
                return Err(e);
            }
        }
    }
}
