//! The read replica (`database_readonly_url`) against a real streaming
//! replica of the PostgreSQL test server (`ICHNAEA_TEST_POSTGRES_REPLICA_URL`,
//! `.ci/pg-replica`): locate reads from it while it is fresh, from the primary
//! when it lags or is down, and the heartbeat tells which, staying 200.
//!
//! The proof that reads really go to the replica: with replay paused, the
//! primary and the replica hold different positions for the same networks,
//! and the answer shows which one was read.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ichnaea_core::ApiKey;
use ichnaea_core::Mac;
use ichnaea_core::geo::distance;
use ichnaea_core::station::{StationFields, WifiStation};
use ichnaea_store::{ReplicaOptions, Store, StoreError, StoreOptions};
use ichnaea_testkit::backends::on_cluster_with;
use ichnaea_testkit::pg_replica::{ReplayPause, exclusive, wait_replayed};
use ichnaea_testkit::{TempDir, servers};
use ichnaea_web::router;
use serde_json::{Value, json};

use crate::submit::add_key;
use crate::{Fx, call, send_app, state};

/// The networks' first position, and where they move to (about 11 km north).
const P1: (f64, f64) = (48.85, 2.35);
const P2: (f64, f64) = (48.95, 2.35);

fn replica_options(url: &str, max_lag: Duration) -> ReplicaOptions {
    ReplicaOptions {
        max_lag,
        check_interval: Duration::from_millis(100),
        max_connections: 2,
        ..ReplicaOptions::new(url)
    }
}

fn station((lat, lon): (f64, f64)) -> StationFields {
    let now = chrono::Utc::now().naive_utc();
    StationFields {
        lat: Some(lat),
        lon: Some(lon),
        radius: Some(5),
        samples: Some(1),
        created: Some(now),
        modified: Some(now),
        last_seen: Some(now.date()),
        region: Some("FR".into()),
        ..Default::default()
    }
}

fn mac(i: u32) -> Mac {
    Mac::from_hex(&format!("a8206a{i:06x}")).unwrap()
}

/// Writes networks 1 and 2 at `at` through the store (the primary).
async fn put_pair(fx: &Fx, (lat, lon): (f64, f64)) {
    let rows = vec![
        WifiStation {
            mac: mac(1),
            fields: station((lat, lon)),
        },
        WifiStation {
            mac: mac(2),
            fields: station((lat + 0.0001, lon)),
        },
    ];
    fx.store.upsert_wifi_stations(&rows).await.unwrap();
}

