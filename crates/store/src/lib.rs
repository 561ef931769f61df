//! The Store: every table of ichnaea behind one narrow interface, with a SQLite
//! implementation (embedded mode) and a PostgreSQL implementation (cluster mode).
//!
//! Each public method is one real operation. SQL is written once where the two
//! dialects agree (`$n` placeholders, `ON CONFLICT … DO UPDATE`, `RETURNING`) and
//! side by side where they do not; the schema only changes through the migrations
//! in [`schema`].

mod apikeys;
mod apply;
mod areas;
mod batches;
mod datamap;
mod datamap_tiles;
pub use datamap::DatamapRow;
pub use datamap_tiles::GridBox;
mod exports;
mod migrate;
mod replica;
mod rows;
pub mod schema;
mod sqlite_read;
mod stations;
mod stats;

use sqlx::AssertSqlSafe;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlite_read::SqliteReader;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use apply::{BoundingBox, StationKey, StationLock, StationTable, StationWrites, StoredStation};
pub use migrate::MigrationReport;
pub use replica::{ReadFuture, ReplicaOptions, ReplicaState, ReplicaStatus};

/// Errors of the store. Database failures keep their cause; the rest say which
/// rule was broken.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// SQLite reported an error on the embedded read path.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A row with this primary key already exists.
    #[error("{0} already exists")]
    Duplicate(String),
    /// A read replica was configured for a SQLite (embedded) database: only
    /// PostgreSQL has replicas.
    #[error(
        "a read replica (database_readonly_url) needs a PostgreSQL database_url; the embedded \
         SQLite database has no replicas"
    )]
    ReplicaNeedsPostgres,
    /// The URL names no supported backend.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// A stored value cannot be represented in the domain types.
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        /// Table holding the row.
        table: String,
        /// What is wrong with it.
        message: String,
    },
    /// A read did not finish in time: the database is locked (SQLite's locate
    /// read path, see `StoreOptions::read_timeout`).
    #[error("database read did not finish within {0:?}: the database is locked")]
    ReadTimeout(Duration),
    /// A key that cannot be encoded for storage.
    #[error("invalid key: {0}")]
    Key(#[from] ichnaea_core::cell::KeyError),
    /// Creating the directory of the SQLite file failed.
    #[error("cannot create directory for {path}: {source}")]
    Io {
        /// Directory that could not be created.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Result type of every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Connection settings beyond the URL.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Maximum pooled connections.
    pub max_connections: u32,
    /// PostgreSQL only: schema to create (if missing) and put first on the
    /// search path. Tests use one schema each so they run in parallel.
    pub pg_schema: Option<String>,
    /// How long to wait for a free connection or a database lock.
    pub acquire_timeout: Duration,
    /// SQLite only: how long a locate lookup (station and cell-area reads)
    /// may take, lock waits included. Past it the lookup fails with
    /// [`StoreError::ReadTimeout`] (the request falls back to GeoIP and the
    /// external provider, as when the database is down) instead of waiting.
    /// Zero reads inline on the calling (runtime) thread with a 100 ms busy
    /// timeout: one thread hop cheaper, but unbounded when SQLite's WAL read
    /// locks are held.
    pub read_timeout: Duration,
    /// PostgreSQL only: a hot standby that [`Store::read`] reads from while it
    /// is fresh enough (in the schema of `pg_schema` too). Refused for SQLite.
    pub replica: Option<ReplicaOptions>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            pg_schema: None,
            acquire_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_millis(500),
            replica: None,
        }
    }
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Handle to the database; cheap to clone (pools are shared).
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// SQLite only: the inline read path for locate lookups.
    reader: Option<Arc<SqliteReader>>,
    /// PostgreSQL only: the read replica of [`Store::read`], when configured.
    replica: Option<Arc<replica::Replica>>,
    /// PostgreSQL only: the schema of `StoreOptions::pg_schema`, which scopes
    /// the advisory lock keys (tests share one database in several schemas;
    /// advisory locks are per database). `None`: the unscoped keys.
    lock_scope: Option<Arc<str>>,
}

/// Runs `$body` with `$pool` bound to the concrete pool of either backend. The body
/// is compiled once per backend, so SQL written once serves both.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($pool) => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Whether a connection coming back to its pool may be used again: not when
/// it still counts an open transaction. That happens when a COMMIT fails (on
/// SQLite: the disk full, SQLITE_FULL) and SQLite has already ended the
/// transaction, so the rollback on drop fails too and sqlx's transaction
/// depth stays at 1: every later `begin_with` on that connection would fail
/// with "non-zero transaction depth", for good. Such a connection is closed;
/// the pool opens a fresh one.
fn healthy<C: sqlx::Connection>(conn: &mut C) -> bool {
    if conn.is_in_transaction() {
        tracing::warn!("closing a database connection left inside a transaction");
        return false;
    }
    true
}

