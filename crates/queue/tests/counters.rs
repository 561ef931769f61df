//! The per-day counters contract, checked against every backend.
//!
//! Each case is one `async fn(&Fixture)`; `counter_tests!` turns it into a module with
//! a `sqlite` test (embedded counters on a fresh SQLite file in the temp dir) and a
//! `redis` test (a random key prefix on the server named by `ICHNAEA_TEST_REDIS_URL`;
//! skipped when unset).

// Test code: a failed unwrap is a failed test with its message, and test
// helpers are not public API.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ichnaea_queue::Counters;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Where a fixture's counters live, so they can be re-opened and cleaned up.
enum Storage {
    Sqlite { path: PathBuf },
    Redis { url: String, prefix: String },
}

/// Counters on fresh, private storage, removed again when the fixture is dropped.
struct Fixture {
    counters: Counters,
    storage: Storage,
}

impl Fixture {
    async fn sqlite() -> Fixture {
        let path = std::env::temp_dir().join(format!(
            "ichnaea-counters-test-{}.db",
            uuid::Uuid::new_v4().simple()
        ));
        let counters = open_sqlite(&path).await;
        assert_eq!(counters.backend(), "sqlite");
        Fixture {
            counters,
            storage: Storage::Sqlite { path },
        }
    }

    async fn redis() -> Option<Fixture> {
        let Ok(url) = std::env::var("ICHNAEA_TEST_REDIS_URL") else {
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTICE: ICHNAEA_TEST_REDIS_URL unset: Redis counter tests skipped"
                );
            });
            return None;
        };
        static RUNNING: Once = Once::new();
        RUNNING.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "NOTICE: Redis counter tests run against {url}"
            );
        });
        let prefix = format!("ichnaea-test-{}:", uuid::Uuid::new_v4().simple());
        let counters = Counters::redis(&url, &prefix)
            .await
            .expect("connect to Redis");
        assert_eq!(counters.backend(), "redis");
        Some(Fixture {
            counters,
            storage: Storage::Redis { url, prefix },
        })
    }

    /// A second, independent handle on the same storage, as a restarted process
    /// would open it.
    async fn reopen(&self) -> Counters {
        match &self.storage {
            Storage::Sqlite { path } => open_sqlite(path).await,
            Storage::Redis { url, prefix } => {
                Counters::redis(url, prefix).await.expect("reconnect")
            }
        }
    }

    /// A Redis connection on the fixture's server, with its key prefix; `None` for
    /// SQLite.
    fn redis_conn(&self) -> Option<(redis::Connection, &str)> {
        match &self.storage {
            Storage::Sqlite { .. } => None,
            Storage::Redis { url, prefix } => Some((
                redis::Client::open(url.as_str())
                    .expect("Redis URL")
                    .get_connection()
                    .expect("connect to Redis"),
                prefix,
            )),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        match &self.storage {
            Storage::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Storage::Redis { url, prefix } => {
                if let Err(err) = delete_keys(url, prefix) {
                    let _ = writeln!(std::io::stderr(), "cleaning up {prefix}*: {err}");
                }
            }
        }
    }
}

async fn open_sqlite(path: &Path) -> Counters {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("open SQLite");
    Counters::embedded(pool)
        .await
        .expect("open embedded counters")
}

/// Deletes every key starting with `prefix`.
fn delete_keys(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let mut conn = redis::Client::open(url)?.get_connection()?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
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

macro_rules! counter_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let fixture = super::Fixture::sqlite().await;
                super::$name(&fixture).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                if let Some(fixture) = super::Fixture::redis().await {
                    super::$name(&fixture).await;
                }
            }
        }
    )*};
}

counter_tests!(
    increments_return_successive_values,
    key_path_pairs_are_separate,
    new_utc_day_starts_at_one,
    concurrent_increments_are_exact,
    unique_users_counts_distinct_ips,
    preset_counter_then_count,
    redis_key_names_and_ttls,
    embedded_counts_survive_reopen,
    embedded_background_flush,
    embedded_drops_days_before_yesterday,
    fallback_windows_count_per_name_and_window,
    fallback_window_redis_key_and_ttl,
    cache_round_trip_with_binary_keys,
    locate_sample_rate_set_read_and_clear,
    monitoring_lists_todays_usage,
);

/// A fixed instant late on a UTC day.
fn day_one() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 12, 23, 59, 58).unwrap()
}

async fn count(c: &Counters, key: &str, path: &str, ip: &str, now: DateTime<Utc>) -> u64 {
    c.count_request(key, path, "locate", ip, now)
        .await
        .expect("count_request")
}

