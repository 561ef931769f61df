//! Router tests through the real axum router (`oneshot`), against SQLite with the
//! embedded queue always, and against PostgreSQL + Redis when
//! `ICHNAEA_TEST_POSTGRES_URL` and `ICHNAEA_TEST_REDIS_URL` are set.

// Test code: a failed unwrap is a failed test with its message, and test
// helpers are not public API.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use ichnaea_web::{AppState, GeoIp, router};

mod confidence;
mod fuzz;
mod locate;
mod mmdb;
mod replica;
mod server;
mod site;
mod site_api;
mod site_downloads;
mod site_stats;
mod site_tiles;
mod submit;
use serde_json::{Value, json};
use tower::ServiceExt;

pub(crate) const TOKEN: &str = "s3cret-admin-token";

/// The backends one test runs against.
pub use ichnaea_testkit::backends::Backends as Fx;

/// The GeoIP test database of locate §4.3 (built in memory, once).
fn test_geoip() -> Arc<GeoIp> {
    static DB: std::sync::OnceLock<Arc<GeoIp>> = std::sync::OnceLock::new();
    DB.get_or_init(|| Arc::new(GeoIp::from_bytes(mmdb::test_city_db()).expect("test mmdb")))
        .clone()
}

/// The router's state over `fx`, with the GeoIP test database loaded.
fn state(fx: &Fx, admin: bool) -> AppState {
    AppState {
        admin_token: admin.then(|| Arc::from(TOKEN)),
        geoip: Some(test_geoip()),
        geoip_configured: true,
        ..ichnaea_testkit::web::app_state(fx)
    }
}

/// One test per backend (SQLite file + embedded queue; PostgreSQL schema + Redis
/// prefix) for each `async fn name(fx: Fx)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        ichnaea_testkit::backend_tests!(
            embedded => ichnaea_testkit::backends::on_embedded,
            cluster => ichnaea_testkit::backends::on_cluster;
            $($name),*
        );
    };
}

backend_tests!(
    lbheartbeat_answers_get_head_post_only,
    heartbeat_reports_every_backend,
    heartbeat_is_503_naming_the_database_when_it_is_down,
    heartbeat_shows_remote_export_targets,
    static_service_documents,
    unknown_paths_are_plain_404,
    metrics_count_requests,
    admin_api_is_absent_without_a_token,
    admin_api_requires_the_token,
    admin_api_manages_api_keys,
    admin_api_manages_export_configs,
);

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    send_app(app, method, uri, &headers, body).await
}

/// Sends one request through `app` (the real router, no socket).
pub(crate) async fn send_app(
    app: &axum::Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send_request(app, req.body(Body::from(body)).unwrap()).await
}

