//! Applies the migrations of [`crate::schema`] and reports the schema version.

use chrono::Utc;
use sqlx::AssertSqlSafe;
use sqlx::Row;

use crate::schema::{Dialect, migrations};
use crate::{Backend, Result, Store, with_pool};

/// What [`Store::migrate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this call, in order (empty when already current).
    pub applied: Vec<i64>,
    /// Schema version afterwards.
    pub version: i64,
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT NOT NULL PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    applied_at TIMESTAMP NOT NULL
)";

impl Store {
    fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Brings the schema up to date. Each migration runs in its own transaction
    /// together with its bookkeeping row; concurrent callers are serialised (an
    /// advisory lock on PostgreSQL, the write lock on SQLite), so two processes
    /// starting at once apply each migration exactly once.
    pub async fn migrate(&self) -> Result<MigrationReport> {
        let dialect = self.dialect();
        let mut applied = Vec::new();
        with_pool!(self, pool => {
            sqlx::query(CREATE_TABLE).execute(pool).await?;
            for migration in migrations(dialect) {
                let mut tx = pool.begin().await?;
                if dialect == Dialect::Postgres {
                    sqlx::query("SELECT pg_advisory_xact_lock(7242)").execute(&mut *tx).await?;
                } else {
                    // Take SQLite's write lock before reading, so the check below
                    // and the DDL are one atomic step.
                    sqlx::query("DELETE FROM schema_migrations WHERE 0 = 1").execute(&mut *tx).await?;
                }
                let done: Option<i64> = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(migration.version)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                if done.is_some() {
                    tx.rollback().await?;
                    continue;
                }
                sqlx::raw_sql(AssertSqlSafe(migration.sql.as_str())).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                    .bind(migration.version)
                    .bind(migration.name)
                    .bind(Utc::now().naive_utc())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                tracing::info!(version = migration.version, name = migration.name, "applied migration");
                applied.push(migration.version);
            }
        });
        let version = self.schema_version().await?;
        Ok(MigrationReport { applied, version })
    }

    /// Highest applied migration; 0 for a database never migrated.
    pub async fn schema_version(&self) -> Result<i64> {
        with_pool!(self, pool => {
            let exists = match self.dialect() {
                Dialect::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
                Dialect::Postgres => "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'schema_migrations'",
            };
            let n: i64 = sqlx::query(exists).fetch_one(pool).await?.try_get(0)?;
            if n == 0 {
                return Ok(0);
            }
            let row = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetch_one(pool).await?;
            Ok(row.try_get::<i64, _>(0)?)
        })
    }
}