async fn increments_return_successive_values(f: &Fixture) {
    let c = &f.counters;
    let now = Utc::now();
    assert_eq!(c.requests("abc-1", "v1.geolocate", now).await.unwrap(), 0);
    for expected in 1..=3 {
        assert_eq!(
            count(c, "abc-1", "v1.geolocate", "10.0.0.1", now).await,
            expected
        );
    }
    assert_eq!(c.requests("abc-1", "v1.geolocate", now).await.unwrap(), 3);
    // Reading does not increment.
    assert_eq!(c.requests("abc-1", "v1.geolocate", now).await.unwrap(), 3);
}

async fn key_path_pairs_are_separate(f: &Fixture) {
    let c = &f.counters;
    let now = day_one();
    assert_eq!(count(c, "key-a", "v1.geolocate", "10.0.0.1", now).await, 1);
    assert_eq!(count(c, "key-a", "v1.geolocate", "10.0.0.1", now).await, 2);
    assert_eq!(count(c, "key-a", "v2.geosubmit", "10.0.0.1", now).await, 1);
    assert_eq!(count(c, "key-b", "v1.geolocate", "10.0.0.1", now).await, 1);
    assert_eq!(count(c, "key-a", "v2.geosubmit", "10.0.0.1", now).await, 2);
    assert_eq!(c.requests("key-a", "v1.geolocate", now).await.unwrap(), 2);
    assert_eq!(c.requests("key-a", "v2.geosubmit", now).await.unwrap(), 2);
    assert_eq!(c.requests("key-b", "v1.geolocate", now).await.unwrap(), 1);
    assert_eq!(c.requests("key-b", "v2.geosubmit", now).await.unwrap(), 0);
}

async fn new_utc_day_starts_at_one(f: &Fixture) {
    let c = &f.counters;
    let today = day_one();
    let tomorrow = today + chrono::Duration::seconds(3);
    assert_eq!(
        count(c, "abc-1", "v1.geolocate", "10.0.0.1", today).await,
        1
    );
    assert_eq!(
        count(c, "abc-1", "v1.geolocate", "10.0.0.1", today).await,
        2
    );
    // Two seconds past midnight UTC.
    assert_eq!(
        count(c, "abc-1", "v1.geolocate", "10.0.0.1", tomorrow).await,
        1
    );
    assert_eq!(
        c.requests("abc-1", "v1.geolocate", tomorrow).await.unwrap(),
        1
    );
    // Yesterday's counter is kept, and not incremented by today's requests.
    assert_eq!(c.requests("abc-1", "v1.geolocate", today).await.unwrap(), 2);
    assert_eq!(
        c.unique_users("locate", "abc-1", tomorrow).await.unwrap(),
        1
    );
    // Flushing (embedded) keeps yesterday.
    c.flush().await.unwrap();
    assert_eq!(c.requests("abc-1", "v1.geolocate", today).await.unwrap(), 2);
}

async fn concurrent_increments_are_exact(f: &Fixture) {
    let now = Utc::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let c = f.counters.clone();
        tasks.spawn(async move {
            c.count_request(
                "busy-key",
                "v2.geosubmit",
                "submit",
                &format!("10.0.{}.{}", i / 256, i % 256),
                now,
            )
            .await
            .expect("count_request")
        });
    }
    let mut seen = HashSet::new();
    while let Some(value) = tasks.join_next().await {
        assert!(seen.insert(value.unwrap()), "every value is returned once");
    }
    assert_eq!(seen, (1..=200).collect::<HashSet<u64>>());
    let c = &f.counters;
    assert_eq!(
        c.requests("busy-key", "v2.geosubmit", now).await.unwrap(),
        200
    );
    // HyperLogLog (Redis) is within a few percent at this size.
    let users = c.unique_users("submit", "busy-key", now).await.unwrap();
    assert!((190..=210).contains(&users), "about 200 users, got {users}");
}