/// Locates networks 1 and 2; the distance of the answer from `want`.
async fn locate_pair(app: &axum::Router, want: (f64, f64)) -> f64 {
    let body = json!({"considerIp": false, "wifiAccessPoints": [
        {"macAddress": mac(1).to_string()}, {"macAddress": mac(2).to_string()}]});
    let r = send_app(
        app,
        Method::POST,
        "/v1/geolocate?key=test",
        &[("content-type", "application/json")],
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    distance(
        v["location"]["lat"].as_f64().unwrap(),
        v["location"]["lng"].as_f64().unwrap(),
        want.0,
        want.1,
    )
}

/// The heartbeat (asserted 200) and its `database_readonly` member.
async fn heartbeat(app: &axum::Router) -> Value {
    let r = call(app, Method::GET, "/__heartbeat__", None, None).await;
    let body = r.json();
    assert_eq!(r.status, StatusCode::OK, "{body}");
    assert_eq!(body["database"]["up"], true, "{body}");
    body["database_readonly"].clone()
}

/// Polls the heartbeat until the replica is in `status`; its member then.
async fn wait_status(app: &axum::Router, status: &str) -> Value {
    let start = Instant::now();
    loop {
        let member = heartbeat(app).await;
        if member["status"] == status {
            return member;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "replica not {status} after 20 s: {member}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn reads(member: &Value, from: &str) -> u64 {
    member["reads"][from].as_u64().unwrap()
}

/// (a) A current replica serves locate: a station written through the
/// primary is found once replayed, and with replay paused the answer is the
/// replica's old position, not the primary's new one.
#[tokio::test]
async fn locate_reads_from_a_current_replica() {
    let (Some(primary), Some(replica)) = (servers::postgres_url(), servers::postgres_replica_url())
    else {
        return;
    };
    let _one_at_a_time = exclusive().await;
    // A bound no pause in this test reaches: the replica stays in use.
    let options = replica_options(&replica, Duration::from_secs(3600));
    on_cluster_with(Some(options), async |fx: Fx| {
        add_key(&fx, ApiKey::new("test")).await;
        let app = router(state(&fx, false));
        put_pair(&fx, P1).await;
        wait_replayed(&primary, &replica, Duration::from_secs(30)).await;
        let before = wait_status(&app, "ok").await;
        assert!(before["lag_ms"].as_u64().is_some(), "{before}");
        assert!(locate_pair(&app, P1).await < 100.0);
        let after = heartbeat(&app).await;
        assert!(
            reads(&after, "replica") > reads(&before, "replica"),
            "locate did not read from the replica: {after}"
        );
        // /v1/country and the statistics page read there too.
        let body = json!({"considerIp": false, "wifiAccessPoints": [
            {"macAddress": mac(1).to_string()}, {"macAddress": mac(2).to_string()}]});
        let r = send_app(
            &app,
            Method::POST,
            "/v1/country?key=test",
            &[("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(r.json()["country_code"], "FR", "{:?}", r.json());
        let r = call(&app, Method::GET, "/stats", None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        let later = heartbeat(&app).await;
        assert!(
            reads(&later, "replica") >= reads(&after, "replica") + 2,
            "country and /stats did not read from the replica: {later}"
        );
        assert_eq!(
            reads(&later, "primary"),
            reads(&after, "primary"),
            "{later}"
        );

        let pause = ReplayPause::new(&replica).await;
        put_pair(&fx, P2).await;
        let on_primary = fx.store.wifi_stations(&[mac(1)]).await.unwrap();
        assert_eq!(
            on_primary[0].fields.lat,
            Some(P2.0),
            "the primary has moved"
        );
        // The replica has not: the answer comes from it.
        let d = locate_pair(&app, P1).await;
        assert!(d < 100.0, "answered {d} m from the replica's position");
        assert_eq!(heartbeat(&app).await["status"], "ok");
        drop(pause);

        wait_replayed(&primary, &replica, Duration::from_secs(30)).await;
        assert!(locate_pair(&app, P2).await < 100.0);
    })
    .await;
}

/// (c) A replica lagging past the bound (replay paused while the primary
/// writes) is reported `lagging`, locate answers from the primary with the
/// fresh data, and the heartbeat stays 200; once replay resumes it is used
/// again.
#[tokio::test]
async fn a_lagging_replica_sends_reads_to_the_primary() {
    let (Some(primary), Some(replica)) = (servers::postgres_url(), servers::postgres_replica_url())
    else {
        return;
    };
    let _one_at_a_time = exclusive().await;
    let options = replica_options(&replica, Duration::from_millis(1000));
    on_cluster_with(Some(options), async |fx: Fx| {
        add_key(&fx, ApiKey::new("test")).await;
        let app = router(state(&fx, false));
        put_pair(&fx, P1).await;
        wait_replayed(&primary, &replica, Duration::from_secs(30)).await;
        wait_status(&app, "ok").await;
        assert!(locate_pair(&app, P1).await < 100.0);

        let pause = ReplayPause::new(&replica).await;
        put_pair(&fx, P2).await;
        let lagging = wait_status(&app, "lagging").await;
        let lag = lagging["lag_ms"].as_u64();
        assert!(lag.is_none_or(|l| l > 1000), "{lagging}");
        let primary_reads = reads(&lagging, "primary");
        let d = locate_pair(&app, P2).await;
        assert!(d < 100.0, "answered {d} m from the primary's new position");
        let member = heartbeat(&app).await;
        assert!(reads(&member, "primary") > primary_reads, "{member}");
        drop(pause);

        let back = wait_status(&app, "ok").await;
        assert!(locate_pair(&app, P2).await < 100.0);
        assert!(reads(&heartbeat(&app).await, "replica") > reads(&back, "replica"));
    })
    .await;
}

/// (b) An unreachable replica (a closed port): locate answers from the
/// primary, and the heartbeat is 200 with the replica `down`. Needs only the
/// primary.
#[tokio::test]
async fn an_unreachable_replica_sends_reads_to_the_primary() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{closed}/postgres");
    let options = replica_options(&url, Duration::from_secs(5));
    on_cluster_with(Some(options), async |fx: Fx| {
        add_key(&fx, ApiKey::new("test")).await;
        let app = router(state(&fx, false));
        put_pair(&fx, P1).await;
        let member = wait_status(&app, "down").await;
        assert_eq!(member["up"], false, "{member}");
        assert!(
            member["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{member}"
        );
        assert!(locate_pair(&app, P1).await < 100.0);
        let member = heartbeat(&app).await;
        assert_eq!(member["status"], "down", "{member}");
        assert_eq!(reads(&member, "replica"), 0, "{member}");
        assert!(reads(&member, "primary") >= 1, "{member}");
    })
    .await;
}

/// Embedded mode has no replicas: a SQLite store with one is refused.
#[tokio::test]
async fn sqlite_refuses_a_replica() {
    let dir = TempDir::new("replica");
    let options = StoreOptions {
        replica: Some(ReplicaOptions::new("postgres://127.0.0.1:1/none")),
        ..StoreOptions::default()
    };
    let url = format!("sqlite://{}/t.db", dir.as_str());
    match Store::connect(&url, &options).await {
        Err(StoreError::ReplicaNeedsPostgres) => {}
        other => panic!("expected ReplicaNeedsPostgres, got {other:?}"),
    }
}
