//! The embedded mode's read path for locate lookups: station and cell-area rows
//! read by key on plain SQLite connections, one blocking task per lookup set.
//!
//! Why: sqlx runs every SQLite connection on its own worker thread and hands each
//! query and each row across threads. For a locate request — a few point reads of
//! microseconds each — those hand-offs cost more than the reads: they dominated the
//! `/v1/geolocate` profile. Here a whole lookup set (every key of one station
//! kind) is one hop to the blocking pool and back.
//!
//! Why not inline on the runtime thread (as this path first did): a WAL read
//! normally never waits, but when its read locks are held (a stuck checkpoint
//! or writer in another process, a crash mid-recovery) SQLite retries for about
//! ten seconds whatever its busy timeout. [`SqliteReader::lookup_bounded`]
//! gives up after `StoreOptions::read_timeout` instead, and while an abandoned
//! read still runs, further lookups fail at once.
//!
//! Writes and everything else keep going through the sqlx pool; the connections
//! here are opened with `query_only`, lazily (after the pool has created and
//! migrated the file), and kept in a small idle list.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
use rusqlite::{Connection, OpenFlags, Row};

use crate::rows::SqlRow;
use crate::{Result, StoreError};

/// Idle connections kept for reuse; more are opened when more threads read at
/// once, and dropped when they come back to a full list.
const MAX_IDLE: usize = 16;

/// Address space each read connection maps the database file into (virtual; the
/// largest SQLite allows by default, beyond it pages are read normally; the
/// pages are the operating system's page cache, shared by all connections).
const MMAP_BYTES: i64 = 0x7fff_0000;

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
    /// How long a whole lookup may take before the caller gets an error.
    read_timeout: Duration,
    /// Lookups still running after their caller gave up on them: while one
    /// is, new lookups fail at once instead of piling up blocked threads.
    stuck: AtomicUsize,
}

impl SqliteReader {
    /// A reader of the database file at `path`; connects on first use.
    pub(crate) fn new(
        path: PathBuf,
        busy_timeout: Duration,
        read_timeout: Duration,
    ) -> SqliteReader {
        SqliteReader {
            path,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            read_timeout,
            stuck: AtomicUsize::new(0),
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
        // Pages are read through a shared memory map instead of being copied into
        // each connection's small page cache: a lookup in a large station table
        // touches pages all over the file.
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// Runs each `(sql, key)` point lookup of `lookups` in one read transaction
    /// (one snapshot, one lock round) and decodes every row found with `decode`.
    /// `columns` names the selected columns in order, so values are read by
    /// position rather than by asking SQLite for column names.
    pub(crate) fn lookup<T>(
        &self,
        columns: &[&str],
        lookups: &[(&str, &[u8])],
        mut decode: impl FnMut(&Columns<'_, '_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Database(sqlx::Error::PoolClosed));
        }
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        // BEGIN / COMMIT as cached statements: rusqlite's `Transaction` parses
        // them anew every time, which showed in the locate profile.
        let result = (|| {
            conn.prepare_cached("BEGIN DEFERRED")?.execute([])?;
            let mut out = Vec::with_capacity(lookups.len());
            for (sql, key) in lookups {
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query([key])?;
                while let Some(row) = rows.next()? {
                    out.push(decode(&Columns { row, columns })?);
                }
            }
            conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(out)
        })();
        if !conn.is_autocommit() {
            // Failed half-way: end the read transaction (an error here leaves the
            // connection in one, and it is then dropped below).
            let _ = conn.execute_batch("ROLLBACK");
        }
        // A connection is only reused when it is back outside any transaction.
        if conn.is_autocommit()
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
            && !self.closed.load(Ordering::SeqCst)
        {
            idle.push(conn);
        }
        result
    }

    /// [`SqliteReader::lookup`] on the blocking thread pool, bounded by the
    /// read timeout: a lock held by another process (a writer or checkpoint
    /// stuck, or the WAL index locked) can make SQLite wait ~10 s whatever its
    /// busy timeout, and that wait must not freeze a runtime thread nor the
    /// request. Past the timeout the caller gets [`StoreError::ReadTimeout`]
    /// and the read finishes (or fails) on its own thread; until it has, new
    /// lookups fail at once instead of blocking more threads.
    pub(crate) async fn lookup_bounded<T, D>(
        self: &Arc<Self>,
        columns: &'static [&'static str],
        lookups: Vec<(&'static str, Vec<u8>)>,
        mut decode: D,
    ) -> Result<Vec<T>>
    where
        T: Send + 'static,
        D: FnMut(&Columns<'_, '_>) -> Result<T> + Send + 'static,
    {
        if self.read_timeout.is_zero() {
            let keys: Vec<(&str, &[u8])> = lookups
                .iter()
                .map(|(sql, key)| (*sql, key.as_slice()))
                .collect();
            return self.lookup(columns, &keys, decode);
        }
        if self.stuck.load(Ordering::SeqCst) > 0 {
            return Err(StoreError::ReadTimeout(self.read_timeout));
        }
        let reader = Arc::clone(self);
        let mut task = tokio::task::spawn_blocking(move || {
            let keys: Vec<(&str, &[u8])> = lookups
                .iter()
                .map(|(sql, key)| (*sql, key.as_slice()))
                .collect();
            reader.lookup(columns, &keys, &mut decode)
        });
        match tokio::time::timeout(self.read_timeout, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(StoreError::Corrupt {
                table: "station lookup".into(),
                message: join.to_string(),
            }),
            Err(_) => {
                self.stuck.fetch_add(1, Ordering::SeqCst);
                let reader = Arc::clone(self);
                tokio::spawn(async move {
                    let _ = task.await;
                    reader.stuck.fetch_sub(1, Ordering::SeqCst);
                });
                tracing::warn!(timeout = ?self.read_timeout, "station lookup timed out: the database is locked");
                Err(StoreError::ReadTimeout(self.read_timeout))
            }
        }
    }
}

/// A result row whose columns are found by name in the statement's known column
/// list (cheaper than SQLite's by-name lookup, which compares C strings).
pub(crate) struct Columns<'r, 'c> {
    row: &'r Row<'r>,
    columns: &'c [&'c str],
}