async fn unique_users_counts_distinct_ips(f: &Fixture) {
    let c = &f.counters;
    let now = Utc::now();
    assert_eq!(c.unique_users("locate", "abc-1", now).await.unwrap(), 0);
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.1", "2001:db8::1"] {
        c.count_request("abc-1", "v1.geolocate", "locate", ip, now)
            .await
            .unwrap();
    }
    assert_eq!(c.unique_users("locate", "abc-1", now).await.unwrap(), 3);
    // Per type and per key.
    assert_eq!(c.unique_users("submit", "abc-1", now).await.unwrap(), 0);
    assert_eq!(c.unique_users("locate", "abc-2", now).await.unwrap(), 0);
    c.count_request("abc-1", "v2.geosubmit", "submit", "10.0.0.1", now)
        .await
        .unwrap();
    assert_eq!(c.unique_users("submit", "abc-1", now).await.unwrap(), 1);
    assert_eq!(c.unique_users("locate", "abc-1", now).await.unwrap(), 3);
    // Per day.
    let next_day = now + chrono::Duration::days(1);
    assert_eq!(
        c.unique_users("locate", "abc-1", next_day).await.unwrap(),
        0
    );
}

async fn preset_counter_then_count(f: &Fixture) {
    // Spec api case 34: the counter is preset to 10; the next request makes it 11.
    let c = &f.counters;
    let now = Utc::now();
    c.set_requests("k-34", "v1.geolocate", now, 10)
        .await
        .unwrap();
    assert_eq!(c.requests("k-34", "v1.geolocate", now).await.unwrap(), 10);
    assert_eq!(count(c, "k-34", "v1.geolocate", "10.0.0.1", now).await, 11);
    // Setting lower works too.
    c.set_requests("k-34", "v1.geolocate", now, 0)
        .await
        .unwrap();
    assert_eq!(count(c, "k-34", "v1.geolocate", "10.0.0.1", now).await, 1);
}

async fn redis_key_names_and_ttls(f: &Fixture) {
    let Some((mut conn, prefix)) = f.redis_conn() else {
        return;
    };
    let c = &f.counters;
    let now = day_one();
    assert_eq!(count(c, "abc-1", "v1.geolocate", "10.0.0.7", now).await, 1);
    c.count_request("abc-1", "v2.geosubmit", "submit", "10.0.0.8", now)
        .await
        .unwrap();

    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .unwrap();
    keys.sort();
    let expected: Vec<String> = [
        "apilimit:abc-1:v1.geolocate:20240112",
        "apilimit:abc-1:v2.geosubmit:20240112",
        "apiuser:locate:abc-1:2024-01-12",
        "apiuser:submit:abc-1:2024-01-12",
    ]
    .iter()
    .map(|k| format!("{prefix}{k}"))
    .collect();
    assert_eq!(keys, expected);

    let limit = format!("{prefix}apilimit:abc-1:v1.geolocate:20240112");
    let value: String = redis::cmd("GET").arg(&limit).query(&mut conn).unwrap();
    assert_eq!(value, "1");
    let ttl: i64 = redis::cmd("TTL").arg(&limit).query(&mut conn).unwrap();
    assert!(ttl > 0 && ttl <= 90_000, "apilimit TTL {ttl}");

    let users = format!("{prefix}apiuser:locate:abc-1:2024-01-12");
    let kind: String = redis::cmd("TYPE").arg(&users).query(&mut conn).unwrap();
    assert_eq!(kind, "string", "a HyperLogLog is a string");
    let count: i64 = redis::cmd("PFCOUNT").arg(&users).query(&mut conn).unwrap();
    assert_eq!(count, 1);
    let ttl: i64 = redis::cmd("TTL").arg(&users).query(&mut conn).unwrap();
    assert!(ttl > 7 * 86_400 && ttl <= 8 * 86_400, "apiuser TTL {ttl}");

    // set_requests keeps the counter's TTL.
    c.set_requests("abc-1", "v1.geolocate", now, 10)
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("TTL").arg(&limit).query(&mut conn).unwrap();
    assert!(ttl > 0 && ttl <= 90_000, "apilimit TTL after set {ttl}");
}

async fn embedded_counts_survive_reopen(f: &Fixture) {
    if !matches!(f.storage, Storage::Sqlite { .. }) {
        return;
    }
    let now = Utc::now();
    {
        let c = f.reopen().await;
        for expected in 1..=5 {
            assert_eq!(
                count(&c, "abc-1", "v1.geolocate", "10.0.0.1", now).await,
                expected
            );
        }
        c.flush().await.unwrap();
    }
    let reopened = f.reopen().await;
    assert_eq!(
        reopened
            .requests("abc-1", "v1.geolocate", now)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        count(&reopened, "abc-1", "v1.geolocate", "10.0.0.1", now).await,
        6
    );
    // Opening again on existing storage is harmless.
    reopened.flush().await.unwrap();
    let twice = f.reopen().await;
    assert_eq!(
        twice.requests("abc-1", "v1.geolocate", now).await.unwrap(),
        6
    );
}

