//! The shared test servers, named by the environment.
//!
//! Tests that need PostgreSQL or Redis read `ICHNAEA_TEST_POSTGRES_URL` /
//! `ICHNAEA_TEST_REDIS_URL`; when a variable is unset they are skipped. Either
//! way a `NOTICE` line on stderr says so, once per test process, so that a run
//! that skipped the cluster backends cannot pass for one that ran them.

use std::io::Write;
use std::sync::Once;

/// The variable naming the PostgreSQL server of the tests.
pub const POSTGRES_URL: &str = "ICHNAEA_TEST_POSTGRES_URL";
/// The variable naming a streaming replica of the PostgreSQL server of the
/// tests (`.ci/pg-replica` sets one up on port 5433).
pub const POSTGRES_REPLICA_URL: &str = "ICHNAEA_TEST_POSTGRES_REPLICA_URL";
/// The variable naming the Redis server of the tests.
pub const REDIS_URL: &str = "ICHNAEA_TEST_REDIS_URL";

/// The PostgreSQL URL of the tests, or `None` when unset (with a notice either way).
pub fn postgres_url() -> Option<String> {
    static NOTICE: Once = Once::new();
    url(POSTGRES_URL, "PostgreSQL", &NOTICE)
}

/// The URL of a hot standby streaming from the PostgreSQL test server, or
/// `None` when unset (with a notice either way).
pub fn postgres_replica_url() -> Option<String> {
    static NOTICE: Once = Once::new();
    url(POSTGRES_REPLICA_URL, "PostgreSQL replica", &NOTICE)
}

/// The Redis URL of the tests, or `None` when unset (with a notice either way).
pub fn redis_url() -> Option<String> {
    static NOTICE: Once = Once::new();
    url(REDIS_URL, "Redis", &NOTICE)
}

/// Both URLs of the cluster backends (PostgreSQL, Redis), or `None` unless both
/// are set.
pub fn cluster_urls() -> Option<(String, String)> {
    let (postgres, redis) = (postgres_url(), redis_url());
    Some((postgres?, redis?))
}

fn url(variable: &str, server: &str, notice: &Once) -> Option<String> {
    let value = std::env::var(variable).ok().filter(|v| !v.is_empty());
    notice.call_once(|| {
        let line = match &value {
            Some(url) => format!("NOTICE: {server} tests run against {url}"),
            None => format!("NOTICE: {variable} unset: {server} tests skipped"),
        };
        let _ = writeln!(std::io::stderr(), "{line}");
    });
    value
}
