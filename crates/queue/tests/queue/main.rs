//! The queue and the per-day counters, each contract checked against every
//! backend, in one test binary.
//!
//! Each case is one `async fn(&Fixture<_>)`; `backend_tests!` turns it into a
//! module with a `sqlite` test (a fresh SQLite file in a temporary directory) and
//! a `redis` test (a key prefix of its own on the server named by
//! `ICHNAEA_TEST_REDIS_URL`; skipped when unset).

// Test code: a failed unwrap is a failed test with its message, and test
// helpers are not public API.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod counters;
mod queue;

use std::time::Duration;

use ichnaea_queue::{Counters, Queue};
use ichnaea_testkit::{RedisPrefix, TempDir};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Where a fixture's queue or counters live, so they can be re-opened; removed
/// again when dropped.
pub(crate) enum Storage {
    /// `q.db` in a directory of its own.
    Sqlite(TempDir),
    /// A key prefix of its own.
    Redis(RedisPrefix),
}

/// What a fixture holds: the queue or the counters, opened on its storage.
pub(crate) trait Open: Sized {
    /// A handle on `storage`, as a (re)started process would open it.
    async fn open(storage: &Storage) -> Self;
    /// The backend's name (`sqlite` or `redis`).
    fn backend(&self) -> &'static str;
}

/// The queue and the counters open the same way: `embedded(pool)` on SQLite,
/// `redis(url, prefix)` on Redis.
macro_rules! open_on_storage {
    ($($handle:ident),*) => {$(
        impl Open for $handle {
            async fn open(storage: &Storage) -> $handle {
                match storage {
                    Storage::Sqlite(dir) => $handle::embedded(sqlite_pool(dir).await).await,
                    Storage::Redis(redis) => $handle::redis(redis.url(), redis.prefix()).await,
                }
                .unwrap_or_else(|e| panic!("open {} on {}: {e}", stringify!($handle), storage.name()))
            }

            fn backend(&self) -> &'static str {
                $handle::backend(self)
            }
        }
    )*};
}

open_on_storage!(Queue, Counters);

impl Storage {
    fn name(&self) -> &'static str {
        match self {
            Storage::Sqlite(_) => "SQLite",
            Storage::Redis(_) => "Redis",
        }
    }
}

/// A queue or counters on fresh, private storage, removed again when the fixture
/// is dropped.
pub(crate) struct Fixture<T> {
    // Declared first: closed before the storage is removed.
    handle: T,
    /// The storage, for backend-specific checks.
    pub(crate) storage: Storage,
}

impl<T: Open> Fixture<T> {
    async fn new(storage: Storage, backend: &str) -> Fixture<T> {
        let handle = T::open(&storage).await;
        assert_eq!(handle.backend(), backend);
        Fixture { handle, storage }
    }

    /// A second, independent handle on the same storage, as a restarted process
    /// would open it.
    pub(crate) async fn reopen(&self) -> T {
        T::open(&self.storage).await
    }

    /// A Redis connection on the fixture's server, with its key prefix; `None` for
    /// SQLite.
    pub(crate) fn redis_conn(&self) -> Option<(redis::Connection, &str)> {
        match &self.storage {
            Storage::Sqlite(_) => None,
            Storage::Redis(redis) => Some((redis.connection(), redis.prefix())),
        }
    }
}

impl Fixture<Queue> {
    /// The queue under test.
    pub(crate) fn queue(&self) -> &Queue {
        &self.handle
    }
}

impl Fixture<Counters> {
    /// The counters under test.
    pub(crate) fn counters(&self) -> &Counters {
        &self.handle
    }
}

/// Runs `body` on a fixture over a fresh SQLite file.
pub(crate) async fn on_sqlite<T: Open>(body: impl AsyncFnOnce(&Fixture<T>)) {
    let storage = Storage::Sqlite(TempDir::new("queue-test"));
    body(&Fixture::new(storage, "sqlite").await).await;
}

/// Runs `body` on a fixture over a fresh Redis key prefix; returns at once (after
/// a notice) when no Redis server is configured.
pub(crate) async fn on_redis<T: Open>(body: impl AsyncFnOnce(&Fixture<T>)) {
    if let Some(prefix) = RedisPrefix::new() {
        body(&Fixture::new(Storage::Redis(prefix), "redis").await).await;
    }
}

/// A pool on `q.db` in `dir`, as the service opens its SQLite file.
async fn sqlite_pool(dir: &TempDir) -> sqlx::SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("q.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30));
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("open SQLite")
}
