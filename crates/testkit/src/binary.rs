//! The real `ichnaea` binary under test: runs of its commands, a running
//! `ichnaea serve`, a minimal HTTP/1.1 client to talk to it, and the backend
//! environment of a run.
//!
//! Every run gets its own data directory and is configured only through
//! `ICHNAEA_*` environment variables (the rest of the environment is cleared).
//! The binary's path is the caller's `env!("CARGO_BIN_EXE_ichnaea")`, which only
//! the binary crate's own tests can name.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{PgSchema, RedisPrefix, TempDir, block_on, servers};

/// How long `serve` may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `serve` may take to exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------
// Data directory and CLI runs

/// A data directory of its own for runs of the binary; removed when dropped.
pub struct DataDir {
    /// The directory; it does not exist until the binary creates it.
    pub path: PathBuf,
    binary: PathBuf,
    _dir: TempDir,
}

impl DataDir {
    /// A unique, not yet existing directory for runs of `binary`: the binary must
    /// create it.
    pub fn new(binary: impl AsRef<Path>, test: &str) -> DataDir {
        let dir = TempDir::reserve(&format!("e2e-{test}"));
        DataDir {
            path: dir.path().to_path_buf(),
            binary: binary.as_ref().to_path_buf(),
            _dir: dir,
        }
    }

    /// A command running the binary with only `PATH`, the data directory and
    /// JSON logs in its environment.
    pub fn command(&self) -> Command {
        self.configure(Command::new(&self.binary))
    }

    /// [`DataDir::command`] started through `program args…`, which must run the
    /// binary given as its last argument in its own place (e.g. `prlimit
    /// --nofile=256 --`, to start a server with few file descriptors).
    pub fn command_through(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command.args(args).arg(&self.binary);
        self.configure(command)
    }

    fn configure(&self, mut command: Command) -> Command {
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command
            .env("ICHNAEA_DATA_DIR", &self.path)
            .env("ICHNAEA_LOG_FORMAT", "json")
            // Parallel servers must not compete for the default metrics port.
            .env("ICHNAEA_METRICS_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null());
        command
    }

    /// Runs `ichnaea <args>` to its end.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    /// Runs `ichnaea <args>` to its end with `env` added.
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let output = self
            .command()
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("cannot start the ichnaea binary");
        Run {
            args: args.join(" "),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed and print JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        self.run(args).expect_code(0).json()
    }

    /// Runs a command that must be refused with status 2, mention `needle` on
    /// stderr, print nothing on stdout and leave `listing` unchanged.
    pub fn assert_refused(&self, listing: &[&str], args: &[&str], needle: &str) {
        let before = self.json(listing);
        let run = self.run(args).expect_code(2);
        assert!(
            run.stderr.contains(needle),
            "`ichnaea {}`: stderr should mention {needle:?}:\n{}",
            run.args,
            run.stderr
        );
        assert_eq!(run.stdout, "", "`ichnaea {}` printed to stdout", run.args);
        assert_eq!(
            self.json(listing),
            before,
            "`ichnaea {}` changed the database",
            run.args
        );
    }
}

/// One finished run of the binary.
pub struct Run {
    /// The arguments, for messages.
    pub args: String,
    /// The exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl Run {
    /// Asserts the exit status, showing both outputs when it differs.
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            Some(code),
            "`ichnaea {}` exit status\n--- stdout:\n{}\n--- stderr:\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`ichnaea {}` did not print JSON ({e}):\n{}",
                self.args, self.stdout
            )
        })
    }
}

// ---------------------------------------------------------------------------
// Minimal HTTP/1.1 client

/// A response read by the test client.
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: String,
}

impl HttpResponse {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}):\n{}", self.body))
    }
}

/// One request on a fresh connection to `127.0.0.1:port` (`Connection: close`);
/// a body is sent as JSON.
pub fn try_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
        .ok_or_else(|| std::io::Error::other(format!("malformed HTTP response: {raw:?}")))
}

/// POSTs raw `body` bytes; the server may answer and close before reading them
/// all (a refused upload), which is not an error here.
pub fn post_bytes(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send head");
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
        .unwrap_or_else(|| panic!("malformed response: {}", String::from_utf8_lossy(&raw)))
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        })
        .collect::<Option<_>>()?;
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = decode_chunked(&body)?;
    }
    Some(HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).ok()?,
    })
}

/// The body of a `Transfer-Encoding: chunked` message, or `None` if malformed.
pub fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------
// A running `ichnaea serve`

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// A running `ichnaea serve` on a free loopback port; killed when dropped.
pub struct Server {
    /// The process.
    pub child: Child,
    /// The port it listens on.
    pub port: u16,
    /// The port of its metrics listener.
    pub metrics_port: u16,
    stderr: Option<JoinHandle<String>>,
}

