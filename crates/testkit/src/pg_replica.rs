//! The streaming replica of the PostgreSQL test server
//! (`ICHNAEA_TEST_POSTGRES_REPLICA_URL`, set up by `.ci/pg-replica`): waiting
//! for it to replay the primary's writes, and pausing its replay to make it
//! lag, with a guard that always resumes it.
//!
//! The replica is shared by every test of a process (and pausing it is
//! global), so tests that pause it or depend on it being current take
//! [`exclusive`] first.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// Serialises the tests of one process that use the replica.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Waits until the replica at `replica_url` has replayed everything the
/// primary at `primary_url` has flushed now (so every transaction committed
/// before the call); panics after `limit`.
pub async fn wait_replayed(primary_url: &str, replica_url: &str, limit: Duration) {
    let mut primary = PgConnection::connect(primary_url)
        .await
        .expect("connect to the primary");
    let target: i64 =
        sqlx::query_scalar("SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint")
            .fetch_one(&mut primary)
            .await
            .expect("the primary's WAL position");
    let _ = primary.close().await;
    let mut replica = PgConnection::connect(replica_url)
        .await
        .expect("connect to the replica");
    let start = Instant::now();
    loop {
        let replayed: Option<i64> =
            sqlx::query_scalar("SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint")
                .fetch_one(&mut replica)
                .await
                .expect("the replica's replay position");
        if replayed.is_some_and(|r| r >= target) {
            break;
        }
        assert!(
            start.elapsed() < limit,
            "the replica did not replay up to {target} within {limit:?} (at {replayed:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = replica.close().await;
}

/// Replay on the replica stays paused while this lives: dropping it (at the
/// end of a test, or while a failed assertion unwinds) resumes it.
pub struct ReplayPause {
    url: String,
}

impl ReplayPause {
    /// Pauses replay on the replica at `url` and waits until it is paused.
    pub async fn new(url: &str) -> ReplayPause {
        let mut conn = PgConnection::connect(url)
            .await
            .expect("connect to the replica");
        sqlx::query("SELECT pg_wal_replay_pause()")
            .execute(&mut conn)
            .await
            .expect("pause replay");
        let pause = ReplayPause {
            url: url.to_string(),
        };
        let start = Instant::now();
        loop {
            let state: String = sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()")
                .fetch_one(&mut conn)
                .await
                .expect("the replay pause state");
            if state == "paused" {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "replay not paused: {state}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = conn.close().await;
        pause
    }
}

/// Resumes replay on the replica at `url`.
pub async fn resume_replay(url: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut conn)
        .await?;
    conn.close().await
}

impl Drop for ReplayPause {
    fn drop(&mut self) {
        let url = self.url.clone();
        if let Err(e) = crate::block_on(async move { resume_replay(&url).await }) {
            eprintln!("WARNING: could not resume replay on the test replica: {e}");
        }
    }
}
