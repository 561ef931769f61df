//! The embedded mode's read path for locate lookups: station and cell-area rows
//! read by key on plain SQLite connections, synchronously, on the calling thread.
//!
//! Why: sqlx runs every SQLite connection on its own worker thread and hands each
//! query and each row across threads. For a locate request — a few point reads of
//! microseconds each — those hand-offs cost more than the reads: they dominated the
//! `/v1/geolocate` profile. A primary-key read of a WAL database never waits for the
//! writer, so doing it inline is as cheap as any other computation of the request.
//!
//! Writes and everything else keep going through the sqlx pool; the connections
//! here are opened with `query_only`, lazily (after the pool has created and
//! migrated the file), and kept in a small idle list.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
use rusqlite::{Connection, OpenFlags, Row, params_from_iter};

use crate::rows::SqlRow;
use crate::{Result, StoreError};

/// Idle connections kept for reuse; more are opened when more threads read at
/// once, and dropped when they come back to a full list.
const MAX_IDLE: usize = 16;

/// Prepared statements cached per connection (one per distinct lookup shape:
/// table set and key count).
const STATEMENT_CACHE: usize = 512;

/// Read-only SQLite connections to the store's file, for key lookups.
#[derive(Debug)]
pub(crate) struct SqliteReader {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    closed: AtomicBool,
}

impl SqliteReader {
    /// A reader of the database file at `path`; connects on first use.
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration) -> SqliteReader {
        SqliteReader {
            path,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// Refuses further reads and drops the idle connections, as closing the pool
    /// does for everything else.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// Runs `sql` with `params` and decodes every row with `decode`.
    pub(crate) fn query<T>(
        &self,
        sql: &str,
        params: &[&[u8]],
        mut decode: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Database(sqlx::Error::PoolClosed));
        }
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = (|| {
            let mut stmt = conn.prepare_cached(sql)?;
            let mut rows = stmt.query(params_from_iter(params.iter()))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(decode(row)?);
            }
            Ok(out)
        })();
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
            && !self.closed.load(Ordering::SeqCst)
        {
            idle.push(conn);
        }
        result
    }
}

fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, col: &str) -> Result<T> {
    Ok(row.get(col)?)
}

impl SqlRow for Row<'_> {
    fn f64_opt(&self, col: &str) -> Result<Option<f64>> {
        get(self, col)
    }
    fn i64_opt(&self, col: &str) -> Result<Option<i64>> {
        get(self, col)
    }
    fn bool_opt(&self, col: &str) -> Result<Option<bool>> {
        get(self, col)
    }
    fn str_opt(&self, col: &str) -> Result<Option<String>> {
        get(self, col)
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        get(self, col)
    }
    fn date_opt(&self, col: &str) -> Result<Option<NaiveDate>> {
        get(self, col)
    }
    fn datetime_opt(&self, col: &str) -> Result<Option<NaiveDateTime>> {
        get(self, col)
    }
}