async fn embedded_background_flush(f: &Fixture) {
    if !matches!(f.storage, Storage::Sqlite { .. }) {
        return;
    }
    let now = Utc::now();
    for expected in 1..=3 {
        assert_eq!(
            count(&f.counters, "abc-1", "v1.submit", "10.0.0.1", now).await,
            expected
        );
    }
    // No explicit flush: the background task writes within its interval.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let reopened = f.reopen().await;
    assert_eq!(
        reopened.requests("abc-1", "v1.submit", now).await.unwrap(),
        3
    );
}

async fn embedded_drops_days_before_yesterday(f: &Fixture) {
    if !matches!(f.storage, Storage::Sqlite { .. }) {
        return;
    }
    let today = day_one();
    let yesterday = today - chrono::Duration::days(1);
    let before = today - chrono::Duration::days(2);
    {
        let c = f.reopen().await;
        assert_eq!(
            count(&c, "abc-1", "v1.geolocate", "10.0.0.1", before).await,
            1
        );
        c.flush().await.unwrap();
    }
    {
        // Reopened while `before` is the latest stored day: it is kept.
        let c = f.reopen().await;
        assert_eq!(
            c.requests("abc-1", "v1.geolocate", before).await.unwrap(),
            1
        );
        assert_eq!(
            count(&c, "abc-1", "v1.geolocate", "10.0.0.1", yesterday).await,
            1
        );
        assert_eq!(
            count(&c, "abc-1", "v1.geolocate", "10.0.0.1", today).await,
            1
        );
        c.flush().await.unwrap();
        // Counting today dropped the day before yesterday on flush.
        assert_eq!(
            c.requests("abc-1", "v1.geolocate", before).await.unwrap(),
            0
        );
        assert_eq!(
            c.requests("abc-1", "v1.geolocate", yesterday)
                .await
                .unwrap(),
            1
        );
    }
    let c = f.reopen().await;
    assert_eq!(
        c.requests("abc-1", "v1.geolocate", before).await.unwrap(),
        0
    );
    assert_eq!(
        c.requests("abc-1", "v1.geolocate", yesterday)
            .await
            .unwrap(),
        1
    );
    assert_eq!(c.requests("abc-1", "v1.geolocate", today).await.unwrap(), 1);
    assert_eq!(
        count(&c, "abc-1", "v1.geolocate", "10.0.0.1", today).await,
        2
    );
}

async fn fallback_windows_count_per_name_and_window(f: &Fixture) {
    let c = &f.counters;
    // 60 s windows: 12:00:00 and 12:00:59 share one, 12:01:00 starts the next.
    let t0 = Utc.with_ymd_and_hms(2024, 1, 12, 12, 0, 0).unwrap();
    let t1 = Utc.with_ymd_and_hms(2024, 1, 12, 12, 0, 59).unwrap();
    let t2 = Utc.with_ymd_and_hms(2024, 1, 12, 12, 1, 0).unwrap();
    assert_eq!(c.count_fallback_call("fall", 60, t0).await.unwrap(), 1);
    assert_eq!(c.count_fallback_call("fall", 60, t1).await.unwrap(), 2);
    assert_eq!(c.count_fallback_call("other", 60, t1).await.unwrap(), 1);
    assert_eq!(c.count_fallback_call("fall", 60, t2).await.unwrap(), 1);
    assert_eq!(c.count_fallback_call("fall", 60, t0).await.unwrap(), 3);
}

async fn fallback_window_redis_key_and_ttl(f: &Fixture) {
    let Some((mut conn, prefix)) = f.redis_conn() else {
        return;
    };
    let now = Utc.with_ymd_and_hms(2024, 1, 12, 12, 0, 0).unwrap();
    let window = now.timestamp() / 60;
    f.counters
        .count_fallback_call("fall", 60, now)
        .await
        .unwrap();
    let key = format!("{prefix}fallback_ratelimit:fall:{window}");
    let value: String = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
    assert_eq!(value, "1");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut conn).unwrap();
    assert!(ttl > 240 && ttl <= 300, "5 × interval, got {ttl}");
    // A preset counter is incremented past the limit.
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(10)
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        f.counters
            .count_fallback_call("fall", 60, now)
            .await
            .unwrap(),
        11
    );
}

