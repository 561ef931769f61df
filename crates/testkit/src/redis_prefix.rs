//! A Redis key prefix of one's own on the shared test server.
//!
//! Other people run tests on the same server at the same time: a test only ever
//! writes and deletes keys under its own prefix (never `FLUSHALL`).

use std::io::Write;

use crate::servers;

/// A fresh key prefix on the test server; every key under it is deleted when
/// this is dropped.
#[derive(Debug)]
pub struct RedisPrefix {
    url: String,
    prefix: String,
}

impl RedisPrefix {
    /// `ichnaea-test-<unique>:` on the server of `ICHNAEA_TEST_REDIS_URL`, or
    /// `None` (after a notice) when that is unset.
    pub fn new() -> Option<RedisPrefix> {
        let url = servers::redis_url()?;
        Some(RedisPrefix::on(
            &url,
            &format!("ichnaea-test-{}:", crate::unique()),
        ))
    }

    /// `prefix` on the server at `url`.
    pub fn on(url: &str, prefix: &str) -> RedisPrefix {
        RedisPrefix {
            url: url.to_string(),
            prefix: prefix.to_string(),
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The prefix, ending in `:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A plain (blocking) connection to the server, to look at the keys.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| panic!("connect to Redis at {}: {e}", self.url))
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        if let Err(err) = delete_keys(&self.url, &self.prefix) {
            let _ = writeln!(
                std::io::stderr(),
                "cleaning up Redis keys {}*: {err}",
                self.prefix
            );
        }
    }
}

/// Deletes every key starting with `prefix` (keys may be binary).
pub fn delete_keys(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let mut conn = redis::Client::open(url)?.get_connection()?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(keys).exec(&mut conn)?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