/// Sends a built request through `app` and reads the whole answer.
pub(crate) async fn send_request(app: &axum::Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

fn assert_security_headers(r: &Reply) {
    assert_eq!(
        r.header(header::STRICT_TRANSPORT_SECURITY),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_eq!(r.header(header::X_CONTENT_TYPE_OPTIONS), Some("nosniff"));
    assert_eq!(
        r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        None,
        "service endpoints send no CORS"
    );
}

async fn lbheartbeat_answers_get_head_post_only(fx: Fx) {
    let app = router(state(&fx, false));
    for method in [Method::GET, Method::POST] {
        let r = call(&app, method, "/__lbheartbeat__", None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json(), json!({"status": "OK"}));
        assert_eq!(r.header(header::CONTENT_TYPE), Some("application/json"));
        assert_security_headers(&r);
    }
    let head = call(&app, Method::HEAD, "/__lbheartbeat__", None, None).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(head.header(header::CONTENT_TYPE), Some("application/json"));
    for method in [Method::OPTIONS, Method::PUT, Method::DELETE, Method::PATCH] {
        let r = call(&app, method.clone(), "/__lbheartbeat__", None, None).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
}

async fn heartbeat_reports_every_backend(fx: Fx) {
    let queue_member = if fx.queue.backend() == "redis" {
        "redis"
    } else {
        "queue"
    };
    let app = router(state(&fx, false));
    let r = call(&app, Method::GET, "/__heartbeat__", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    let mut members: Vec<&String> = body.as_object().unwrap().keys().collect();
    members.sort();
    let mut want = vec!["database", "geoip", queue_member];
    want.sort();
    assert_eq!(members, want, "member order is irrelevant (api §4.3)");
    assert_eq!(body["database"]["up"], json!(true));
    let version = fx.store.schema_version().await.unwrap();
    assert!(version >= 4, "{version}");
    assert_eq!(
        body["database"]["alembic_version"],
        json!(version.to_string())
    );
    assert!(body["database"]["time"].as_u64().is_some());
    assert_eq!(body[queue_member]["up"], json!(true));
    assert!(body[queue_member]["time"].as_u64().is_some());
    assert_eq!(body["geoip"]["up"], json!(true));
    assert_eq!(body["geoip"]["configured"], json!(true));
    assert_eq!(body["geoip"]["version"], json!("2022-01-06T16:20:21Z"));
    assert!(body["geoip"]["age_in_days"].as_i64().unwrap() >= 1_000);
    assert!(body["geoip"]["time"].as_u64().is_some());
    assert_security_headers(&r);

    // Without a GeoIP database: up false but not an outage; configured but
    // unloadable: 503.
    let mut none = state(&fx, false);
    none.geoip = None;
    none.geoip_configured = false;
    let r = call(
        &router(none.clone()),
        Method::GET,
        "/__heartbeat__",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["geoip"]["up"], json!(false));
    assert_eq!(r.json()["geoip"]["age_in_days"], json!(-1));
    none.geoip_configured = true;
    let r = call(&router(none), Method::GET, "/__heartbeat__", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["geoip"]["up"], json!(false));
}

async fn heartbeat_is_503_naming_the_database_when_it_is_down(fx: Fx) {
    let app = router(state(&fx, false));
    fx.store.close().await;
    let r = call(&app, Method::GET, "/__heartbeat__", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = r.json();
    assert_eq!(
        body["database"],
        json!({"up": false, "time": 0, "backend": body["database"]["backend"], "alembic_version": "unknown"})
    );
    assert_eq!(r.header(header::CONTENT_TYPE), Some("application/json"));
    // The load-balancer heartbeat does not look at backends.
    let lb = call(&app, Method::GET, "/__lbheartbeat__", None, None).await;
    assert_eq!(lb.status, StatusCode::OK);
}

/// A remote export target's state, as the worker recorded it in the
/// counters' cache, is in the heartbeat; a failing target is visible but not
/// an outage of this service (200).
async fn heartbeat_shows_remote_export_targets(fx: Fx) {
    use ichnaea_core::export::{ExportConfig, ExportHealth, ExportSchema, export_health_key};
    for (name, schema) in [
        ("broken", ExportSchema::Geosubmit),
        ("backup", ExportSchema::S3),
        ("local", ExportSchema::Dummy),
    ] {
        let mut config = ExportConfig::new(name, schema);
        config.url = Some(if name == "backup" {
            "file:///tmp/x".into()
        } else {
            "http://127.0.0.1:9/v2/geosubmit".into()
        });
        fx.store.insert_export_config(&config).await.unwrap();
    }
    let health = ExportHealth {
        up: false,
        consecutive_failures: 4,
        retry_in_seconds: 8,
        last_error: Some("export broken failed: export target answered HTTP status 500".into()),
        checked_at: "2026-12-04T20:00:00Z".into(),
    };
    fx.counters
        .cache_set(
            &[(
                export_health_key("broken"),
                serde_json::to_vec(&health).unwrap(),
            )],
            60,
        )
        .await
        .unwrap();
    let r = call(
        &router(state(&fx, false)),
        Method::GET,
        "/__heartbeat__",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["exports"],
        json!({
            "broken": {"up": false, "consecutive_failures": 4, "retry_in_seconds": 8,
                       "last_error": "export broken failed: export target answered HTTP status 500",
                       "checked_at": "2026-12-04T20:00:00Z"},
            "backup": {"up": null},
        })
    );
}

async fn static_service_documents(fx: Fx) {
    let app = router(state(&fx, false));
    let v = call(&app, Method::GET, "/__version__", None, None).await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.json(), json!({"version": "9.9.9", "commit": "abc"}));
    let c = call(&app, Method::POST, "/contribute.json", None, None).await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.json()["repository"]["license"], json!("Apache 2.0"));
    assert_eq!(c.json()["name"], json!("ichnaea"));
    // Without a configured source URL: no empty URLs.
    assert!(c.json()["repository"].get("url").is_none(), "{}", c.json());
    assert!(c.json().get("bugs").is_none() && c.json().get("urls").is_none());
    // With one: the repository, bug list and URLs name it.
    let mut st = state(&fx, false);
    let site = ichnaea_web::site::SiteConfig {
        source_url: Some("https://code.example/ichnaea".into()),
        ..Default::default()
    };
    st.site = Arc::new(ichnaea_web::site::Site::new(site));
    let c = call(&router(st), Method::GET, "/contribute.json", None, None).await;
    assert_eq!(
        c.json()["repository"]["url"],
        json!("https://code.example/ichnaea")
    );
    assert_eq!(
        c.json()["bugs"]["list"],
        json!("https://code.example/ichnaea")
    );
    // The build's own version body leaves out what it does not know.
    let built = ichnaea_web::build_version(None);
    assert_eq!(built["version"], json!(env!("CARGO_PKG_VERSION")));
    for member in ["source", "commit", "build"] {
        if let Some(value) = built.get(member) {
            assert_ne!(value, &json!(""), "{member}");
        }
    }
    assert!(built.get("source").is_none());
    assert_eq!(
        ichnaea_web::build_version(Some("https://code.example/ichnaea"))["source"],
        json!("https://code.example/ichnaea")
    );
    let r = call(&app, Method::GET, "/robots.txt", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header(header::CONTENT_TYPE),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        String::from_utf8(r.body.clone()).unwrap(),
        "User-agent: *\nDisallow: /downloads\nDisallow: /static/\nDisallow: /v1/\nDisallow: /v2/\n\
         Disallow: /__heartbeat__\nDisallow: /__lbheartbeat__\nDisallow: /__version__\n"
    );
}

async fn unknown_paths_are_plain_404(fx: Fx) {
    let app = router(state(&fx, false));
    for path in [
        "/nope",
        "/v1/search",
        "/v1/transfer",
        "/__lbheartbeat__/",
        "/v1/geolocate/",
    ] {
        let r = call(&app, Method::GET, path, None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.body, b"<h1>404 Not Found</h1>", "{path}");
        assert_eq!(
            r.header(header::CONTENT_TYPE),
            Some("text/html; charset=utf-8")
        );
        assert_security_headers(&r);
    }
}

async fn metrics_count_requests(fx: Fx) {
    // Installs the process's recorder, as `serve` does before the roles start.
    let handle = ichnaea_web::metrics::prometheus_handle();
    let app = router(state(&fx, false));
    call(&app, Method::POST, "/__version__", None, None).await;
    // Invented methods share one label value, whatever their number.
    for i in 0..20 {
        let method = Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        let r = call(&app, method, "/v1/geolocate", None, None).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    }
    // A known key is counted under its digest, never its text.
    fx.store
        .insert_api_key(&ichnaea_core::ApiKey::new("metrics-key"))
        .await
        .unwrap();
    let r = call(
        &app,
        Method::POST,
        "/v1/geolocate?key=metrics-key",
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The public port has no /metrics; the metrics listener's router has.
    let public = call(&app, Method::GET, "/metrics", None, None).await;
    assert_eq!(public.status, StatusCode::NOT_FOUND);
    let metrics = ichnaea_web::metrics::router(handle);
    let r = call(&metrics, Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8(r.body).unwrap();
    assert!(
        text.contains(r#"ichnaea_request_total{path="__version__",method="post",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"ichnaea_request_total{path="v1.geolocate",method="other",status="405"}"#),
        "{text}"
    );
    assert!(!text.contains("brew"), "{text}");
    let label = ichnaea_core::apikey::metric_label("metrics-key");
    assert!(
        text.contains(&format!(
            r#"ichnaea_locate_request_total{{path="v1.geolocate",key="{label}"}}"#
        )),
        "{text}"
    );
    assert!(!text.contains("metrics-key"), "{text}");
    // Prometheus conventions: HELP lines, the prefix, units in seconds.
    assert!(
        text.contains("# HELP ichnaea_request_total HTTP requests by route, method and status."),
        "{text}"
    );
    assert!(
        text.contains("# TYPE ichnaea_request_duration_seconds summary"),
        "{text}"
    );
    let durations: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("ichnaea_request_duration_seconds_sum"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(!durations.is_empty(), "{text}");
    // Seconds, not milliseconds: a router call in a test takes well under 10 s.
    assert!(durations.iter().all(|d| *d < 10.0), "{durations:?}");
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("ichnaea_"), "{line}");
    }
}

async fn admin_api_is_absent_without_a_token(fx: Fx) {
    let app = router(state(&fx, false));
    let r = call(&app, Method::GET, "/admin/api-keys", Some(TOKEN), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn admin_api_requires_the_token(fx: Fx) {
    let app = router(state(&fx, true));
    for token in [
        None,
        Some("wrong"),
        Some(""),
        Some("s3cret-admin-token-and-more"),
    ] {
        let r = call(&app, Method::GET, "/admin/api-keys", token, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(r.json()["error"]["code"], json!(401));
        assert_eq!(r.header(header::WWW_AUTHENTICATE), Some("Bearer"));
    }
    // The scheme is case-insensitive; the token is not.
    for value in [
        format!("bearer {TOKEN}"),
        format!("BEARER  {TOKEN}"),
        format!("Bearer {TOKEN}"),
    ] {
        let r = send_app(
            &app,
            Method::GET,
            "/admin/api-keys",
            &[("authorization", value.as_str())],
            Vec::new(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{value}");
    }
    let upper = format!("Bearer {}", TOKEN.to_uppercase());
    let r = send_app(
        &app,
        Method::GET,
        "/admin/api-keys",
        &[("authorization", upper.as_str())],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = call(
        &app,
        Method::POST,
        "/admin/api-keys",
        None,
        Some(json!({"valid_key": "sneaky"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let ok = call(&app, Method::GET, "/admin/api-keys", Some(TOKEN), None).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json(), json!([]));
}

async fn admin_api_manages_api_keys(fx: Fx) {
    let app = router(state(&fx, true));
    let t = Some(TOKEN);
    let created = call(
        &app,
        Method::POST,
        "/admin/api-keys",
        t,
        Some(json!({"valid_key": "test", "maxreq": 5})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let want = json!({
        "valid_key": "test", "maxreq": 5, "allow_locate": true, "allow_region": true,
        "allow_fallback": false, "fallback_name": null, "fallback_schema": null,
        "fallback_url": null, "fallback_ratelimit": null, "fallback_ratelimit_interval": null,
        "fallback_cache_expire": null, "store_sample_locate": 100, "store_sample_submit": 100
    });
    assert_eq!(created.json(), want);
    // The change is in the database at once.
    assert_eq!(
        fx.store.api_key("test").await.unwrap().unwrap().maxreq,
        Some(5)
    );

    let dup = call(
        &app,
        Method::POST,
        "/admin/api-keys",
        t,
        Some(json!({"valid_key": "TEST"})),
    )
    .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);

    for (body, field) in [
        (json!({"valid_key": "x_y"}), "valid_key"),
        (
            json!({"valid_key": "good", "store_sample_submit": 101}),
            "store_sample_submit",
        ),
        (
            json!({"valid_key": "good", "fallback_url": "ftp://x"}),
            "fallback_url",
        ),
        (json!({"maxreq": 1}), "valid_key"),
    ] {
        let r = call(&app, Method::POST, "/admin/api-keys", t, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.json()["error"]["field"], json!(field), "{body}");
    }
    let typo = call(
        &app,
        Method::POST,
        "/admin/api-keys",
        t,
        Some(json!({"valid_key": "good", "maxreqq": 1})),
    )
    .await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST);
    assert!(
        typo.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maxreqq")
    );
    assert_eq!(
        fx.store.api_key("good").await.unwrap(),
        None,
        "nothing written on refusal"
    );

    let patched = call(
        &app,
        Method::PATCH,
        "/admin/api-keys/test",
        t,
        Some(json!({"maxreq": null, "allow_locate": false})),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.json()["maxreq"], Value::Null);
    assert_eq!(patched.json()["allow_locate"], json!(false));
    assert_eq!(patched.json()["store_sample_submit"], json!(100));
    let bad = call(
        &app,
        Method::PATCH,
        "/admin/api-keys/test",
        t,
        Some(json!({"store_sample_locate": 200})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"]["field"], json!("store_sample_locate"));
    assert_eq!(
        fx.store
            .api_key("test")
            .await
            .unwrap()
            .unwrap()
            .store_sample_locate,
        Some(100)
    );

    let shown = call(&app, Method::GET, "/admin/api-keys/TeSt", t, None).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.json()["valid_key"], json!("test"));
    let listed = call(&app, Method::GET, "/admin/api-keys", t, None).await;
    assert_eq!(listed.json().as_array().unwrap().len(), 1);

    assert_eq!(
        call(&app, Method::DELETE, "/admin/api-keys/test", t, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&app, Method::DELETE, "/admin/api-keys/test", t, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&app, Method::GET, "/admin/api-keys/test", t, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(
            &app,
            Method::PATCH,
            "/admin/api-keys/test",
            t,
            Some(json!({}))
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

async fn admin_api_manages_export_configs(fx: Fx) {
    let app = router(state(&fx, true));
    let t = Some(TOKEN);
    let list = call(&app, Method::GET, "/admin/export-configs", t, None).await;
    assert_eq!(
        list.json(),
        json!([{"name": "internal", "batch": 100, "schema": "internal", "url": null, "skip_keys": null, "skip_sources": null}])
    );
    let body = json!({"name": "bk", "schema": "s3", "url": "file:///srv/exports/{source}", "batch": 10,
                      "skip_keys": ["a", "b"], "skip_sources": ["query"]});
    let created = call(
        &app,
        Method::POST,
        "/admin/export-configs",
        t,
        Some(body.clone()),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.json(), body);
    assert_eq!(
        call(&app, Method::POST, "/admin/export-configs", t, Some(body))
            .await
            .status,
        StatusCode::CONFLICT
    );

    for (body, field) in [
        (json!({"name": "g", "schema": "geosubmit"}), Some("url")),
        (json!({"name": "g", "schema": "ftp"}), Some("schema")),
        (json!({"name": "a:b", "schema": "dummy"}), Some("name")),
        (json!({"name": "g"}), Some("schema")),
        (
            json!({"name": "g", "schema": "dummy", "skip_sources": ["gps"]}),
            None,
        ),
    ] {
        let r = call(
            &app,
            Method::POST,
            "/admin/export-configs",
            t,
            Some(body.clone()),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        if let Some(field) = field {
            assert_eq!(r.json()["error"]["field"], json!(field), "{body}");
        }
    }
    assert_eq!(fx.store.export_config("g").await.unwrap(), None);

    // A second internal target would apply every report twice: 409 naming schema.
    let second = call(
        &app,
        Method::POST,
        "/admin/export-configs",
        t,
        Some(json!({"name": "internal2", "schema": "internal"})),
    )
    .await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(second.json()["error"]["field"], json!("schema"));
    let turned = call(
        &app,
        Method::PATCH,
        "/admin/export-configs/bk",
        t,
        Some(json!({"schema": "internal"})),
    )
    .await;
    assert_eq!(turned.status, StatusCode::CONFLICT);
    assert_eq!(fx.store.export_config("internal2").await.unwrap(), None);

    let patched = call(
        &app,
        Method::PATCH,
        "/admin/export-configs/bk",
        t,
        Some(json!({"skip_keys": null, "batch": 0})),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.json()["skip_keys"], Value::Null);
    assert_eq!(patched.json()["skip_sources"], json!(["query"]));
    let stored = fx.store.export_config("bk").await.unwrap().unwrap();
    assert_eq!(stored.batch, 0);
    assert_eq!(stored.skip_keys, None);

    // A target with a backlog is deleted only with purge=true, which drops it.
    fx.queue
        .push(
            "queue_export_bk:gnss:no_key",
            vec![b"a".to_vec(), b"b".to_vec()],
        )
        .await
        .unwrap();
    let kept = call(&app, Method::DELETE, "/admin/export-configs/bk", t, None).await;
    assert_eq!(kept.status, StatusCode::CONFLICT);
    assert_eq!(kept.json()["error"]["field"], json!("purge"));
    assert!(fx.store.export_config("bk").await.unwrap().is_some());
    let bad = call(
        &app,
        Method::DELETE,
        "/admin/export-configs/bk?purge=yes",
        t,
        None,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"]["field"], json!("purge"));
    let purged = call(
        &app,
        Method::DELETE,
        "/admin/export-configs/bk?purge=true",
        t,
        None,
    )
    .await;
    assert_eq!(purged.status, StatusCode::NO_CONTENT);
    assert_eq!(fx.store.export_config("bk").await.unwrap(), None);
    assert_eq!(
        fx.queue.len("queue_export_bk:gnss:no_key").await.unwrap(),
        0
    );

    assert_eq!(
        call(
            &app,
            Method::DELETE,
            "/admin/export-configs/internal",
            t,
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(fx.store.export_config("internal").await.unwrap(), None);
    assert_eq!(
        call(&app, Method::GET, "/admin/export-configs/internal", t, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