impl Store {
    /// Opens a pool for `sqlite://PATH` (the file and its directory are created)
    /// or `postgres://…` / `postgresql://…`.
    /// With [`StoreOptions::replica`], the replica is attached (see
    /// [`Store::read`]).
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Store> {
        if url.starts_with("sqlite:") {
            if options.replica.is_some() {
                return Err(StoreError::ReplicaNeedsPostgres);
            }
            let connect = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(options.acquire_timeout);
            let path = connect.get_filename().to_path_buf();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .after_release(|conn, _| Box::pin(async move { Ok(healthy(conn)) }))
                .connect_with(connect)
                .await?;
            Ok(Store {
                backend: Backend::Sqlite(pool),
                reader: Some(Arc::new(SqliteReader::new(
                    path,
                    if options.read_timeout.is_zero() {
                        Duration::from_millis(100)
                    } else {
                        options.read_timeout
                    },
                    options.read_timeout,
                ))),
                replica: None,
                lock_scope: None,
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut connect = PgConnectOptions::from_str(url)?;
            if let Some(schema) = &options.pg_schema {
                create_pg_schema(connect.clone(), schema).await?;
                connect = connect.options([("search_path", schema.as_str())]);
            }
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .after_release(|conn, _| Box::pin(async move { Ok(healthy(conn)) }))
                .connect_with(connect)
                .await?;
            let store = Store {
                backend: Backend::Postgres(pool),
                reader: None,
                replica: None,
                lock_scope: options.pg_schema.as_deref().map(Arc::from),
            };
            match &options.replica {
                Some(replica) => store.attach_replica(replica, options.pg_schema.as_deref()),
                None => Ok(store),
            }
        } else {
            Err(StoreError::UnsupportedUrl(url.to_string()))
        }
    }

    /// `"sqlite"` or `"postgres"`, for logs and the heartbeat.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The SQLite pool, so the embedded queue can live in the same file.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.backend {
            Backend::Sqlite(pool) => Some(pool),
            Backend::Postgres(_) => None,
        }
    }

    /// A trivial round trip, for the heartbeat.
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Closes the pool (and the replica's), waiting for checked-out
    /// connections to return.
    pub async fn close(&self) {
        if let Some(reader) = &self.reader {
            reader.close();
        }
        self.close_replica().await;
        with_pool!(self, pool => pool.close().await)
    }
}

async fn create_pg_schema(connect: PgConnectOptions, schema: &str) -> Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect)
        .await?;
    let sql = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema));
    sqlx::query(AssertSqlSafe(&*sql)).execute(&pool).await?;
    pool.close().await;
    Ok(())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `$1, $2, …, $n` starting after `offset` bound parameters.
pub(crate) fn placeholders(offset: usize, n: usize) -> String {
    (1..=n)
        .map(|i| format!("${}", offset + i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Largest number of keys looked up in one `IN (…)` query.
pub(crate) const LOOKUP_CHUNK: usize = 500;

impl Store {
    /// Number of rows in one of the tables of [`schema::all_tables`]; `None` for
    /// any other name (tests only).
    #[cfg(feature = "testing")]
    pub async fn row_count(&self, table: &str) -> Result<Option<i64>> {
        if !schema::all_tables().iter().any(|t| t == table) {
            return Ok(None);
        }
        let sql = format!("SELECT COUNT(*) FROM {table}");
        with_pool!(self, pool => {
            let row = sqlx::query(AssertSqlSafe(&*sql)).fetch_one(pool).await?;
            Ok(Some(sqlx::Row::try_get::<i64, _>(&row, 0)?))
        })
    }
}

impl Store {
    /// `(rows, sum of samples)` over every table of a station family (`wifi`,
    /// `blue` or `cell`): a cheap global check that every accepted observation
    /// was applied exactly once (tests only).
    #[cfg(feature = "testing")]
    pub async fn station_totals(&self, family: &str) -> Result<(i64, i64)> {
        let tables: Vec<String> = match family {
            "wifi" => (0..16u8).map(schema::wifi_table).collect(),
            "blue" => (0..16u8).map(schema::blue_table).collect(),
            "cell" => ichnaea_core::radio::Radio::ALL
                .iter()
                .map(|r| r.cell_table().to_string())
                .collect(),
            _ => return Ok((0, 0)),
        };
        let (mut rows, mut samples) = (0, 0);
        for table in tables {
            let sql =
                format!("SELECT COUNT(*), CAST(COALESCE(SUM(samples), 0) AS BIGINT) FROM {table}");
            let (r, s): (i64, i64) = with_pool!(self, pool => {
                let row = sqlx::query(AssertSqlSafe(&*sql)).fetch_one(pool).await?;
                (sqlx::Row::try_get(&row, 0)?, sqlx::Row::try_get(&row, 1)?)
            });
            rows += r;
            samples += s;
        }
        Ok((rows, samples))
    }
}
