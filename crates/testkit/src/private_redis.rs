//! A `redis-server` of one test's own, on a free port: for tests that stop
//! Redis on purpose or start it with settings the shared server must not have.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::TempDir;

/// The settings the service requires of Redis (an append-only file synced
/// every second, no eviction): `PrivateRedis::start(&DURABLE)`.
pub const DURABLE: [&str; 6] = [
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--maxmemory-policy",
    "noeviction",
];

/// A private `redis-server`, killed when dropped (or by [`PrivateRedis::stop`]).
pub struct PrivateRedis {
    child: Child,
    url: String,
    port: u16,
    dir: std::path::PathBuf,
    args: Vec<String>,
    _dir: Option<TempDir>,
}

impl PrivateRedis {
    /// Starts one in a temporary directory of its own, with `args` after the
    /// port, bind address and `--save ""`.
    pub fn start(args: &[&str]) -> PrivateRedis {
        let dir = TempDir::new("private-redis");
        let mut redis = PrivateRedis::start_in(&dir, args);
        redis._dir = Some(dir);
        redis
    }

    /// Starts one whose files (append-only file, cluster config) go to `dir`.
    pub fn start_in(dir: &Path, args: &[&str]) -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let child = spawn(port, dir, &args);
        PrivateRedis {
            child,
            url: format!("redis://127.0.0.1:{port}/0"),
            port,
            dir: dir.to_path_buf(),
            args,
            _dir: None,
        }
    }

    /// Stops the server as an operator's restart does (SIGTERM: it syncs its
    /// append-only file and exits) and waits for it to exit.
    pub fn shutdown(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// Starts it again after [`PrivateRedis::shutdown`] or
    /// [`PrivateRedis::stop`], on the same port, directory and settings.
    pub fn start_again(&mut self) {
        self.child = spawn(self.port, &self.dir, &self.args);
    }

    /// The server's URL (database 0).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Kills the server now: clients see connections refused from here on.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `redis-server` on `port` and waits until it answers.
fn spawn(port: u16, dir: &Path, args: &[String]) -> Child {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", ""])
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed where ICHNAEA_TEST_REDIS_URL is set");
    for _ in 0..200 {
        if pong(port) {
            return child;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("private redis-server did not start");
}

/// Whether the server on `port` answers `PING` (it accepts connections
/// before it has finished loading).
fn pong(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}