impl Columns<'_, '_> {
    fn get<T: rusqlite::types::FromSql>(&self, col: &str) -> Result<T> {
        match self.columns.iter().position(|c| *c == col) {
            Some(i) => Ok(self.row.get(i)?),
            None => Ok(self.row.get(col)?),
        }
    }

    /// A text column: dates and timestamps are stored as text by sqlx
    /// (`YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS[.f]`) and parsed below without the
    /// format-string machinery of rusqlite's chrono conversions.
    fn text(&self, col: &str) -> Result<Option<String>> {
        self.get(col)
    }
}

impl SqlRow for Columns<'_, '_> {
    fn f64_opt(&self, col: &str) -> Result<Option<f64>> {
        self.get(col)
    }
    fn i64_opt(&self, col: &str) -> Result<Option<i64>> {
        self.get(col)
    }
    fn bool_opt(&self, col: &str) -> Result<Option<bool>> {
        self.get(col)
    }
    fn str_opt(&self, col: &str) -> Result<Option<String>> {
        self.get(col)
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        self.get(col)
    }
    fn bytes_opt(&self, col: &str) -> Result<Option<Vec<u8>>> {
        self.get(col)
    }
    fn date_opt(&self, col: &str) -> Result<Option<NaiveDate>> {
        match self.text(col)? {
            None => Ok(None),
            Some(text) => match text.get(..10).and_then(parse_date) {
                Some(date) => Ok(Some(date)),
                None => self.get(col),
            },
        }
    }
    fn datetime_opt(&self, col: &str) -> Result<Option<NaiveDateTime>> {
        match self.text(col)? {
            None => Ok(None),
            Some(text) => match parse_datetime(&text) {
                Some(at) => Ok(Some(at)),
                None => self.get(col),
            },
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS[.fraction]` (sqlx's SQLite encoding) or with a `T`.
fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    let date = parse_date(text.get(..10)?)?;
    let rest = text.get(10..)?;
    let rest = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('T'))?;
    let time = parse_time(rest).or_else(|| rest.parse().ok())?;
    Some(date.and_time(time))
}

/// The decimal value of ASCII digits; `None` for anything else.
fn digits(text: &[u8]) -> Option<u32> {
    text.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// `YYYY-MM-DD` by hand: chrono's `FromStr` runs its format-item parser, a
/// measurable share of a locate request that reads three stations.
fn parse_date(text: &str) -> Option<NaiveDate> {
    match text.as_bytes() {
        [y @ .., b'-', m1, m2, b'-', d1, d2] if y.len() == 4 => NaiveDate::from_ymd_opt(
            i32::try_from(digits(y)?).ok()?,
            digits(&[*m1, *m2])?,
            digits(&[*d1, *d2])?,
        ),
        _ => text.parse().ok(),
    }
}

/// `HH:MM:SS` with an optional fraction of up to nine digits; anything else is
/// left to chrono.
fn parse_time(text: &str) -> Option<chrono::NaiveTime> {
    let (hms, fraction) = match text.split_once('.') {
        Some((hms, fraction)) => (hms, fraction.as_bytes()),
        None => (text, &b""[..]),
    };
    let [h1, h2, b':', m1, m2, b':', s1, s2] = hms.as_bytes() else {
        return None;
    };
    if fraction.len() > 9 {
        return None;
    }
    let nanos = if fraction.is_empty() {
        0
    } else {
        digits(fraction)? * 10u32.pow(9 - fraction.len() as u32)
    };
    chrono::NaiveTime::from_hms_nano_opt(
        digits(&[*h1, *h2])?,
        digits(&[*m1, *m2])?,
        digits(&[*s1, *s2])?,
        nanos,
    )
}

#[cfg(test)]
mod tests {
    use super::parse_datetime;

    #[test]
    fn parses_sqlx_timestamps() {
        let at = parse_datetime("2026-11-29 15:04:05.123456").map(|t| t.to_string());
        assert_eq!(at.as_deref(), Some("2026-11-29 15:04:05.123456"));
        let at = parse_datetime("2026-11-29T15:04:05").map(|t| t.to_string());
        assert_eq!(at.as_deref(), Some("2026-11-29 15:04:05"));
        let at = parse_datetime("2026-01-02 03:04:05.5").map(|t| t.to_string());
        assert_eq!(at.as_deref(), Some("2026-01-02 03:04:05.500"));
        let at = parse_datetime("2026-11-29 15:04:05.123456789").map(|t| t.to_string());
        assert_eq!(at.as_deref(), Some("2026-11-29 15:04:05.123456789"));
        assert_eq!(parse_datetime("2026-11-29"), None);
        assert_eq!(parse_datetime("garbage"), None);
        assert_eq!(parse_datetime("2026-02-30 15:04:05"), None);
        assert_eq!(parse_datetime("2026-11-29 25:04:05"), None);
        assert_eq!(parse_datetime("2026-11-29 15:04:05.x"), None);
        assert_eq!(
            super::parse_date("2024-02-29"),
            chrono::NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        assert_eq!(super::parse_date("2023-02-29"), None);
        assert_eq!(super::parse_date("20x3-02-01"), None);
    }
}