impl Server {
    /// `serve` with all three roles, `env` added; returns once it answers.
    pub fn start(dir: &DataDir, env: &[(&str, &str)]) -> Server {
        Server::start_roles(dir, env, "web,worker,scheduler")
    }

    /// `serve --roles <roles>`, `env` added; returns once it answers.
    pub fn start_roles(dir: &DataDir, env: &[(&str, &str)], roles: &str) -> Server {
        Server::start_command(dir.command(), env, roles)
    }

    /// [`Server::start_roles`] with a command from [`DataDir::command_through`].
    pub fn start_command(mut command: Command, env: &[(&str, &str)], roles: &str) -> Server {
        let port = free_port();
        let metrics_port = free_port();
        command
            .args(["serve", "--roles", roles])
            .env("ICHNAEA_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "ICHNAEA_METRICS_LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("cannot start `ichnaea serve`");
        let mut pipe = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        let mut server = Server {
            child,
            port,
            metrics_port,
            stderr: Some(stderr),
        };
        server.wait_until_ready();
        server
    }

    fn wait_until_ready(&mut self) {
        self.poll(READY_TIMEOUT, "answer /__lbheartbeat__", |server| {
            if let Ok(response) = try_http(server.port, "GET", "/__lbheartbeat__", &[], None)
                && response.status == 200
            {
                return Some(());
            }
            if let Some(status) = server.child.try_wait().expect("poll the server") {
                panic!(
                    "`ichnaea serve` exited early with {status}:\n{}",
                    server.collect_stderr()
                );
            }
            None
        });
    }

    /// Calls `check` every [`POLL`] until it gives a value; after `timeout`,
    /// kills the server and panics with its stderr, saying it did not `what`.
    fn poll<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&mut Server) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check(self) {
                return value;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "`ichnaea serve` did not {what} within {timeout:?}:\n{}",
                    self.collect_stderr()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// One request; panics when the server does not answer.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpResponse {
        try_http(self.port, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> HttpResponse {
        self.http("GET", path, &[], None)
    }

    /// `GET /metrics` from the metrics listener.
    pub fn metrics(&self) -> HttpResponse {
        try_http(self.metrics_port, "GET", "/metrics", &[], None)
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
    }

    /// Sends SIGTERM and waits for the exit; returns the status and all of stderr.
    pub fn terminate(&mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let kill = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(kill.success(), "kill -TERM {pid} failed");
        let status = self.poll(EXIT_TIMEOUT, "exit after SIGTERM", |server| {
            server.child.try_wait().expect("poll the server")
        });
        (status, self.collect_stderr())
    }

    /// Joins the stderr reader; the process must have exited (or been killed).
    fn collect_stderr(&mut self) -> String {
        let _ = self.child.wait();
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The backends of a run

/// The backend environment of runs of the binary, with the database URL to
/// inspect what they wrote. The cluster form owns a PostgreSQL schema and a
/// Redis key prefix, removed when this is dropped.
pub struct Backend {
    env: Vec<(String, String)>,
    /// The database the runs use.
    pub database_url: String,
    schema: Option<PgSchema>,
    _redis: Option<RedisPrefix>,
}

impl Backend {
    /// SQLite in the data directory and the embedded queue: no variables.
    pub fn embedded(dir: &DataDir) -> Backend {
        Backend {
            env: vec![],
            database_url: format!("sqlite://{}/ichnaea.db", dir.path.display()),
            schema: None,
            _redis: None,
        }
    }

    /// PostgreSQL (a schema of its own, created here) and Redis (a prefix of its
    /// own), or `None` when their URLs are not both set.
    pub fn cluster() -> Option<Backend> {
        servers::cluster_urls()?;
        let schema = PgSchema::new("e2e")?;
        let redis = RedisPrefix::new()?;
        let create = schema.clone();
        block_on(async move { create.create().await }).expect("create the test schema");
        let database_url = schema.search_path_url();
        Some(Backend {
            env: vec![
                ("ICHNAEA_DATABASE_URL".into(), database_url.clone()),
                ("ICHNAEA_REDIS_URL".into(), redis.url().to_string()),
                ("ICHNAEA_REDIS_PREFIX".into(), redis.prefix().to_string()),
                // The test Redis runs without an append-only file (CI starts
                // it with --appendonly no): fine for tests, refused otherwise.
                ("ICHNAEA_REDIS_ALLOW_VOLATILE".into(), "true".into()),
            ],
            database_url,
            schema: Some(schema),
            _redis: Some(redis),
        })
    }

    /// The same backends with the database at `url` instead (e.g. a
    /// [`crate::PrivatePostgres`] that a test restarts).
    pub fn with_database(mut self, url: String) -> Backend {
        for (key, value) in &mut self.env {
            if key == "ICHNAEA_DATABASE_URL" {
                value.clone_from(&url);
            }
        }
        self.database_url = url;
        self
    }

    /// The variables that point a run at these backends.
    pub fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(schema) = self.schema.take() {
            let _ = block_on(schema.drop());
        }
    }
}
