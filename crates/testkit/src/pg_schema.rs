//! A PostgreSQL schema of one's own on the shared test server.
//!
//! Other people run tests on the same server at the same time: a test only ever
//! creates and drops its own schema, named with [`unique`](crate::unique).

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::servers;

/// How long [`drop_schema`] waits for a lock before it fails.
pub const DROP_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// A schema name on the test server; the caller drops it with [`PgSchema::drop`].
#[derive(Clone, Debug)]
pub struct PgSchema {
    url: String,
    name: String,
}

impl PgSchema {
    /// A fresh name `<tag>_<unique>` on the server of `ICHNAEA_TEST_POSTGRES_URL`,
    /// or `None` (after a notice) when that is unset. Nothing is created yet.
    pub fn new(tag: &str) -> Option<PgSchema> {
        let url = servers::postgres_url()?;
        Some(PgSchema {
            url,
            name: format!("{tag}_{}", crate::unique()),
        })
    }

    /// The server's URL (connections there do not use the schema by themselves).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL whose connections work in the schema (`search_path`), for a process
    /// that only takes a database URL.
    pub fn search_path_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.url, self.name)
    }

    /// Creates the schema (empty) unless it exists.
    pub async fn create(&self) -> Result<(), sqlx::Error> {
        let mut conn = PgConnection::connect(&self.url).await?;
        let sql = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&self.name));
        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
        conn.close().await
    }

    /// Drops the schema with everything in it; see [`drop_schema`].
    pub async fn drop(self) -> Result<(), sqlx::Error> {
        drop_schema(&self.url, &self.name).await
    }
}

/// Drops `schema` on the server at `url` with everything in it, through a
/// connection of its own (the test's pool may be closed or broken by then).
///
/// The drop gives up after [`DROP_LOCK_TIMEOUT`] of waiting for a lock: a failed
/// test can leave tasks holding a transaction open in the schema, and its
/// clean-up must then fail, not hang the test run.
pub async fn drop_schema(url: &str, schema: &str) -> Result<(), sqlx::Error> {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    let result = async {
        let mut tx = pool.begin().await?;
        let timeout = format!("SET LOCAL lock_timeout = {}", DROP_LOCK_TIMEOUT.as_millis());
        sqlx::query(AssertSqlSafe(timeout))
            .execute(&mut *tx)
            .await?;
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(schema));
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await?;
        tx.commit().await
    }
    .await;
    pool.close().await;
    result
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clean-up's schema drop fails after its lock timeout when another
    /// session holds a lock in the schema (as a failed test's stuck task can),
    /// instead of waiting for ever; once the lock is gone it drops the schema.
    #[tokio::test]
    async fn drop_schema_gives_up_on_a_held_lock() {
        let Some(schema) = PgSchema::new("test") else {
            return;
        };
        schema.create().await.unwrap();
        let mut holder = PgConnection::connect(schema.url()).await.unwrap();
        let table = format!("CREATE TABLE \"{}\".api_key (k TEXT)", schema.name());
        sqlx::query(AssertSqlSafe(table))
            .execute(&mut holder)
            .await
            .unwrap();
        sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
        let lock = format!(
            "LOCK TABLE \"{}\".api_key IN ACCESS SHARE MODE",
            schema.name()
        );
        sqlx::query(AssertSqlSafe(lock))
            .execute(&mut holder)
            .await
            .unwrap();

        let started = std::time::Instant::now();
        // Bounded here too, so that a regression fails instead of hanging.
        let bound = DROP_LOCK_TIMEOUT + Duration::from_secs(30);
        let err = tokio::time::timeout(bound, drop_schema(schema.url(), schema.name()))
            .await
            .expect("the drop waited past its lock timeout")
            .expect_err("the drop must give up while the lock is held");
        assert!(err.to_string().contains("lock timeout"), "{err}");
        assert!(
            started.elapsed() >= DROP_LOCK_TIMEOUT,
            "gave up after {:?}, before the lock timeout",
            started.elapsed()
        );

        sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
        let name = schema.name().to_string();
        schema.drop().await.unwrap();
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
        )
        .bind(&name)
        .fetch_one(&mut holder)
        .await
        .unwrap();
        assert_eq!(left, 0, "schema {name} still there");
        holder.close().await.unwrap();
    }
}
