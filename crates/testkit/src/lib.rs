//! The test harness shared by ichnaea's test suites: a dev-dependency only, never
//! part of the service.
//!
//! Two layers, so that the crates the kit builds on can use it too:
//!
//! - Without features, the kit knows nothing of ichnaea's own crates: unique
//!   names ([`unique`]), the test servers from the environment ([`servers`]), a
//!   PostgreSQL schema and a Redis key prefix of one's own that are removed
//!   again ([`PgSchema`], [`RedisPrefix`]), PostgreSQL and Redis servers of one's own
//!   ([`PrivatePostgres`], [`PrivateRedis`]), temporary directories ([`TempDir`]),
//!   gzip helpers, fake HTTP targets ([`FakeHttp`]), the real binary under test
//!   ([`binary`]), the per-backend test macro ([`backend_tests!`]) and the
//!   clean-up runner ([`run_then`]).
//! - Features add fixtures over the crates under test: `store` (a migrated
//!   `Store` on SQLite or PostgreSQL), `backends` (store, queue and counters on
//!   the embedded or the cluster backends) and `web` (the router's state).
//!
//! A crate's integration tests may use a feature that depends on that crate
//! itself (`ichnaea-store`'s tests use `store`): Cargo links one copy of the
//! crate. Its unit tests (`#[cfg(test)]` in `src/`) must not: there the crate
//! under test is a different copy from the one the kit sees, and the types do
//! not match.

// A harness reports a broken test environment by panicking, with a message, in
// the test that met it: that is its error path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_http;
mod files;
mod gzip;
mod names;
pub mod pg_replica;
mod pg_schema;
mod private_postgres;
pub mod private_redis;
mod redis_prefix;
mod run;
mod tcp_proxy;

pub mod binary;
pub mod servers;
// The one `unsafe` of the workspace: `fcntl` with an open-file-description
// lock, which std does not offer (test harness only).
#[allow(unsafe_code)]
pub mod sqlite_lock;

#[cfg(feature = "backends")]
pub mod backends;
#[cfg(feature = "store")]
pub mod store;
#[cfg(feature = "web")]
pub mod web;

pub use fake_http::{FakeHttp, Recorded, serve};
pub use files::{TempDir, files, is_object_name, relative_files};
pub use gzip::{gunzip_json, gzip};
pub use names::unique;
pub use pg_schema::{DROP_LOCK_TIMEOUT, PgSchema, drop_schema};
pub use private_postgres::PrivatePostgres;
pub use private_redis::PrivateRedis;
pub use redis_prefix::{RedisPrefix, delete_keys};
pub use run::{block_on, run_then};
pub use tcp_proxy::TcpProxy;

/// Generates one test per backend for each listed `async fn name(fixture)`.
///
/// ```text
/// ichnaea_testkit::backend_tests!(
///     sqlite => on_sqlite, postgres => on_postgres;
///     api_keys_round_trip,
///     #[ignore = "slow"] full_export,
/// );
/// ```
///
/// For each `name` this writes `mod name { async fn sqlite(); async fn postgres() }`,
/// where each test calls its runner with the function: `on_sqlite(name).await`.
/// A runner takes the body (an `AsyncFnOnce(fixture)`), builds the fixture,
/// runs the body and cleans up. Runners are paths as seen from the module
/// holding the tests (local functions or `ichnaea_testkit::…`). Attributes
/// written before a name apply to both of its tests. The tests are
/// `#[tokio::test]` unless a test attribute comes first:
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)] sqlite => …`.
/// With `sync` first, the functions and runners are synchronous and the tests
/// plain `#[test]`s: `sync embedded => on_embedded, cluster => on_cluster; …`.
#[macro_export]
macro_rules! backend_tests {
    (
        sync $a:ident => $run_a:path, $b:ident => $run_b:path;
        $($(#[$attr:meta])* $name:ident),* $(,)?
    ) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[test]
                $(#[$attr])*
                fn $a() {
                    $run_a(super::$name);
                }

                #[test]
                $(#[$attr])*
                fn $b() {
                    $run_b(super::$name);
                }
            }
        )*
    };
    (
        #[$test:meta]
        $a:ident => $run_a:path, $b:ident => $run_b:path;
        $($(#[$attr:meta])* $name:ident),* $(,)?
    ) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[$test]
                $(#[$attr])*
                async fn $a() {
                    $run_a(super::$name).await;
                }

                #[$test]
                $(#[$attr])*
                async fn $b() {
                    $run_b(super::$name).await;
                }
            }
        )*
    };
    ($a:ident => $run_a:path, $b:ident => $run_b:path; $($rest:tt)*) => {
        $crate::backend_tests!(#[tokio::test] $a => $run_a, $b => $run_b; $($rest)*);
    };
}
