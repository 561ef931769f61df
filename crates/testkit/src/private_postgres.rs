//! A PostgreSQL server of one test's own (`initdb` in a temporary directory,
//! on a free port): for tests that stop and restart the database on purpose,
//! which the shared test server must never be.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TempDir;

/// A private PostgreSQL cluster, stopped and removed when dropped.
pub struct PrivatePostgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// Creates and starts one, or `None` (with a notice on stderr) where the
    /// server's programs are not installed.
    pub fn start() -> Option<PrivatePostgres> {
        let Some(bin) = server_programs() else {
            eprintln!("NOTICE: PostgreSQL's initdb not found: private PostgreSQL tests skipped");
            return None;
        };
        // The server refuses to run as root: CI runs tests as root, so the
        // cluster then belongs to the `postgres` user.
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let dir = TempDir::new("private-postgres");
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the private PostgreSQL directory");
        }
        let port = crate::binary::free_port();
        let pg = PrivatePostgres {
            dir,
            bin,
            port,
            as_postgres,
        };
        pg.program(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start_again();
        Some(pg)
    }

    /// The URL of its `postgres` database (user `postgres`, trust).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server as an operator's restart does (`pg_ctl stop -m fast`:
    /// sessions are ended, everything committed is on disk).
    pub fn stop(&mut self) {
        self.program("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// Starts it (again) on the same port and data.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.as_str()
        );
        let log = self.dir.path().join("server.log");
        let log = log.to_str().expect("UTF-8 path");
        self.program(
            "pg_ctl",
            &["-D", &self.data(), "-o", &options, "-l", log, "-w", "start"],
        );
    }

    fn data(&self) -> String {
        format!("{}/data", self.dir.as_str())
    }

    /// A command running one of the server's programs, as `postgres` when
    /// this is root.
    fn command(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        }
    }

    /// Runs one of the server's programs, panicking with its output when it
    /// fails.
    fn program(&self, name: &str, args: &[&str]) {
        let output = self
            .command(name)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run a PostgreSQL program");
        assert!(
            output.status.success(),
            "{name} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", data.as_str(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// The directory of `initdb` and `pg_ctl`: on `PATH`, or Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest).
fn server_programs() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(Path::new("/usr/lib/postgresql"))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}