async fn cache_round_trip_with_binary_keys(f: &Fixture) {
    let c = &f.counters;
    let mut wifi = b"cache:fallback:ichnaea:v1:1:wifi:".to_vec();
    wifi.extend_from_slice(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xab]);
    let mut cell = b"cache:fallback:ichnaea:v1:1:cell:".to_vec();
    cell.extend_from_slice(&[0, 0, 0xea, 0, 1, 0, 2, 0, 0, 0, 0xff]);
    let missing = b"cache:fallback:ichnaea:v1:1:blue:\xff\x00".to_vec();
    assert_eq!(
        c.cache_get(&[wifi.clone(), cell.clone()]).await.unwrap(),
        vec![None, None]
    );
    assert!(c.cache_get(&[]).await.unwrap().is_empty());
    c.cache_set(
        &[
            (wifi.clone(), br#"{"lat":1.0}"#.to_vec()),
            (cell.clone(), br#""404""#.to_vec()),
        ],
        60,
    )
    .await
    .unwrap();
    assert_eq!(
        c.cache_get(&[wifi.clone(), missing, cell.clone()])
            .await
            .unwrap(),
        vec![
            Some(br#"{"lat":1.0}"#.to_vec()),
            None,
            Some(br#""404""#.to_vec())
        ]
    );
    if let Some((mut conn, prefix)) = f.redis_conn() {
        let mut key = prefix.as_bytes().to_vec();
        key.extend_from_slice(&cell);
        let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut conn).unwrap();
        assert!(ttl > 0 && ttl <= 60, "cache TTL {ttl}");
    }
    // Overwriting replaces the value.
    c.cache_set(&[(cell.clone(), b"x".to_vec())], 60)
        .await
        .unwrap();
    assert_eq!(
        c.cache_get(&[cell]).await.unwrap(),
        vec![Some(b"x".to_vec())]
    );
}

async fn locate_sample_rate_set_read_and_clear(f: &Fixture) {
    let c = &f.counters;
    assert_eq!(c.locate_sample_rate().await.unwrap(), None);
    c.set_locate_sample_rate(Some(0.0)).await.unwrap();
    assert_eq!(c.locate_sample_rate().await.unwrap(), Some(0.0));
    c.set_locate_sample_rate(Some(150.5)).await.unwrap();
    assert_eq!(c.locate_sample_rate().await.unwrap(), Some(150.5));
    if let Some((mut conn, prefix)) = f.redis_conn() {
        let key = format!("{prefix}global_locate_sample_rate");
        let () = redis::cmd("SET")
            .arg(&key)
            .arg("not a number")
            .query(&mut conn)
            .unwrap();
        assert_eq!(c.locate_sample_rate().await.unwrap(), None);
        let () = redis::cmd("SET")
            .arg(&key)
            .arg("12.5")
            .query(&mut conn)
            .unwrap();
        assert_eq!(c.locate_sample_rate().await.unwrap(), Some(12.5));
    }
    c.set_locate_sample_rate(None).await.unwrap();
    assert_eq!(c.locate_sample_rate().await.unwrap(), None);
}

async fn monitoring_lists_todays_usage(f: &Fixture) {
    let c = &f.counters;
    let now = day_one();
    let week_ago = now - chrono::Duration::days(6);
    let too_old = now - chrono::Duration::days(8);
    for (key, path, ip, at) in [
        ("alpha", "v1.geolocate", "10.0.0.1", now),
        ("alpha", "v1.geolocate", "10.0.0.2", now),
        ("alpha", "v2.geosubmit", "10.0.0.1", now),
        ("beta", "v1.geolocate", "10.0.0.9", now),
        ("alpha", "v1.geolocate", "10.0.0.3", week_ago),
        ("alpha", "v1.geolocate", "10.0.0.4", too_old),
    ] {
        c.count_request(key, path, "locate", ip, at).await.unwrap();
    }
    let requests = c.daily_requests(now).await.unwrap();
    assert_eq!(
        requests,
        vec![
            ("alpha".to_string(), "v1.geolocate".to_string(), 2),
            ("alpha".to_string(), "v2.geosubmit".to_string(), 1),
            ("beta".to_string(), "v1.geolocate".to_string(), 1),
        ]
    );
    let usage = c.key_usage(now).await.unwrap();
    let got: Vec<(String, String, u64, u64)> = usage
        .into_iter()
        .map(|u| (u.api_type, u.api_key, u.users_today, u.users_week))
        .collect();
    // alpha: 10.0.0.1, .2 today; .3 six days ago; .4 eight days ago is outside.
    assert_eq!(
        got,
        vec![
            ("locate".to_string(), "alpha".to_string(), 2, 3),
            ("locate".to_string(), "beta".to_string(), 1, 1),
        ]
    );
}
