//! Fake HTTP targets on loopback: stand-ins for the export targets, fallback
//! providers and object stores the service talks to, recording what they get.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, Version, header};
use axum::response::IntoResponse;
use serde_json::Value;

/// Serves `app` on an ephemeral loopback port in the current runtime; returns
/// `http://127.0.0.1:<port>`.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("the bound address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// One request a [`FakeHttp`] received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The request method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The HTTP version.
    pub version: Version,
    /// The request headers.
    pub headers: HeaderMap,
    /// The body as sent.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The value of header `name`; `""` when absent or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as JSON; `Value::Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as gzip JSON; panics when it is not.
    pub fn gunzip_json(&self) -> Value {
        crate::gunzip_json(&self.body)
    }
}

/// An HTTP server on loopback that records every request and answers with the
/// scripted statuses first, then with its standing answer (200 with an empty
/// body unless changed with [`FakeHttp::answer`]). Every answer carries
/// `Content-Type: application/json` and an `ETag` (object stores read one from
/// PUT answers).
#[derive(Clone)]
pub struct FakeHttp {
    url: String,
    state: Arc<Mutex<Script>>,
}

#[derive(Default)]
struct Script {
    requests: Vec<Recorded>,
    statuses: VecDeque<u16>,
    status: u16,
    body: String,
    delay: std::time::Duration,
}

impl FakeHttp {
    /// Starts a target in the current runtime that answers `statuses` in turn,
    /// then 200.
    pub async fn start(statuses: &[u16]) -> FakeHttp {
        let state = FakeHttp::script(statuses);
        let app = Router::new().fallback(answer).with_state(state.clone());
        let url = serve(app).await;
        FakeHttp { url, state }
    }

    /// [`FakeHttp::start`] for synchronous tests: the target runs on a runtime
    /// in a thread of its own, for the rest of the test process.
    pub fn start_in_thread(statuses: &[u16]) -> FakeHttp {
        let (sender, receiver) = std::sync::mpsc::channel();
        let statuses = statuses.to_vec();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let _ = sender.send(FakeHttp::start(&statuses).await);
                std::future::pending::<()>().await
            });
        });
        receiver.recv().expect("the fake target started")
    }

    fn script(statuses: &[u16]) -> Arc<Mutex<Script>> {
        Arc::new(Mutex::new(Script {
            statuses: statuses.iter().copied().collect(),
            status: 200,
            ..Script::default()
        }))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sets the answer given once the scripted statuses are used up.
    pub fn answer(&self, status: u16, body: &str) {
        let mut script = self.lock();
        script.status = status;
        script.body = body.to_string();
    }

    /// Makes every later answer wait `delay` after the request was recorded:
    /// a target that hangs (longer than the client's timeout) or is slow.
    pub fn delay(&self, delay: std::time::Duration) {
        self.lock().delay = delay;
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        self.lock().requests.len()
    }

    fn lock(&self) -> MutexGuard<'_, Script> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn answer(
    State(state): State<Arc<Mutex<Script>>>,
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let (status, body, delay) = {
        let mut script = state.lock().unwrap_or_else(|e| e.into_inner());
        script.requests.push(Recorded {
            method,
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            version,
            headers,
            body: body.to_vec(),
        });
        let status = script.statuses.pop_front().unwrap_or(script.status);
        (status, script.body.clone(), script.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::ETAG, "\"0123abcd\""),
        ],
        body,
    )
}
