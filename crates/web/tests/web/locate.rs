//! Locate API cases: api §14 (rows 1–40, 61–64 as they concern
//! `/v1/geolocate` and `/v1/country`), the worked examples of locate §8
//! through HTTP with stations written by the store, the external fallback against
//! a local provider, and the real clients of clients §7, on both backends.
//!
//! Sections (§) refer to docs/reference/locate.md.

use std::sync::Arc;

use axum::http::{Method, StatusCode, header};
use chrono::{Datelike, Duration, NaiveDateTime, Utc};
use ichnaea_core::geo::distance;
use ichnaea_core::station::{BlueStation, CellArea, CellStation, StationFields, WifiStation};
use ichnaea_core::{ApiKey, AreaKey, CellKey, Mac, Radio};
use ichnaea_testkit::{FakeHttp, PrivateRedis, gzip};
use ichnaea_web::router;
use serde_json::{Value, json};

use crate::submit::{add_key, assert_cors, error_reason, limited, queued, send};
use crate::{Fx, Reply, send_app, send_request, state};

crate::backend_tests!(
    locked_database_bounds_locate_reads,
    case_01_05_missing_malformed_and_unknown_keys,
    case_06_07_permissions_per_api,
    case_08_last_key_wins,
    case_09_10_19_ip_only_lookups,
    client_ip_is_told_only_by_trusted_proxies,
    case_11_15_consider_ip_and_fallbacks,
    case_16_22_type_errors,
    case_17_27_28_29_30_decoding,
    case_23_26_unknown_wifi_and_ipf,
    case_31_32_methods,
    case_33_36_37_38_daily_limits,
    case_34_35_preset_limit_precedes_parsing,
    case_39_40_country,
    case_63_query_reports,
    case_64_backends_down_locate_still_answers,
    t_n_normalisation,
    t_w_wifi_and_bluetooth,
    t_c_cells_and_areas,
    t_g_geoip_and_combination,
    t_r_region,
    country_reads_no_station_table_for_ip_and_mcc,
    t_f1_f2_provider_request_and_answer,
    t_f3_f8_cache,
    t_f4_errors_are_not_cached,
    t_f5_rate_limit,
    t_f6_f7_when_the_provider_is_asked,
    t_f9_f10_unwiredlabs_and_googlemaps,
    fallback_answers_while_the_database_is_down,
    client_firefox,
    client_geoclue,
    client_microg,
    client_neostumbler,
    client_country_requests,
    t_w7_minpack_fidelity,
    t_w8_high_scores_and_signals,
    t_w9_signals_weight_the_position,
    t_w11_permanently_blocked_station,
    t_w13_bluetooth_signals,
    t_w14_large_cluster,
    t_n11_out_of_range_cell_fields_are_nulled,
    t_g7_geoip_radius_rules,
    t_m2_mcc_regions_and_region_radii,
);

const LONDON: &str = "81.2.69.192";
const NOWHERE: &str = "127.0.0.1";
const P0: (f64, f64) = (51.5, -0.1);

fn london_body() -> Value {
    json!({"location": {"lat": 51.5142, "lng": -0.0931}, "accuracy": 40000.0})
}

fn not_found_body() -> Value {
    json!({"error": {"errors": [{"domain": "geolocation", "reason": "notFound", "message": "Not found"}],
                     "code": 404, "message": "Not found"}})
}

fn key_invalid_body() -> Value {
    json!({"error": {"errors": [{"domain": "usageLimits", "reason": "keyInvalid",
                                 "message": "Missing or invalid API key."}],
                     "code": 400, "message": "Missing or invalid API key."}})
}

fn limit_body() -> Value {
    json!({"error": {"errors": [{"domain": "usageLimits", "reason": "dailyLimitExceeded",
                                 "message": "You have exceeded your daily limit."}],
                     "code": 403, "message": "You have exceeded your daily limit."}})
}

/// The fixture keys of api §14.
async fn fixture_keys(fx: &Fx) {
    add_key(fx, ApiKey::new("test")).await;
    add_key(
        fx,
        ApiKey {
            allow_locate: Some(false),
            ..ApiKey::new("nolocate")
        },
    )
    .await;
    add_key(
        fx,
        ApiKey {
            allow_region: Some(false),
            ..ApiKey::new("noregion")
        },
    )
    .await;
    add_key(fx, limited("limited", 2)).await;
}

/// POST `body` (raw) to `uri` from `ip` (`X-Forwarded-For`, when given).
async fn locate_raw(app: &axum::Router, uri: &str, ip: Option<&str>, body: Vec<u8>) -> Reply {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(ip) = ip {
        headers.push(("x-forwarded-for", ip));
    }
    send_app(app, Method::POST, uri, &headers, body).await
}

/// POST the JSON `body` to `uri` from `ip`.
async fn locate(app: &axum::Router, uri: &str, ip: Option<&str>, body: Value) -> Reply {
    locate_raw(app, uri, ip, body.to_string().into_bytes()).await
}

fn app(fx: &Fx) -> axum::Router {
    router(state(fx, false))
}

fn assert_json_200(r: &Reply, want: &Value) {
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(&r.json(), want);
    assert_eq!(r.header(header::CONTENT_TYPE), Some("application/json"));
    assert_cors(r);
}

fn assert_not_found(r: &Reply) {
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json(), not_found_body());
    assert_cors(r);
}

fn assert_key_invalid(r: &Reply) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json(), key_invalid_body());
    assert_cors(r);
}

/// A 200 position within 1 m of (lat, lon) and 1 m of `accuracy`, with the
/// given `fallback` member.
fn assert_position(r: &Reply, (lat, lon): (f64, f64), accuracy: f64, fallback: Option<&str>) {
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    let body = r.json();
    let got_lat = body["location"]["lat"].as_f64().unwrap();
    let got_lon = body["location"]["lng"].as_f64().unwrap();
    let d = distance(got_lat, got_lon, lat, lon);
    assert!(d <= 1.0, "{body} is {d} m from ({lat}, {lon})");
    let got_acc = body["accuracy"].as_f64().unwrap();
    assert!(
        (got_acc - accuracy).abs() <= 1.0,
        "{body}: accuracy {got_acc} vs {accuracy}"
    );
    assert_eq!(
        body.get("fallback").and_then(Value::as_str),
        fallback,
        "{body}"
    );
    let members: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert!(members.len() <= 3, "{body}");
}

/// A 200 position within `max` metres of (lat, lon), untagged.
fn assert_near(r: &Reply, (lat, lon): (f64, f64), max: f64) {
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    let body = r.json();
    let d = distance(
        body["location"]["lat"].as_f64().unwrap(),
        body["location"]["lng"].as_f64().unwrap(),
        lat,
        lon,
    );
    assert!(d <= max, "{body} is {d} m from ({lat}, {lon})");
    assert!(body.get("fallback").is_none(), "{body}");
}

fn assert_country(r: &Reply, code: &str, name: &str, fallback: Option<&str>) {
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    let mut want = json!({"country_code": code, "country_name": name});
    if let Some(f) = fallback {
        want["fallback"] = json!(f);
    }
    assert_eq!(r.json(), want);
    assert_cors(r);
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

/// A fresh station (locate §8): created = modified = now, last seen today,
/// 1 sample, radius 5 (score 0.05).
fn fresh((lat, lon): (f64, f64)) -> StationFields {
    StationFields {
        lat: Some(lat),
        lon: Some(lon),
        radius: Some(5),
        samples: Some(1),
        created: Some(now()),
        modified: Some(now()),
        last_seen: Some(now().date()),
        ..Default::default()
    }
}

/// A trusted station: 1 000 samples, created 90 days ago (score ≈ 10).
fn trusted((lat, lon): (f64, f64), region: &str) -> StationFields {
    StationFields {
        samples: Some(1000),
        radius: Some(10),
        created: Some(now() - Duration::days(90)),
        region: Some(region.into()),
        ..fresh((lat, lon))
    }
}

/// MAC number `i` as 12 hex digits.
fn mac_hex(i: usize) -> String {
    format!("a82066{i:06x}")
}

fn mac(i: usize) -> Mac {
    Mac::from_hex(&mac_hex(i)).unwrap()
}

/// `mac_hex(i)` in colon form, upper case (clients send it that way).
fn mac_colons(i: usize) -> String {
    let h = mac_hex(i).to_uppercase();
    (0..6)
        .map(|k| &h[2 * k..2 * k + 2])
        .collect::<Vec<_>>()
        .join(":")
}

async fn put_wifi(fx: &Fx, rows: Vec<(usize, StationFields)>) {
    let rows: Vec<WifiStation> = rows
        .into_iter()
        .map(|(i, fields)| WifiStation {
            mac: mac(i),
            fields,
        })
        .collect();
    fx.store.upsert_wifi_stations(&rows).await.unwrap();
}

async fn put_blue(fx: &Fx, rows: Vec<(usize, StationFields)>) {
    let rows: Vec<BlueStation> = rows
        .into_iter()
        .map(|(i, fields)| BlueStation {
            mac: mac(i),
            fields,
        })
        .collect();
    fx.store.upsert_blue_stations(&rows).await.unwrap();
}

fn cell_key(radio: Radio, mcc: u16, lac: u32, cid: u64) -> CellKey {
    CellKey {
        radio,
        mcc,
        mnc: 30,
        lac,
        cid,
    }
}

async fn put_cells(fx: &Fx, rows: Vec<(CellKey, StationFields)>) {
    let rows: Vec<CellStation> = rows
        .into_iter()
        .map(|(key, fields)| CellStation {
            key,
            psc: None,
            fields,
        })
        .collect();
    fx.store.upsert_cell_stations(&rows).await.unwrap();
}

async fn put_area(fx: &Fx, key: AreaKey, (lat, lon): (f64, f64), radius: i64, region: &str) {
    let area = CellArea {
        key,
        lat: Some(lat),
        lon: Some(lon),
        radius: Some(radius),
        region: Some(region.into()),
        avg_cell_radius: Some(1000),
        num_cells: Some(10),
        last_seen: Some(now().date()),
        created: Some(now()),
        modified: Some(now()),
    };
    fx.store.upsert_cell_areas(&[area]).await.unwrap();
}

fn wifi_body(ids: &[usize]) -> Value {
    json!({"wifiAccessPoints": ids.iter().map(|i| json!({"macAddress": mac_hex(*i)})).collect::<Vec<_>>()})
}

fn cell_json(radio: &str, mcc: u16, lac: u32, cid: u64) -> Value {
    json!({"radioType": radio, "mobileCountryCode": mcc, "mobileNetworkCode": 30,
           "locationAreaCode": lac, "cellId": cid})
}

/// Redis connection and prefix of a cluster fixture.
fn redis_conn(fx: &Fx) -> Option<(redis::Connection, String)> {
    let (url, prefix) = fx.redis.as_ref()?;
    let conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    Some((conn, prefix.clone()))
}

fn redis_keys(conn: &mut redis::Connection, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS").arg(pattern).query(conn).unwrap()
}

// ---- api §14 ----------------------------------------------------------------

async fn case_01_05_missing_malformed_and_unknown_keys(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    for uri in [
        "/v1/geolocate",
        "/v1/geolocate?key=",
        "/v1/geolocate?key=invalid_key",
        "/v1/geolocate?key=abc",
        "/v1/geolocate?key=abcdefg",
        "/v1/country",
        "/v1/country?key=abcdefg",
    ] {
        let r = locate(&app, uri, Some(LONDON), json!({})).await;
        assert_key_invalid(&r);
    }
    // Row 5: the key check precedes parsing.
    let r = locate_raw(&app, "/v1/geolocate", Some(LONDON), b"not json".to_vec()).await;
    assert_key_invalid(&r);
    let r = locate_raw(
        &app,
        "/v1/geolocate?key=abcdefg",
        None,
        b"not json".to_vec(),
    )
    .await;
    assert_key_invalid(&r);
    // Row 3: nothing counted for malformed or unknown keys.
    let today = Utc::now();
    for k in ["abcdefg", "invalid_key", "abc"] {
        assert_eq!(
            fx.counters
                .requests(k, "v1.geolocate", today)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            fx.counters.unique_users("locate", k, today).await.unwrap(),
            0
        );
    }
    if let Some((mut conn, prefix)) = redis_conn(&fx) {
        assert!(redis_keys(&mut conn, &format!("{prefix}apiuser:*")).is_empty());
        assert!(redis_keys(&mut conn, &format!("{prefix}apilimit:*")).is_empty());
    }
}

async fn case_06_07_permissions_per_api(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    assert_key_invalid(&locate(&app, "/v1/geolocate?key=nolocate", Some(LONDON), json!({})).await);
    assert_country(
        &locate(&app, "/v1/country?key=nolocate", Some(LONDON), json!({})).await,
        "GB",
        "United Kingdom",
        None,
    );
    assert_key_invalid(&locate(&app, "/v1/country?key=noregion", Some(LONDON), json!({})).await);
    assert_json_200(
        &locate(&app, "/v1/geolocate?key=noregion", Some(LONDON), json!({})).await,
        &london_body(),
    );
    // Keys match ignoring ASCII case.
    assert_json_200(
        &locate(&app, "/v1/geolocate?key=TEST", Some(LONDON), json!({})).await,
        &london_body(),
    );
}

async fn case_08_last_key_wins(fx: Fx) {
    fixture_keys(&fx).await;
    let r = locate(
        &app(&fx),
        "/v1/geolocate?key=abcdefg&key=test",
        Some(LONDON),
        json!({}),
    )
    .await;
    assert_json_200(&r, &london_body());
    let r = locate(
        &app(&fx),
        "/v1/geolocate?key=test&key=abcdefg",
        Some(LONDON),
        json!({}),
    )
    .await;
    assert_key_invalid(&r);
}

async fn case_09_10_19_ip_only_lookups(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    let uri = "/v1/geolocate?key=test";
    // Row 9.
    assert_json_200(
        &locate(&app, uri, Some(LONDON), json!({})).await,
        &london_body(),
    );
    // Row 10: GET without a body, POST with an empty body, HEAD.
    let get = send_app(
        &app,
        Method::GET,
        uri,
        &[("x-forwarded-for", LONDON)],
        Vec::new(),
    )
    .await;
    assert_json_200(&get, &london_body());
    assert_json_200(
        &locate_raw(&app, uri, Some(LONDON), Vec::new()).await,
        &london_body(),
    );
    let head = send_app(
        &app,
        Method::HEAD,
        uri,
        &[("x-forwarded-for", LONDON)],
        Vec::new(),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_cors(&head);
    // Row 19: unknown members are ignored.
    assert_json_200(
        &locate(&app, uri, Some(LONDON), json!({"invalid": 0})).await,
        &london_body(),
    );
    // Behind a trusted (here: loopback) proxy, the right-most untrusted hop of
    // X-Forwarded-For is the client; an unparsable one means no IP.
    assert_json_200(
        &locate(&app, uri, Some("81.2.69.192, 127.0.0.1"), json!({})).await,
        &london_body(),
    );
    // A forged left-most element does not choose the position.
    assert_json_200(
        &locate(&app, uri, Some("67.43.156.1, 81.2.69.192"), json!({})).await,
        &london_body(),
    );
    assert_not_found(&locate(&app, uri, Some("not-an-ip"), json!({})).await);
    assert_not_found(&locate(&app, uri, None, json!({})).await);
}

/// A GeoIP lookup from `peer` with `X-Forwarded-For: forwarded`.
async fn ip_lookup_from(app: &axum::Router, peer: &str, forwarded: &str) -> Reply {
    let peer = std::net::SocketAddr::new(peer.parse().unwrap(), 40000);
    let request = axum::http::Request::builder()
        .method(Method::GET)
        .uri("/v1/geolocate?key=test")
        .header("x-forwarded-for", forwarded)
        .extension(axum::extract::ConnectInfo(peer))
        .body(axum::body::Body::empty())
        .unwrap();
    send_request(app, request).await
}

/// A client talking to the server directly cannot choose the address it is
/// located at; behind trusted proxies the right-most untrusted hop counts.
async fn client_ip_is_told_only_by_trusted_proxies(fx: Fx) {
    fixture_keys(&fx).await;
    // Default: only loopback proxies are trusted.
    let app = app(&fx);
    assert_not_found(&ip_lookup_from(&app, "203.0.113.5", LONDON).await);
    assert_json_200(
        &ip_lookup_from(&app, "127.0.0.1", LONDON).await,
        &london_body(),
    );
    assert_json_200(&ip_lookup_from(&app, "::1", LONDON).await, &london_body());
    // The peer's own address when it is not a proxy.
    assert_json_200(
        &ip_lookup_from(&app, LONDON, "67.43.156.1").await,
        &london_body(),
    );
    // A configured proxy network: hops inside it are skipped.
    let mut st = state(&fx, false);
    st.api.trusted_proxies =
        ichnaea_web::api::client_ip::TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
    let app = router(st);
    assert_json_200(
        &ip_lookup_from(
            &app,
            "10.0.0.1",
            &format!("67.43.156.1, {LONDON}, 10.1.2.3"),
        )
        .await,
        &london_body(),
    );
    assert_not_found(&ip_lookup_from(&app, "127.0.0.1", LONDON).await);
}

async fn case_11_15_consider_ip_and_fallbacks(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    let uri = "/v1/geolocate?key=test";
    // Row 11.
    assert_not_found(&locate(&app, uri, Some(NOWHERE), json!({})).await);
    // Row 12.
    for body in [
        json!({"considerIp": false}),
        json!({"considerIp": "false"}),
        json!({"considerIp": 0}),
        json!({"considerIp": "FALSE"}),
    ] {
        assert_not_found(&locate(&app, uri, Some(LONDON), body).await);
    }
    // Row 13.
    for body in [json!({"considerIp": "no"}), json!({"considerIp": null})] {
        assert_json_200(&locate(&app, uri, Some(LONDON), body).await, &london_body());
    }
    // Row 14 (T-G3).
    assert_json_200(
        &locate(
            &app,
            uri,
            Some(LONDON),
            json!({"considerIp": false, "fallbacks": {}}),
        )
        .await,
        &london_body(),
    );
    // Row 15.
    assert_not_found(
        &locate(
            &app,
            uri,
            Some(LONDON),
            json!({"fallbacks": {"ipf": false}}),
        )
        .await,
    );
    // ipf also switches GeoIP off for /v1/country.
    assert_not_found(
        &locate(
            &app,
            "/v1/country?key=test",
            Some(LONDON),
            json!({"considerIp": false}),
        )
        .await,
    );
}

fn validation_paths(r: &Reply) -> Vec<String> {
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_reason(r), "parseError");
    assert_cors(r);
    let body = r.json();
    assert!(body["error"].get("details").is_none());
    body["details"]["validation"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

async fn case_16_22_type_errors(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    for uri in ["/v1/geolocate?key=test", "/v1/country?key=test"] {
        for (body, path) in [
            (json!({"fallbacks": null}), "fallbacks"),
            (json!([1]), ""),
            (
                json!({"wifiAccessPoints": [{"macAddress": 12}]}),
                "wifiAccessPoints.0.macAddress",
            ),
            (
                json!({"cellTowers": [{"radioType": "umts"}]}),
                "cellTowers.0.radioType",
            ),
            (json!({"radioType": "GSM"}), "radioType"),
            (json!({"wifiAccessPoints": null}), "wifiAccessPoints"),
            (json!({"bluetoothBeacons": [null]}), "bluetoothBeacons.0"),
            (
                json!({"cellTowers": [{"cellId": "abc"}]}),
                "cellTowers.0.cellId",
            ),
        ] {
            let r = locate(&app, uri, Some(LONDON), body.clone()).await;
            let paths = validation_paths(&r);
            assert!(paths.contains(&path.to_string()), "{body}: {paths:?}");
        }
    }
    // Every type error is listed.
    let r = locate(
        &app,
        "/v1/geolocate?key=test",
        Some(LONDON),
        json!({"radioType": "x", "wifiAccessPoints": [{"macAddress": 1}, {"ssid": true}]}),
    )
    .await;
    assert_eq!(
        validation_paths(&r),
        vec![
            "radioType",
            "wifiAccessPoints.0.macAddress",
            "wifiAccessPoints.1.ssid"
        ]
    );
}

async fn case_17_27_28_29_30_decoding(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    let uri = "/v1/geolocate?key=test";
    let decode_error = |r: &Reply| {
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(error_reason(r), "parseError");
        let body = r.json();
        assert!(body["details"]["decode"].is_string(), "{body}");
        assert!(body["error"].get("details").is_none());
        assert_cors(r);
    };
    // Row 17.
    decode_error(&locate_raw(&app, uri, Some(LONDON), vec![0xc2, 0xae]).await);
    let body23 = wifi_body(&[1, 2]).to_string().into_bytes();
    // Row 27.
    let gz = gzip(&body23);
    let r = send_app(
        &app,
        Method::POST,
        uri,
        &[("content-encoding", "gzip"), ("x-forwarded-for", LONDON)],
        gz[..gz.len() - 2].to_vec(),
    )
    .await;
    decode_error(&r);
    // Row 28.
    let r = send_app(
        &app,
        Method::POST,
        uri,
        &[("content-encoding", "GZIP"), ("x-forwarded-for", LONDON)],
        gz.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_reason(&r), "parseError");
    // Rows 29, 30.
    let bytes = b"{\"comment\": \"R\xe9sum\xe9\", \"items\": []}".to_vec();
    let r = send_app(
        &app,
        Method::POST,
        uri,
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("x-forwarded-for", LONDON),
        ],
        bytes.clone(),
    )
    .await;
    decode_error(&r);
    let r = send_app(
        &app,
        Method::POST,
        uri,
        &[
            ("content-type", "application/json; charset=latin-1"),
            ("x-forwarded-for", LONDON),
        ],
        bytes,
    )
    .await;
    assert_json_200(&r, &london_body());
    // NaN literals are accepted where floats are not required.
    let r = locate_raw(&app, uri, Some(LONDON), b"{\"x\": NaN}".to_vec()).await;
    assert_json_200(&r, &london_body());
}

async fn case_23_26_unknown_wifi_and_ipf(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    let uri = "/v1/geolocate?key=test";
    let mut with_ipf = london_body();
    with_ipf["fallback"] = json!("ipf");
    // Row 23 (T-G4).
    assert_json_200(
        &locate(&app, uri, Some(LONDON), wifi_body(&[1, 2])).await,
        &with_ipf,
    );
    // Row 24: one WiFi is unusable data: a pure IP lookup.
    assert_json_200(
        &locate(&app, uri, Some(LONDON), wifi_body(&[1])).await,
        &london_body(),
    );
    // Row 25.
    assert_not_found(&locate(&app, uri, Some(NOWHERE), wifi_body(&[1, 2])).await);
    // Row 26.
    let r = send_app(
        &app,
        Method::POST,
        uri,
        &[("content-encoding", "gzip"), ("x-forwarded-for", LONDON)],
        gzip(wifi_body(&[1, 2]).to_string().as_bytes()),
    )
    .await;
    assert_json_200(&r, &with_ipf);
    // The same for /v1/country.
    let r = locate(
        &app,
        "/v1/country?key=test",
        Some(LONDON),
        wifi_body(&[1, 2]),
    )
    .await;
    assert_country(&r, "GB", "United Kingdom", Some("ipf"));
}

async fn case_31_32_methods(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    for path in ["/v1/geolocate", "/v1/country"] {
        let r = send_app(&app, Method::OPTIONS, path, &[], Vec::new()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.is_empty());
        assert_cors(&r);
        assert_eq!(r.header(header::CONTENT_TYPE), None);
        for method in [Method::PUT, Method::PATCH, Method::DELETE] {
            let uri = format!("{path}?key=test");
            let r = send_app(&app, method.clone(), &uri, &[], Vec::new()).await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
        }
    }
}

async fn case_33_36_37_38_daily_limits(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    // Row 33.
    let uri = "/v1/geolocate?key=limited";
    assert_json_200(
        &locate(&app, uri, Some(LONDON), json!({})).await,
        &london_body(),
    );
    assert_json_200(
        &locate(&app, uri, Some(LONDON), json!({})).await,
        &london_body(),
    );
    let r = locate(&app, uri, Some(LONDON), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json(), limit_body());
    assert_cors(&r);
    let now = Utc::now();
    assert_eq!(
        fx.counters
            .requests("limited", "v1.geolocate", now)
            .await
            .unwrap(),
        3
    );
    // Row 36: /v1/country is never counted or limited.
    for _ in 0..5 {
        let r = locate(&app, "/v1/country?key=limited", Some(LONDON), json!({})).await;
        assert_country(&r, "GB", "United Kingdom", None);
    }
    assert_eq!(
        fx.counters
            .requests("limited", "v1.country", now)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        fx.counters
            .unique_users("region", "limited", now)
            .await
            .unwrap(),
        0
    );
    // Row 37: a separate counter per endpoint.
    let r = send(
        &fx,
        Method::POST,
        "/v2/geosubmit?key=limited",
        &[],
        json!({"items": [{"position": {"latitude": 51.5, "longitude": -0.1},
                          "wifiAccessPoints": [{"macAddress": "01:23:45:67:89:ab"}]}]})
        .to_string()
        .into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // Row 38.
    assert_json_200(
        &locate(&app, "/v1/geolocate?key=test", Some(LONDON), json!({})).await,
        &london_body(),
    );
    assert_eq!(
        fx.counters
            .unique_users("locate", "test", now)
            .await
            .unwrap(),
        1
    );
    if let Some((mut conn, prefix)) = redis_conn(&fx) {
        let d = now.date_naive();
        let limit = format!(
            "{prefix}apilimit:limited:v1.geolocate:{:04}{:02}{:02}",
            d.year(),
            d.month(),
            d.day()
        );
        let value: String = redis::cmd("GET").arg(&limit).query(&mut conn).unwrap();
        assert_eq!(value, "3");
        let ttl: i64 = redis::cmd("TTL").arg(&limit).query(&mut conn).unwrap();
        assert!(ttl > 0 && ttl <= 90_000, "{ttl}");
        assert!(
            redis_keys(&mut conn, &format!("{prefix}apilimit:limited:v1.country:*")).is_empty()
        );
        assert!(redis_keys(&mut conn, &format!("{prefix}apiuser:region:*")).is_empty());
        let users = format!("{prefix}apiuser:locate:test:{}", d.format("%Y-%m-%d"));
        let ttl: i64 = redis::cmd("TTL").arg(&users).query(&mut conn).unwrap();
        assert!(ttl > 7 * 86_400 && ttl <= 8 * 86_400, "{ttl}");
    }
}

async fn case_34_35_preset_limit_precedes_parsing(fx: Fx) {
    add_key(&fx, limited("k-over", 5)).await;
    let now = Utc::now();
    fx.counters
        .set_requests("k-over", "v1.geolocate", now, 10)
        .await
        .unwrap();
    let app = app(&fx);
    let r = locate(&app, "/v1/geolocate?key=k-over", Some(LONDON), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json(), limit_body());
    assert_eq!(
        fx.counters
            .requests("k-over", "v1.geolocate", now)
            .await
            .unwrap(),
        11
    );
    let r = locate_raw(
        &app,
        "/v1/geolocate?key=k-over",
        Some(LONDON),
        b"not json".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(error_reason(&r), "dailyLimitExceeded");
    // The region API is not limited.
    let r = locate(&app, "/v1/country?key=k-over", Some(LONDON), json!({})).await;
    assert_country(&r, "GB", "United Kingdom", None);
}

async fn case_39_40_country(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    // Row 39 (T-R1).
    assert_country(
        &locate(&app, "/v1/country?key=test", Some(LONDON), json!({})).await,
        "GB",
        "United Kingdom",
        None,
    );
    let get = send_app(
        &app,
        Method::GET,
        "/v1/country?key=test",
        &[("x-forwarded-for", LONDON)],
        Vec::new(),
    )
    .await;
    assert_country(&get, "GB", "United Kingdom", None);
    // Row 40.
    assert_not_found(&locate(&app, "/v1/country?key=test", Some(NOWHERE), json!({})).await);
    assert_key_invalid(&locate(&app, "/v1/country", Some(LONDON), json!({})).await);
}

async fn case_63_query_reports(fx: Fx) {
    fixture_keys(&fx).await;
    add_key(
        &fx,
        ApiKey {
            store_sample_locate: Some(0),
            ..ApiKey::new("nosample")
        },
    )
    .await;
    add_key(
        &fx,
        ApiKey {
            store_sample_locate: None,
            ..ApiKey::new("nullsample")
        },
    )
    .await;
    // Two known WiFi not seen today.
    let yesterday = now().date() - Duration::days(1);
    let not_today = |p| StationFields {
        last_seen: Some(yesterday),
        ..fresh(p)
    };
    put_wifi(
        &fx,
        vec![(1, not_today(P0)), (2, not_today((51.5001, -0.1)))],
    )
    .await;
    let app = app(&fx);
    let body = json!({"wifiAccessPoints": [
        {"macAddress": mac_colons(1), "signalStrength": -70, "channel": 6, "ssid": "home"},
        {"macAddress": mac_colons(2), "age": 1500, "frequency": 5180}
    ], "considerIp": false});
    let r = locate(&app, "/v1/geolocate?key=test", Some(LONDON), body.clone()).await;
    // The signal pulls the position towards the first AP.
    assert_near(&r, (51.50005, -0.1), 10.0);
    let answer = r.json();
    let items = queued(&fx).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(item["api_key"], json!("test"));
    assert_eq!(item["source"], json!("query"));
    let report = &item["report"];
    assert!(report.get("timestamp").is_none());
    assert_eq!(report["fallbacks"], json!({"ipf": false, "lacf": true}));
    assert_eq!(report["position"]["source"], json!("query"));
    assert_eq!(
        report["position"],
        json!({"latitude": answer["location"]["lat"], "longitude": answer["location"]["lng"],
               "accuracy": answer["accuracy"], "source": "query"})
    );
    assert_eq!(
        report["wifiAccessPoints"],
        json!([
            {"macAddress": mac_hex(1), "channel": 6, "frequency": 2437, "signalStrength": -70, "ssid": "home"},
            {"macAddress": mac_hex(2), "age": 1500, "channel": 36, "frequency": 5180}
        ])
    );
    assert!(report.get("cellTowers").is_none());
    assert!(report.get("bluetoothBeacons").is_none());
    assert!(report.get("carrier").is_none());

    // Row 63 defaults: resolved flags {"ipf": true, "lacf": true}.
    let r = locate(&app, "/v1/geolocate?key=test", None, wifi_body(&[1, 2])).await;
    assert_eq!(r.status, StatusCode::OK);
    let items = queued(&fx).await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["report"]["fallbacks"],
        json!({"ipf": true, "lacf": true})
    );

    // Sampled out: global rate 0, key rate 0 or NULL.
    fx.counters.set_locate_sample_rate(Some(0.0)).await.unwrap();
    let r = locate(&app, "/v1/geolocate?key=test", None, wifi_body(&[1, 2])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(queued(&fx).await.is_empty());
    fx.counters.set_locate_sample_rate(None).await.unwrap();
    for k in ["nosample", "nullsample"] {
        let r = locate(
            &app,
            &format!("/v1/geolocate?key={k}"),
            None,
            wifi_body(&[1, 2]),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert!(queued(&fx).await.is_empty());
    // /v1/country never enqueues.
    let r = locate(
        &app,
        "/v1/country?key=test",
        Some(LONDON),
        wifi_body(&[1, 2]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(queued(&fx).await.is_empty());

    // All networks already seen today: nothing is stored.
    put_wifi(&fx, vec![(3, fresh(P0)), (4, fresh((51.5001, -0.1)))]).await;
    let r = locate(&app, "/v1/geolocate?key=test", None, wifi_body(&[3, 4])).await;
    assert_position(&r, (51.50005, -0.1), 10.0, None);
    assert!(queued(&fx).await.is_empty());
    // One of them not seen today: stored.
    let r = locate(&app, "/v1/geolocate?key=test", None, wifi_body(&[1, 3, 4])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(queued(&fx).await.len(), 1);
    // No internal result (unknown networks, GeoIP answer): nothing stored.
    let r = locate(
        &app,
        "/v1/geolocate?key=test",
        Some(LONDON),
        wifi_body(&[8, 9]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(queued(&fx).await.is_empty());
}

async fn case_64_backends_down_locate_still_answers(fx: Fx) {
    fixture_keys(&fx).await;
    if fx.redis.is_some() {
        // Redis stopped: counting fails open, GeoIP still answers.
        let mut redis = PrivateRedis::start(&["--appendonly", "no"]);
        let down = Fx {
            queue: ichnaea_queue::Queue::redis(redis.url(), "").await.unwrap(),
            counters: Arc::new(
                ichnaea_queue::Counters::redis(redis.url(), "")
                    .await
                    .unwrap(),
            ),
            ..fx.clone()
        };
        let app = app(&down);
        redis.stop();
        let r = locate(&app, "/v1/geolocate?key=test", Some(LONDON), json!({})).await;
        assert_json_200(&r, &london_body());
        let r = locate(&app, "/v1/geolocate?key=limited", Some(LONDON), json!({})).await;
        assert_json_200(&r, &london_body());
        let r = locate(&app, "/v1/country?key=test", Some(LONDON), json!({})).await;
        assert_country(&r, "GB", "United Kingdom", None);
    }
    // Database down: key lookups fail, anonymous defaults apply (locate and
    // region allowed, no limit); station lookups fail and GeoIP answers.
    put_wifi(&fx, vec![(1, fresh(P0)), (2, fresh((51.5001, -0.1)))]).await;
    let app = app(&fx);
    fx.store.close().await;
    let r = locate(&app, "/v1/geolocate?key=nolocate", Some(LONDON), json!({})).await;
    assert_json_200(&r, &london_body());
    let mut with_ipf = london_body();
    with_ipf["fallback"] = json!("ipf");
    let r = locate(
        &app,
        "/v1/geolocate?key=test",
        Some(LONDON),
        wifi_body(&[1, 2]),
    )
    .await;
    assert_json_200(&r, &with_ipf);
    let r = locate(
        &app,
        "/v1/country?key=noregion",
        Some(LONDON),
        wifi_body(&[1, 2]),
    )
    .await;
    assert_country(&r, "GB", "United Kingdom", Some("ipf"));
    // A missing key is still refused.
    assert_key_invalid(&locate(&app, "/v1/geolocate", Some(LONDON), json!({})).await);
    // No IP answer: 404, not 5xx.
    assert_not_found(
        &locate(
            &app,
            "/v1/geolocate?key=test",
            Some(NOWHERE),
            wifi_body(&[1, 2]),
        )
        .await,
    );
}

// ---- locate §8 through HTTP ---------------------------------------------------

const T: &str = "/v1/geolocate?key=test";

async fn t_n_normalisation(fx: Fx) {
    fixture_keys(&fx).await;
    put_wifi(&fx, vec![(1, fresh(P0)), (2, fresh((51.5001, -0.1)))]).await;
    let app = app(&fx);
    // T-N1: one listed MAC → WiFi ignored → 404 without IP.
    assert_not_found(&locate(&app, T, None, wifi_body(&[1])).await);
    // T-N2: one MAC three times is one network.
    let three = json!({"wifiAccessPoints": [
        {"macAddress": mac_hex(1), "signalStrength": -90},
        {"macAddress": mac_hex(1), "signalStrength": -82},
        {"macAddress": mac_hex(1), "signalStrength": -85}]});
    assert_not_found(&locate(&app, T, None, three).await);
    // T-N3: spellings of one MAC.
    for spelling in [
        mac_colons(1),
        mac_colons(1).replace(':', "-").to_lowercase(),
    ] {
        let body =
            json!({"wifiAccessPoints": [{"macAddress": spelling}, {"macAddress": mac_hex(2)}]});
        assert_position(
            &locate(&app, T, None, body).await,
            (51.50005, -0.1),
            10.0,
            None,
        );
    }
    let dotted = {
        let h = mac_hex(1);
        format!("{}.{}.{}", &h[0..4], &h[4..8], &h[8..12])
    };
    let body = json!({"wifiAccessPoints": [{"macAddress": dotted}, {"macAddress": mac_hex(2)}]});
    assert_position(
        &locate(&app, T, None, body).await,
        (51.50005, -0.1),
        10.0,
        None,
    );
    // T-N4: invalid MACs are dropped (then fewer than 2 remain).
    for bad in [
        "000000000000",
        "ffffffffffff",
        "01005e901000",
        "abcd",
        "a82066000001a",
    ] {
        let body = json!({"wifiAccessPoints": [{"macAddress": bad}, {"macAddress": mac_hex(2)}]});
        assert_not_found(&locate(&app, T, None, body).await);
    }
    // T-N5 / T-N6: ssid `_nomap` is used; an out-of-range signal is nulled.
    let body = json!({"wifiAccessPoints": [
        {"macAddress": mac_hex(1), "ssid": "home_nomap", "signalStrength": -130},
        {"macAddress": mac_hex(2), "signalStrength": -5}]});
    assert_position(
        &locate(&app, T, None, body).await,
        (51.50005, -0.1),
        10.0,
        None,
    );

    // T-N8: gsm with cell id 70 000 looks up the wcdma row.
    put_cells(
        &fx,
        vec![(cell_key(Radio::Wcdma, 234, 10, 70_000), fresh(P0))],
    )
    .await;
    let body = json!({"cellTowers": [cell_json("gsm", 234, 10, 70_000)]});
    assert_position(&locate(&app, T, None, body).await, P0, 1000.0, None);
    // T-N9: LAC 0 → nothing.
    let body = json!({"cellTowers": [cell_json("gsm", 234, 0, 1)]});
    assert_not_found(&locate(&app, T, None, body).await);
    // T-N10: a cdma cell is ignored, a valid gsm cell still located.
    put_cells(
        &fx,
        vec![(cell_key(Radio::Gsm, 234, 10, 2), fresh((51.6, -0.1)))],
    )
    .await;
    let body = json!({"cellTowers": [cell_json("cdma", 234, 10, 1), cell_json("gsm", 234, 10, 2)]});
    assert_position(
        &locate(&app, T, None, body).await,
        (51.6, -0.1),
        1000.0,
        None,
    );
    // T-N12: top-level radioType fills cells without one.
    put_cells(
        &fx,
        vec![(cell_key(Radio::Lte, 234, 10, 3), fresh((51.7, -0.1)))],
    )
    .await;
    let body = json!({"radioType": "lte", "cellTowers": [
        {"mobileCountryCode": 234, "mobileNetworkCode": 30, "locationAreaCode": 10, "cellId": 3}]});
    assert_position(
        &locate(&app, T, None, body).await,
        (51.7, -0.1),
        1000.0,
        None,
    );
    // T-N13: an invalid MCC is dropped.
    put_cells(&fx, vec![(cell_key(Radio::Lte, 999, 10, 3), fresh(P0))]).await;
    let body = json!({"cellTowers": [cell_json("lte", 999, 10, 3)]});
    assert_not_found(&locate(&app, T, None, body).await);
}

async fn t_w_wifi_and_bluetooth(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    // T-W1.
    put_wifi(&fx, vec![(1, fresh(P0)), (2, fresh((51.5001, -0.1)))]).await;
    assert_position(
        &locate(&app, T, None, wifi_body(&[1, 2])).await,
        (51.50005, -0.1),
        10.0,
        None,
    );
    // T-W2: 556 m apart → no cluster.
    put_wifi(&fx, vec![(3, fresh(P0)), (4, fresh((51.505, -0.1)))]).await;
    assert_not_found(&locate(&app, T, None, wifi_body(&[3, 4])).await);
    // T-W3.
    put_wifi(&fx, vec![(5, fresh(P0)), (6, fresh((51.5044, -0.1)))]).await;
    assert_position(
        &locate(&app, T, None, wifi_body(&[5, 6])).await,
        (51.5022, -0.1),
        244.7673679,
        None,
    );
    // T-W4: the outlier is dropped.
    put_wifi(&fx, vec![(7, fresh((52.5, -0.1)))]).await;
    assert_position(
        &locate(&app, T, None, wifi_body(&[1, 2, 7])).await,
        (51.50005, -0.1),
        10.0,
        None,
    );
    // T-W5: four corners.
    put_wifi(
        &fx,
        vec![
            (10, fresh(P0)),
            (11, fresh((51.5027, -0.1))),
            (12, fresh((51.5, -0.0957))),
            (13, fresh((51.5027, -0.0957))),
        ],
    )
    .await;
    assert_position(
        &locate(&app, T, None, wifi_body(&[10, 11, 12, 13])).await,
        (51.50135, -0.09785),
        211.7744926,
        None,
    );
    // T-W6: two clusters, Paris has more score.
    put_wifi(
        &fx,
        vec![
            (20, fresh((48.85, 2.35))),
            (21, fresh((48.8501, 2.35))),
            (22, fresh((48.8502, 2.35))),
        ],
    )
    .await;
    assert_position(
        &locate(&app, T, None, wifi_body(&[1, 2, 20, 21, 22])).await,
        (48.8501, 2.35),
        11.1206834,
        None,
    );
    // T-W10: a temporarily blocked station leaves one usable → 404.
    put_wifi(
        &fx,
        vec![
            (30, fresh(P0)),
            (
                31,
                StationFields {
                    block_last: Some(now().date() - Duration::days(1)),
                    block_count: Some(1),
                    ..fresh((51.5001, -0.1))
                },
            ),
        ],
    )
    .await;
    assert_not_found(&locate(&app, T, None, wifi_body(&[30, 31])).await);
    // T-W12: Bluetooth.
    put_blue(&fx, vec![(1, fresh(P0)), (2, fresh((51.5003, -0.1)))]).await;
    let body =
        json!({"bluetoothBeacons": [{"macAddress": mac_hex(1)}, {"macAddress": mac_hex(2)}]});
    assert_position(
        &locate(&app, T, None, body).await,
        (51.50015, -0.1),
        16.6886757,
        None,
    );
    put_blue(&fx, vec![(3, fresh(P0)), (4, fresh((51.501, -0.1)))]).await;
    let body =
        json!({"bluetoothBeacons": [{"macAddress": mac_hex(3)}, {"macAddress": mac_hex(4)}]});
    assert_not_found(&locate(&app, T, None, body).await);
}

async fn t_c_cells_and_areas(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    let lte = |cid| cell_key(Radio::Lte, 234, 1, cid);
    // T-C1: radius clamps.
    for (cid, radius, accuracy) in [
        (1, 3_000, 3_000.0),
        (2, 500, 1_000.0),
        (3, 100_000, 50_000.0),
    ] {
        put_cells(
            &fx,
            vec![(
                lte(cid),
                StationFields {
                    radius: Some(radius),
                    ..fresh(P0)
                },
            )],
        )
        .await;
        let body = json!({"cellTowers": [cell_json("lte", 234, 1, cid)]});
        assert_position(&locate(&app, T, None, body).await, P0, accuracy, None);
    }
    // T-C2: two cells of one area.
    let area2 = |cid| cell_key(Radio::Lte, 234, 2, cid);
    put_cells(
        &fx,
        vec![
            (
                area2(1),
                StationFields {
                    samples: Some(100),
                    ..fresh(P0)
                },
            ),
            (
                area2(2),
                StationFields {
                    samples: Some(10),
                    ..fresh((52.5, 0.9))
                },
            ),
        ],
    )
    .await;
    let body = json!({"cellTowers": [cell_json("lte", 234, 2, 1), cell_json("lte", 234, 2, 2)]});
    assert_position(
        &locate(&app, T, None, body).await,
        (51.8333333, 0.2333333),
        50_000.0,
        None,
    );
    // T-C3: signals weight the position.
    let area3 = |cid| cell_key(Radio::Lte, 234, 3, cid);
    put_cells(
        &fx,
        vec![(area3(1), fresh(P0)), (area3(2), fresh((51.6, -0.1)))],
    )
    .await;
    let mut one = cell_json("lte", 234, 3, 1);
    one["signalStrength"] = json!(-70);
    let body = json!({"cellTowers": [one, cell_json("lte", 234, 3, 2)]});
    assert_position(
        &locate(&app, T, None, body).await,
        (51.52, -0.1),
        8566.9403507,
        None,
    );
    // T-C4: ages weight the position.
    let mut aged = cell_json("lte", 234, 3, 1);
    aged["age"] = json!(8000);
    let body = json!({"cellTowers": [aged, cell_json("lte", 234, 3, 2)]});
    assert_position(
        &locate(&app, T, None, body).await,
        (51.5666667, -0.1),
        7231.8021031,
        None,
    );
    // T-C5: unknown cell, known area → lacf; T-C6: lacf false → 404.
    let area5 = AreaKey {
        radio: Radio::Lte,
        mcc: 234,
        mnc: 30,
        lac: 5,
    };
    put_area(&fx, area5, P0, 20_000, "GB").await;
    let body = json!({"cellTowers": [cell_json("lte", 234, 5, 99)]});
    assert_position(
        &locate(&app, T, None, body.clone()).await,
        P0,
        50_000.0,
        Some("lacf"),
    );
    let mut no_lacf = body.clone();
    no_lacf["fallbacks"] = json!({"lacf": false});
    assert_not_found(&locate(&app, T, None, no_lacf).await);
    let area6 = AreaKey { lac: 6, ..area5 };
    put_area(&fx, area6, P0, 700_000, "GB").await;
    let body = json!({"cellTowers": [cell_json("lte", 234, 6, 99)]});
    assert_position(
        &locate(&app, T, None, body).await,
        P0,
        500_000.0,
        Some("lacf"),
    );
    // A cell without cellId still gives its area.
    let body = json!({"cellTowers": [{"radioType": "lte", "mobileCountryCode": 234,
                                      "mobileNetworkCode": 30, "locationAreaCode": 5}]});
    assert_position(
        &locate(&app, T, None, body).await,
        P0,
        50_000.0,
        Some("lacf"),
    );
    // T-C7: a known cell hides the areas.
    let body = json!({"cellTowers": [cell_json("lte", 234, 1, 1), cell_json("lte", 234, 5, 99)]});
    assert_position(&locate(&app, T, None, body).await, P0, 3_000.0, None);
    // T-C8: cells of two areas; London wins on score.
    put_cells(
        &fx,
        vec![
            (
                cell_key(Radio::Lte, 234, 8, 1),
                StationFields {
                    created: Some(now() - Duration::days(10)),
                    samples: Some(100),
                    radius: Some(2000),
                    ..fresh(P0)
                },
            ),
            (
                cell_key(Radio::Lte, 234, 9, 5),
                StationFields {
                    created: Some(now() - Duration::days(10)),
                    samples: Some(8),
                    radius: Some(2000),
                    ..fresh((48.85, 2.35))
                },
            ),
        ],
    )
    .await;
    let body = json!({"cellTowers": [cell_json("lte", 234, 8, 1), cell_json("lte", 234, 9, 5)]});
    assert_position(&locate(&app, T, None, body).await, P0, 2_000.0, None);
}

async fn t_g_geoip_and_combination(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    // T-G1 is row 9. T-G2: other blocks of the test database.
    assert_position(
        &locate(&app, T, Some("81.2.69.144"), json!({})).await,
        (51.5142, -0.0931),
        3_000.0,
        None,
    );
    assert_position(
        &locate(&app, T, Some("81.2.69.170"), json!({})).await,
        (51.5142, -0.0931),
        40_000.0,
        None,
    );
    assert_position(
        &locate(&app, T, Some("67.43.156.1"), json!({})).await,
        (27.5, 90.5),
        190_000.0,
        None,
    );
    assert_position(
        &locate(&app, T, Some("216.160.83.57"), json!({})).await,
        (47.2513, -122.3149),
        22_000.0,
        None,
    );
    assert_position(
        &locate(&app, T, Some("2a02:ffc0::1"), json!({})).await,
        (36.13333, -5.35),
        3_000.0,
        None,
    );
    for nowhere in ["127.0.0.1", "10.0.0.1", "8.8.8.8", "2.2.3.4"] {
        assert_not_found(&locate(&app, T, Some(nowhere), json!({})).await);
    }
    // T-G5: WiFi inside the GeoIP circle wins, untagged.
    put_wifi(&fx, vec![(1, fresh(P0)), (2, fresh((51.5001, -0.1)))]).await;
    assert_position(
        &locate(&app, T, Some(LONDON), wifi_body(&[1, 2])).await,
        (51.50005, -0.1),
        10.0,
        None,
    );
    // T-G6: far WiFi with little score loses to GeoIP; trusted WiFi wins.
    put_wifi(
        &fx,
        vec![(3, fresh((48.85, 2.35))), (4, fresh((48.8501, 2.35)))],
    )
    .await;
    assert_position(
        &locate(&app, T, Some(LONDON), wifi_body(&[3, 4])).await,
        (51.5142, -0.0931),
        40_000.0,
        Some("ipf"),
    );
    put_wifi(
        &fx,
        vec![
            (5, trusted((48.85, 2.35), "FR")),
            (6, trusted((48.8501, 2.35), "FR")),
        ],
    )
    .await;
    assert_position(
        &locate(&app, T, Some(LONDON), wifi_body(&[5, 6])).await,
        (48.85005, 2.35),
        10.0,
        None,
    );
}

async fn t_r_region(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    let c = "/v1/country?key=test";
    // T-R2 row 1: MCC 262, unknown cell → DE.
    let body = json!({"cellTowers": [cell_json("gsm", 262, 1, 1)]});
    assert_country(&locate(&app, c, None, body).await, "DE", "Germany", None);
    // Row 2: MCC 234, no area rows → GB (largest radius of the tie).
    let body = json!({"cellTowers": [cell_json("gsm", 234, 1, 1)]});
    assert_country(
        &locate(&app, c, None, body).await,
        "GB",
        "United Kingdom",
        None,
    );
    // Row 3: London IP + MCC 310 → GB with ipf.
    let body = json!({"cellTowers": [cell_json("gsm", 310, 1, 1)]});
    assert_country(
        &locate(&app, c, Some(LONDON), body).await,
        "GB",
        "United Kingdom",
        Some("ipf"),
    );
    // Row 4: London IP + gsm 310 + lte 311 → US.
    let body = json!({"cellTowers": [cell_json("gsm", 310, 1, 1), cell_json("lte", 311, 1, 1)]});
    assert_country(
        &locate(&app, c, Some(LONDON), body).await,
        "US",
        "United States",
        None,
    );
    // Row 5: London IP + 2 trusted WiFi in the US + gsm MCC 234 → US.
    put_wifi(
        &fx,
        vec![
            (1, trusted((40.7, -74.0), "US")),
            (2, trusted((40.7001, -74.0), "US")),
        ],
    )
    .await;
    let mut body = wifi_body(&[1, 2]);
    body["cellTowers"] = json!([cell_json("gsm", 234, 1, 1)]);
    assert_country(
        &locate(&app, c, Some(LONDON), body).await,
        "US",
        "United States",
        None,
    );
    // T-R3: two stored WiFi with region GB, no GeoIP → GB.
    put_wifi(&fx, vec![(3, fresh(P0)), (4, fresh((51.5001, -0.1)))]).await;
    fx.store
        .upsert_wifi_stations(&[
            WifiStation {
                mac: mac(3),
                fields: StationFields {
                    region: Some("GB".into()),
                    ..fresh(P0)
                },
            },
            WifiStation {
                mac: mac(4),
                fields: StationFields {
                    region: Some("GB".into()),
                    ..fresh((51.5001, -0.1))
                },
            },
        ])
        .await
        .unwrap();
    assert_country(
        &locate(&app, c, Some(NOWHERE), wifi_body(&[3, 4])).await,
        "GB",
        "United Kingdom",
        None,
    );
    // T-R4: area-only entry for MCC 235 → GB; MCC 234 with a stored GB area.
    let body = json!({"cellTowers": [{"radioType": "gsm", "mobileCountryCode": 235,
                                      "mobileNetworkCode": 30, "locationAreaCode": 1}]});
    assert_country(
        &locate(&app, c, None, body).await,
        "GB",
        "United Kingdom",
        None,
    );
    put_area(
        &fx,
        AreaKey {
            radio: Radio::Gsm,
            mcc: 234,
            mnc: 30,
            lac: 7,
        },
        P0,
        10_000,
        "GB",
    )
    .await;
    let body = json!({"cellTowers": [{"radioType": "gsm", "mobileCountryCode": 234,
                                      "mobileNetworkCode": 30, "locationAreaCode": 7}]});
    assert_country(
        &locate(&app, c, None, body).await,
        "GB",
        "United Kingdom",
        None,
    );
    // T-R5: unknown WiFi only, no GeoIP → 404.
    assert_not_found(&locate(&app, c, Some(NOWHERE), wifi_body(&[8, 9])).await);
    // 5G cells count by MCC like the others.
    let body = json!({"cellTowers": [cell_json("nr", 262, 1, 1 << 35)]});
    assert_country(&locate(&app, c, None, body).await, "DE", "Germany", None);
}

async fn country_reads_no_station_table_for_ip_and_mcc(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    // Cache the key, then take the database away: GeoIP and single-region MCCs
    // still decide, exactly as before.
    let c = "/v1/country?key=test";
    assert_country(
        &locate(&app, c, Some(LONDON), json!({})).await,
        "GB",
        "United Kingdom",
        None,
    );
    fx.store.close().await;
    assert_country(
        &locate(&app, c, Some(LONDON), json!({})).await,
        "GB",
        "United Kingdom",
        None,
    );
    let body = json!({"cellTowers": [cell_json("gsm", 262, 1, 1)]});
    assert_country(
        &locate(&app, c, None, body.clone()).await,
        "DE",
        "Germany",
        None,
    );
    assert_country(
        &locate(&app, c, Some(LONDON), body).await,
        "DE",
        "Germany",
        None,
    );
    // Ambiguous MCC: the areas cannot be read, the MCC shares still decide.
    let body = json!({"cellTowers": [cell_json("gsm", 234, 1, 1)]});
    assert_country(
        &locate(&app, c, None, body).await,
        "GB",
        "United Kingdom",
        None,
    );
}

// ---- external fallback -------------------------------------------------------------

/// A local HTTP server standing in for an external provider, answering `status`
/// with `body` until told otherwise.
async fn start_provider(status: u16, body: &str) -> FakeHttp {
    let provider = FakeHttp::start(&[]).await;
    provider.answer(status, body);
    provider
}

/// A key using the provider at `url` (T-F1 settings: 10 calls per 60 s, cache 60 s).
fn fallback_key(name: &str, url: &str) -> ApiKey {
    ApiKey {
        allow_fallback: Some(true),
        fallback_name: Some("fall".into()),
        fallback_url: Some(url.into()),
        fallback_ratelimit: Some(10),
        fallback_ratelimit_interval: Some(60),
        fallback_cache_expire: Some(60),
        ..ApiKey::new(name)
    }
}

const PROVIDER_OK: &str = r#"{"location": {"lat": 1.0, "lng": 1.0}, "accuracy": 100}"#;

async fn t_f1_f2_provider_request_and_answer(fx: Fx) {
    let provider = start_provider(200, PROVIDER_OK).await;
    add_key(
        &fx,
        fallback_key("fbkey", &format!("{}/v1/geolocate", provider.url())),
    )
    .await;
    put_cells(
        &fx,
        vec![
            (cell_key(Radio::Wcdma, 234, 1, 1), fresh(P0)),
            (cell_key(Radio::Wcdma, 234, 1, 2), fresh((51.5001, -0.1))),
        ],
    )
    .await;
    let app = app(&fx);
    let mut body = wifi_body(&[1, 2, 3]);
    body["wifiAccessPoints"][0]["ssid"] = json!("net");
    body["wifiAccessPoints"][1]["frequency"] = json!(2412);
    body["cellTowers"] = json!([cell_json("wcdma", 234, 1, 1), cell_json("wcdma", 234, 1, 2)]);
    // T-F1.
    let r = locate(&app, "/v1/geolocate?key=fbkey", None, body.clone()).await;
    assert_json_200(
        &r,
        &json!({"location": {"lat": 1.0, "lng": 1.0}, "accuracy": 100.0}),
    );
    let calls = provider.requests();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.path, "/v1/geolocate");
    assert_eq!(call.headers.get(header::USER_AGENT).unwrap(), "ichnaea");
    assert_eq!(
        call.json()["fallbacks"],
        json!({"lacf": true, "ipf": false})
    );
    let cells = call.json()["cellTowers"].as_array().unwrap().clone();
    assert_eq!(cells.len(), 2);
    assert!(cells.iter().all(|c| c["radioType"] == json!("wcdma")));
    assert_eq!(
        call.json()["wifiAccessPoints"],
        json!([
            {"macAddress": mac_hex(1), "ssid": "net"},
            {"macAddress": mac_hex(2), "channel": 1},
            {"macAddress": mac_hex(3)}
        ]),
        "normalised MACs, no frequency"
    );
    assert!(call.json().get("bluetoothBeacons").is_none());
    // T-F2: a lacf answer keeps its tag; other tags are dropped.
    provider.answer(
        200,
        r#"{"location": {"lat": 1.0, "lng": 1.0}, "accuracy": 1500, "fallback": "lacf"}"#,
    );
    let r = locate(&app, "/v1/geolocate?key=fbkey", None, body.clone()).await;
    assert_position(&r, (1.0, 1.0), 1500.0, Some("lacf"));
    provider.answer(
        200,
        r#"{"location": {"lat": 1.0, "lng": 1.0}, "accuracy": 1500, "fallback": "cidf"}"#,
    );
    let r = locate(&app, "/v1/geolocate?key=fbkey", None, body).await;
    assert_position(&r, (1.0, 1.0), 1500.0, None);
    // Bluetooth is sent too.
    provider.answer(200, PROVIDER_OK);
    let body = json!({"bluetoothBeacons": [{"macAddress": mac_colons(5), "name": "b", "signalStrength": -60},
                                           {"macAddress": mac_hex(6), "age": 100}]});
    let r = locate(&app, "/v1/geolocate?key=fbkey", None, body).await;
    assert_position(&r, (1.0, 1.0), 100.0, None);
    let last = provider.requests().pop().unwrap();
    assert_eq!(
        last.json()["bluetoothBeacons"],
        json!([{"macAddress": mac_hex(5), "name": "b", "signalStrength": -60},
               {"macAddress": mac_hex(6), "age": 100}])
    );
}

fn cell_cache_key(word: &str, key: CellKey) -> Vec<u8> {
    let mut k = format!("cache:fallback:{word}:v1:1:cell:").into_bytes();
    k.extend(key.to_bytes().unwrap());
    k
}

fn wifi_cache_key(i: usize) -> Vec<u8> {
    let mut k = b"cache:fallback:ichnaea:v1:1:wifi:".to_vec();
    k.extend_from_slice(mac(i).bytes());
    k
}

async fn t_f3_f8_cache(fx: Fx) {
    let provider = start_provider(404, r#"{"error": "not found"}"#).await;
    add_key(&fx, fallback_key("fbkey", provider.url())).await;
    let app = app(&fx);
    // T-F3: single cell, provider 404 → client 404, cached as "404".
    let body = json!({"cellTowers": [cell_json("lte", 234, 1, 1)]});
    assert_not_found(&locate(&app, "/v1/geolocate?key=fbkey", None, body.clone()).await);
    assert_eq!(provider.count(), 1);
    let key = cell_cache_key("ichnaea", cell_key(Radio::Lte, 234, 1, 1));
    assert_eq!(key.len(), "cache:fallback:ichnaea:v1:1:cell:".len() + 11);
    assert_eq!(
        fx.counters
            .cache_get(std::slice::from_ref(&key))
            .await
            .unwrap(),
        vec![Some(b"\"404\"".to_vec())]
    );
    if let Some((mut conn, prefix)) = redis_conn(&fx) {
        let mut full = prefix.into_bytes();
        full.extend(&key);
        let ttl: i64 = redis::cmd("TTL").arg(full).query(&mut conn).unwrap();
        assert!(ttl > 0 && ttl <= 60, "{ttl}");
    }
    assert_not_found(&locate(&app, "/v1/geolocate?key=fbkey", None, body).await);
    assert_eq!(provider.count(), 1, "answered from the cache");

    // A found answer is cached too; 5G cell ids are 17 bytes.
    provider.answer(200, PROVIDER_OK);
    let body = json!({"cellTowers": [cell_json("nr", 262, 1, 1 << 35)]});
    let r = locate(&app, "/v1/geolocate?key=fbkey", None, body.clone()).await;
    assert_position(&r, (1.0, 1.0), 100.0, None);
    let nr_key = cell_cache_key("ichnaea", cell_key(Radio::Nr, 262, 1, 1 << 35));
    let cached = fx.counters.cache_get(&[nr_key]).await.unwrap();
    let value: Value = serde_json::from_slice(cached[0].as_ref().unwrap()).unwrap();
    assert_eq!(
        value,
        json!({"lat": 1.0, "lon": 1.0, "accuracy": 100.0, "fallback": null})
    );
    let r = locate(&app, "/v1/geolocate?key=fbkey", None, body).await;
    assert_position(&r, (1.0, 1.0), 100.0, None);
    assert_eq!(provider.count(), 2);

    // T-F8: cached WiFi sets combine.
    let set = |lat: f64, lon: f64, acc: f64| {
        json!({"lat": lat, "lon": lon, "accuracy": acc, "fallback": null})
            .to_string()
            .into_bytes()
    };
    fx.counters
        .cache_set(
            &[
                (wifi_cache_key(1), set(51.5, -0.1, 100.0)),
                (wifi_cache_key(2), set(51.5, -0.1, 100.0)),
                (wifi_cache_key(3), set(51.5001, -0.1, 200.0)),
                (wifi_cache_key(4), set(51.5001, -0.1, 200.0)),
                (wifi_cache_key(5), set(61.5, -0.1, 100.0)),
                (wifi_cache_key(6), set(51.5, -0.1, 100.0)),
                (wifi_cache_key(7), set(51.5, 2.35, 100.0)),
            ],
            60,
        )
        .await
        .unwrap();
    let r = locate(
        &app,
        "/v1/geolocate?key=fbkey",
        None,
        wifi_body(&[1, 2, 3, 4]),
    )
    .await;
    assert_position(&r, (51.50005, -0.1), 205.563, None);
    assert_eq!(r.json()["accuracy"], json!(205.563));
    assert_eq!(provider.count(), 2, "a hit makes no call");
    // A set at latitude 61.5 → inconsistent → the provider is called.
    let r = locate(
        &app,
        "/v1/geolocate?key=fbkey",
        None,
        wifi_body(&[1, 2, 3, 4, 5]),
    )
    .await;
    assert_position(&r, (1.0, 1.0), 100.0, None);
    assert_eq!(provider.count(), 3);
    // The fixed defect: same latitude, another longitude is inconsistent as well
    // (the original grouped on latitude twice and would have averaged them).
    let r = locate(&app, "/v1/geolocate?key=fbkey", None, wifi_body(&[6, 7])).await;
    assert_position(&r, (1.0, 1.0), 100.0, None);
    assert_eq!(provider.count(), 4);
    // The provider's answer overwrote the entries.
    let r = locate(&app, "/v1/geolocate?key=fbkey", None, wifi_body(&[6, 7])).await;
    assert_position(&r, (1.0, 1.0), 100.0, None);
    assert_eq!(provider.count(), 4);
    // 20 WiFi or more are not cached: every query calls.
    let many: Vec<usize> = (100..120).collect();
    locate(&app, "/v1/geolocate?key=fbkey", None, wifi_body(&many)).await;
    locate(&app, "/v1/geolocate?key=fbkey", None, wifi_body(&many)).await;
    assert_eq!(provider.count(), 6);
}

async fn t_f4_errors_are_not_cached(fx: Fx) {
    let provider = start_provider(500, "{}").await;
    add_key(&fx, fallback_key("fbkey", provider.url())).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    add_key(&fx, fallback_key("fb-closed", &closed)).await;
    let app = app(&fx);
    let body = json!({"cellTowers": [cell_json("lte", 234, 1, 1)]});
    let key = cell_cache_key("ichnaea", cell_key(Radio::Lte, 234, 1, 1));
    for (status, reply) in [
        (500, "{}"),
        (403, "{}"),
        (200, "invalid json"),
        (200, r#"["invalid json"]"#),
        (200, r#"{"location": {"lat": 1.0}, "accuracy": 10}"#),
    ] {
        provider.answer(status, reply);
        let before = provider.count();
        assert_not_found(&locate(&app, "/v1/geolocate?key=fbkey", None, body.clone()).await);
        assert_eq!(provider.count(), before + 1, "{status} {reply}");
        assert_eq!(
            fx.counters
                .cache_get(std::slice::from_ref(&key))
                .await
                .unwrap(),
            vec![None],
            "{status} {reply}"
        );
    }
    // Connection refused.
    assert_not_found(&locate(&app, "/v1/geolocate?key=fb-closed", None, body.clone()).await);
    assert_eq!(fx.counters.cache_get(&[key]).await.unwrap(), vec![None]);
    // With GeoIP the client still gets an answer.
    let mut with_ipf = london_body();
    with_ipf["fallback"] = json!("ipf");
    assert_json_200(
        &locate(&app, "/v1/geolocate?key=fbkey", Some(LONDON), body).await,
        &with_ipf,
    );
}

async fn t_f5_rate_limit(fx: Fx) {
    let provider = start_provider(200, PROVIDER_OK).await;
    // A day-long window, so the test cannot straddle two windows.
    add_key(
        &fx,
        ApiKey {
            fallback_ratelimit_interval: Some(86_400),
            fallback_cache_expire: None,
            ..fallback_key("fbkey", provider.url())
        },
    )
    .await;
    let app = app(&fx);
    let body = json!({"cellTowers": [cell_json("lte", 234, 1, 1)]});
    // Preset the window's counter to 10 (the limit).
    for _ in 0..9 {
        fx.counters
            .count_fallback_call("fall", 86_400, Utc::now())
            .await
            .unwrap();
    }
    assert_position(
        &locate(&app, "/v1/geolocate?key=fbkey", None, body.clone()).await,
        (1.0, 1.0),
        100.0,
        None,
    );
    assert_eq!(provider.count(), 1, "the 10th call is allowed");
    assert_not_found(&locate(&app, "/v1/geolocate?key=fbkey", None, body.clone()).await);
    assert_eq!(provider.count(), 1, "the 11th is not");
    if let Some((mut conn, prefix)) = redis_conn(&fx) {
        let window = Utc::now().timestamp() / 86_400;
        let key = format!("{prefix}fallback_ratelimit:fall:{window}");
        let value: String = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
        assert_eq!(value, "11");
        let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut conn).unwrap();
        assert!(ttl > 0 && ttl <= 5 * 86_400, "{ttl}");
    }
    // Several keys share a provider name and so its limit.
    add_key(
        &fx,
        ApiKey {
            fallback_ratelimit_interval: Some(86_400),
            ..fallback_key("fb-other", provider.url())
        },
    )
    .await;
    assert_not_found(&locate(&app, "/v1/geolocate?key=fb-other", None, body.clone()).await);
    assert_eq!(provider.count(), 1);
    // Ratelimit 0: no limit.
    add_key(
        &fx,
        ApiKey {
            fallback_name: Some("free".into()),
            fallback_ratelimit: Some(0),
            fallback_cache_expire: None,
            ..fallback_key("fb-free", provider.url())
        },
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            locate(&app, "/v1/geolocate?key=fb-free", None, body.clone())
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(provider.count(), 4);
    // Redis down: treated as limited, the provider is not called.
    if fx.redis.is_some() {
        let mut redis = PrivateRedis::start(&["--appendonly", "no"]);
        let down = Fx {
            counters: Arc::new(
                ichnaea_queue::Counters::redis(redis.url(), "")
                    .await
                    .unwrap(),
            ),
            ..fx.clone()
        };
        let app = crate::locate::app(&down);
        redis.stop();
        let fresh_body = json!({"cellTowers": [cell_json("lte", 234, 1, 2)]});
        assert_not_found(&locate(&app, "/v1/geolocate?key=fb-other", None, fresh_body).await);
        assert_eq!(provider.count(), 4);
    }
}

async fn t_f6_f7_when_the_provider_is_asked(fx: Fx) {
    let provider = start_provider(200, PROVIDER_OK).await;
    add_key(&fx, fallback_key("fbkey", provider.url())).await;
    add_key(
        &fx,
        ApiKey {
            allow_fallback: Some(false),
            ..fallback_key("fb-off", provider.url())
        },
    )
    .await;
    add_key(
        &fx,
        ApiKey {
            fallback_ratelimit_interval: None,
            ..fallback_key("fb-nointerval", provider.url())
        },
    )
    .await;
    add_key(
        &fx,
        ApiKey {
            fallback_url: None,
            ..fallback_key("fb-nourl", provider.url())
        },
    )
    .await;
    let app = app(&fx);
    // T-F6: a satisfying internal result → not called.
    put_wifi(
        &fx,
        vec![(1, trusted(P0, "GB")), (2, trusted((51.5001, -0.1), "GB"))],
    )
    .await;
    assert_position(
        &locate(&app, "/v1/geolocate?key=fbkey", None, wifi_body(&[1, 2])).await,
        (51.50005, -0.1),
        10.0,
        None,
    );
    assert_eq!(provider.count(), 0);
    // The same with score 0.1 → called (and its answer, score 10, wins).
    put_wifi(&fx, vec![(3, fresh(P0)), (4, fresh((51.5001, -0.1)))]).await;
    assert_position(
        &locate(&app, "/v1/geolocate?key=fbkey", None, wifi_body(&[3, 4])).await,
        (1.0, 1.0),
        100.0,
        None,
    );
    assert_eq!(provider.count(), 1);
    // T-F7: keys that may not use the fallback never call it.
    for k in ["fb-off", "fb-nointerval", "fb-nourl"] {
        let r = locate(
            &app,
            &format!("/v1/geolocate?key={k}"),
            None,
            wifi_body(&[8, 9]),
        )
        .await;
        assert_not_found(&r);
    }
    // Single WiFi, empty query, IP only, cell areas only: never called.
    for body in [
        wifi_body(&[8]),
        json!({}),
        json!({"cellTowers": [{"radioType": "lte", "mobileCountryCode": 234,
                               "mobileNetworkCode": 30, "locationAreaCode": 1}]}),
    ] {
        locate(&app, "/v1/geolocate?key=fbkey", Some(LONDON), body.clone()).await;
        locate(&app, "/v1/geolocate?key=fbkey", None, body).await;
    }
    assert_eq!(provider.count(), 1);
    // Never for /v1/country.
    locate(&app, "/v1/country?key=fbkey", None, wifi_body(&[8, 9])).await;
    assert_eq!(provider.count(), 1);
}

async fn t_f9_f10_unwiredlabs_and_googlemaps(fx: Fx) {
    let provider =
        start_provider(200, r#"{"status": "error", "message": "No matches found"}"#).await;
    add_key(
        &fx,
        ApiKey {
            fallback_schema: Some("unwiredlabs/v1".into()),
            ..fallback_key(
                "fb-unwired",
                &format!("{}/process.php#secret", provider.url()),
            )
        },
    )
    .await;
    add_key(
        &fx,
        ApiKey {
            fallback_schema: Some("googlemaps/v1".into()),
            fallback_cache_expire: None,
            ..fallback_key(
                "fb-google",
                &format!("{}/geolocation/v1/geolocate", provider.url()),
            )
        },
    )
    .await;
    add_key(
        &fx,
        ApiKey {
            fallback_schema: Some("combain/v1".into()),
            ..fallback_key("fb-combain", provider.url())
        },
    )
    .await;
    let app = app(&fx);
    // T-F9.
    let mut cell = cell_json("gsm", 234, 1, 1);
    cell["signalStrength"] = json!(-60);
    cell["timingAdvance"] = json!(3);
    cell["primaryScramblingCode"] = json!(5);
    let body = json!({"cellTowers": [cell]});
    assert_not_found(&locate(&app, "/v1/geolocate?key=fb-unwired", None, body.clone()).await);
    let call = provider.requests().pop().unwrap();
    assert_eq!(call.path, "/process.php");
    assert_eq!(call.json()["token"], json!("secret"));
    assert_eq!(
        call.json()["fallbacks"],
        json!({"lacf": true, "ipf": false})
    );
    assert_eq!(
        call.json()["cells"],
        json!([{"radio": "gsm", "mcc": 234, "mnc": 30, "lac": 1, "cid": 1,
                "signal": -60, "tA": 3, "psc": 5}])
    );
    let key = cell_cache_key("unwiredlabs", cell_key(Radio::Gsm, 234, 1, 1));
    assert_eq!(
        fx.counters.cache_get(&[key]).await.unwrap(),
        vec![Some(b"\"404\"".to_vec())]
    );
    assert_not_found(&locate(&app, "/v1/geolocate?key=fb-unwired", None, body.clone()).await);
    assert_eq!(provider.count(), 1);
    provider.answer(
        200,
        r#"{"status": "ok", "lat": 2.5, "lon": 3.5, "accuracy": 250}"#,
    );
    let r = locate(
        &app,
        "/v1/geolocate?key=fb-unwired",
        None,
        wifi_body(&[1, 2]),
    )
    .await;
    assert_position(&r, (2.5, 3.5), 250.0, None);
    let call = provider.requests().pop().unwrap();
    assert_eq!(
        call.json()["wifi"],
        json!([{"bssid": mac_hex(1)}, {"bssid": mac_hex(2)}])
    );

    // T-F10.
    provider.answer(200, PROVIDER_OK);
    let mut cell = cell_json("lte", 234, 1, 9);
    cell["primaryScramblingCode"] = json!(5);
    let body = json!({
        "cellTowers": [cell],
        "wifiAccessPoints": [{"macAddress": mac_hex(1), "ssid": "x", "channel": 6},
                             {"macAddress": mac_hex(2)}],
        "bluetoothBeacons": [{"macAddress": mac_hex(3)}, {"macAddress": mac_hex(4)}]
    });
    let r = locate(&app, "/v1/geolocate?key=fb-google", None, body.clone()).await;
    assert_position(&r, (1.0, 1.0), 100.0, None);
    let call = provider.requests().pop().unwrap();
    assert_eq!(call.path, "/geolocation/v1/geolocate");
    assert_eq!(call.json()["considerIp"], json!(false));
    assert!(call.json().get("fallbacks").is_none());
    assert!(call.json().get("bluetoothBeacons").is_none());
    assert_eq!(
        call.json()["wifiAccessPoints"],
        json!([{"macAddress": mac_hex(1), "channel": 6}, {"macAddress": mac_hex(2)}])
    );
    assert_eq!(
        call.json()["cellTowers"],
        json!([{"radioType": "lte", "mobileCountryCode": 234, "mobileNetworkCode": 30,
                "locationAreaCode": 1, "cellId": 9}])
    );
    // combain/v1 speaks the ichnaea format.
    let r = locate(&app, "/v1/geolocate?key=fb-combain", None, body).await;
    assert_position(&r, (1.0, 1.0), 100.0, None);
    let call = provider.requests().pop().unwrap();
    assert_eq!(
        call.json()["fallbacks"],
        json!({"lacf": true, "ipf": false})
    );
    assert_eq!(
        call.json()["cellTowers"][0]["primaryScramblingCode"],
        json!(5)
    );
    assert_eq!(call.json()["wifiAccessPoints"][0]["ssid"], json!("x"));
    assert_eq!(call.json()["bluetoothBeacons"].as_array().unwrap().len(), 2);
}

async fn fallback_answers_while_the_database_is_down(fx: Fx) {
    let provider = start_provider(200, PROVIDER_OK).await;
    add_key(&fx, fallback_key("fbkey", provider.url())).await;
    let app = app(&fx);
    // The key is cached by a first request; then the database goes away.
    assert_eq!(
        locate(&app, "/v1/geolocate?key=fbkey", None, wifi_body(&[1, 2]))
            .await
            .status,
        StatusCode::OK
    );
    fx.store.close().await;
    let r = locate(&app, "/v1/geolocate?key=fbkey", None, wifi_body(&[3, 4])).await;
    assert_position(&r, (1.0, 1.0), 100.0, None);
    assert_eq!(provider.count(), 2);
}

// ---- real clients (clients §7) --------------------------------------------------

async fn client_firefox(fx: Fx) {
    fixture_keys(&fx).await;
    put_wifi(&fx, vec![(1, fresh(P0)), (2, fresh((51.5001, -0.1)))]).await;
    let app = app(&fx);
    let ff = |ip: &'static str| {
        vec![
            ("content-type", "application/json; charset=UTF-8"),
            ("content-length", "0"),
            ("x-forwarded-for", ip),
        ]
    };
    // Item 1: no body at all → GeoIP, never 400.
    let r = send_app(&app, Method::POST, T, &ff(LONDON), Vec::new()).await;
    assert_json_200(&r, &london_body());
    let r = send_app(&app, Method::POST, T, &ff(NOWHERE), Vec::new()).await;
    assert_not_found(&r);
    // Item 2: two or more APs with macAddress and signalStrength only.
    let body = json!({"wifiAccessPoints": [
        {"macAddress": mac_colons(1).to_lowercase(), "signalStrength": -60},
        {"macAddress": mac_colons(2).to_lowercase(), "signalStrength": -75}]});
    let r = send_app(
        &app,
        Method::POST,
        T,
        &[
            ("content-type", "application/json; charset=UTF-8"),
            ("x-forwarded-for", LONDON),
        ],
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let got = r.json();
    let d = distance(
        got["location"]["lat"].as_f64().unwrap(),
        got["location"]["lng"].as_f64().unwrap(),
        51.50005,
        -0.1,
    );
    assert!(d < 10.0, "{got}");
    assert!(got.get("fallback").is_none());
    // The region URL Firefox uses.
    let r = send_app(
        &app,
        Method::POST,
        "/v1/country?key=test",
        &ff(LONDON),
        Vec::new(),
    )
    .await;
    assert_country(&r, "GB", "United Kingdom", None);
}

async fn client_geoclue(fx: Fx) {
    add_key(&fx, ApiKey::new("geoclue")).await;
    put_cells(&fx, vec![(cell_key(Radio::Gsm, 234, 20, 1234), fresh(P0))]).await;
    put_wifi(&fx, vec![(1, fresh(P0)), (2, fresh((51.5001, -0.1)))]).await;
    let app = app(&fx);
    let uri = "/v1/geolocate?key=geoclue";
    // Item 3, old geoclue: {} for pure GeoIP.
    assert_json_200(
        &locate(&app, uri, Some(LONDON), json!({})).await,
        &london_body(),
    );
    // Top-level radioType with one serving cell, no per-cell radio.
    let body = json!({"radioType": "gsm", "cellTowers": [
        {"cellId": 1234, "mobileCountryCode": 234, "mobileNetworkCode": 30, "locationAreaCode": 20}]});
    assert_position(
        &locate(&app, uri, Some(LONDON), body).await,
        P0,
        1000.0,
        None,
    );
    // Old geoclue Wi-Fi: lower-case colon MACs with signalStrength.
    let body = json!({"wifiAccessPoints": [
        {"macAddress": mac_colons(1).to_lowercase(), "signalStrength": -50},
        {"macAddress": mac_colons(2).to_lowercase(), "signalStrength": -50}]});
    let r = locate(&app, uri, Some(LONDON), body).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json().get("fallback").is_none());
    // Item 4, new geoclue: per-cell radioType and Wi-Fi age.
    let body = json!({
        "cellTowers": [{"radioType": "gsm", "cellId": 1234, "mobileCountryCode": 234,
                        "mobileNetworkCode": 30, "locationAreaCode": 20}],
        "wifiAccessPoints": [{"macAddress": mac_colons(1), "signalStrength": -50, "age": 3000},
                             {"macAddress": mac_colons(2), "signalStrength": -60, "age": 1000}]});
    let r = locate(&app, uri, Some(LONDON), body).await;
    assert_eq!(r.status, StatusCode::OK);
    let accuracy = r.json()["accuracy"].as_f64().unwrap();
    assert!(accuracy <= 500.0, "the WiFi answer: {}", r.json());
    // Error parsing uses error.message only.
    let r = locate(&app, uri, Some(NOWHERE), json!({})).await;
    assert_eq!(r.json()["error"]["message"], json!("Not found"));
}

async fn client_microg(fx: Fx) {
    fixture_keys(&fx).await;
    put_wifi(&fx, vec![(1, fresh(P0)), (2, fresh((51.5001, -0.1)))]).await;
    put_area(
        &fx,
        AreaKey {
            radio: Radio::Lte,
            mcc: 234,
            mnc: 30,
            lac: 40,
        },
        P0,
        20_000,
        "GB",
    )
    .await;
    let app = app(&fx);
    let headers = [
        ("content-type", "application/json"),
        (
            "user-agent",
            "microG/0.3 (Linux; Android 14; com.google.android.gms)",
        ),
        ("x-ichnaea-contribute-opt-in", "1"),
        ("x-forwarded-for", LONDON),
    ];
    // Item 5: Wi-Fi with SSIDs, fallbacks {lacf: false, ipf: false}.
    let wifi = |ids: &[usize]| {
        json!({
            "considerIp": true,
            "fallbacks": {"lacf": false, "ipf": false},
            "wifiAccessPoints": ids.iter().map(|i| json!({
                "macAddress": mac_colons(*i).to_lowercase(), "age": 1200, "channel": 11,
                "frequency": 2462, "signalStrength": -65, "ssid": format!("net-{i}")
            })).collect::<Vec<_>>()
        })
    };
    let r = send_app(
        &app,
        Method::POST,
        T,
        &headers,
        wifi(&[1, 2]).to_string().into_bytes(),
    )
    .await;
    assert_position(&r, (51.50005, -0.1), 10.0, None);
    // Unknown networks: the 404 envelope, not GeoIP (ipf false).
    let r = send_app(
        &app,
        Method::POST,
        T,
        &headers,
        wifi(&[8, 9]).to_string().into_bytes(),
    )
    .await;
    assert_not_found(&r);
    // Single-cell query with lacf true: the area answers.
    let cell = json!({
        "radioType": "lte", "homeMobileCountryCode": 234, "homeMobileNetworkCode": 30,
        "fallbacks": {"lacf": true, "ipf": false}, "considerIp": false,
        "cellTowers": [{"mobileCountryCode": 234, "mobileNetworkCode": 30, "locationAreaCode": 40,
                        "cellId": 77, "psc": 11, "age": 500, "signalStrength": -90}]
    });
    let r = send_app(
        &app,
        Method::POST,
        T,
        &headers,
        cell.to_string().into_bytes(),
    )
    .await;
    assert_position(&r, P0, 50_000.0, Some("lacf"));
}

async fn client_neostumbler(fx: Fx) {
    fixture_keys(&fx).await;
    put_blue(&fx, vec![(1, fresh(P0)), (2, fresh((51.5003, -0.1)))]).await;
    let nr = CellKey {
        radio: Radio::Nr,
        mcc: 262,
        mnc: 1,
        lac: 16_000_000,
        cid: 68_000_000_000,
    };
    put_cells(
        &fx,
        vec![(
            nr,
            StationFields {
                radius: Some(800),
                ..fresh((52.52, 13.405))
            },
        )],
    )
    .await;
    let app = app(&fx);
    let headers = [
        ("content-type", "application/json"),
        ("user-agent", "NeoStumbler/35"),
    ];
    // Item 6: bluetoothBeacons with extra members and negative ages.
    let body = json!({"considerIp": false, "bluetoothBeacons": [
        {"macAddress": mac_colons(1).to_lowercase(), "beaconType": 533, "id1": "x", "age": -800, "signalStrength": -70},
        {"macAddress": mac_colons(2).to_lowercase(), "id2": "y", "age": 1200, "signalStrength": null}
    ]});
    let r = send_app(
        &app,
        Method::POST,
        T,
        &headers,
        body.to_string().into_bytes(),
    )
    .await;
    assert_near(&r, (51.50015, -0.1), 20.0);
    // nr cells with 36-bit cell ids, string duplicates and arfcn.
    let body = json!({"considerIp": false, "cellTowers": [
        {"radioType": "nr", "mobileCountryCode": 262, "mobileCountryCodeStr": "262",
         "mobileNetworkCode": 1, "mobileNetworkCodeStr": "01", "locationAreaCode": 16_000_000,
         "cellId": 68_000_000_000i64, "primaryScramblingCode": 600, "arfcn": 636_666,
         "signalStrength": -95, "timingAdvance": 1000, "age": -20}
    ]});
    let r = send_app(
        &app,
        Method::POST,
        T,
        &headers,
        body.to_string().into_bytes(),
    )
    .await;
    assert_position(&r, (52.52, 13.405), 1000.0, None);
    let r = send_app(
        &app,
        Method::POST,
        "/v1/country?key=test",
        &headers,
        body.to_string().into_bytes(),
    )
    .await;
    assert_country(&r, "DE", "Germany", None);
    // The Bluetooth query used only networks seen today: no report. The cell
    // query's area was not used, so it is reported, with the nr cell as sent.
    let items = queued(&fx).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let cell = &items[0]["report"]["cellTowers"][0];
    assert_eq!(cell["radioType"], json!("nr"));
    assert_eq!(cell["cellId"], json!(68_000_000_000i64));
    assert_eq!(cell["locationAreaCode"], json!(16_000_000));
    assert_eq!(cell["primaryScramblingCode"], json!(600));
    assert_eq!(cell["age"], json!(-20));
    assert!(items[0]["report"].get("bluetoothBeacons").is_none());
}

async fn client_country_requests(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    let c = "/v1/country?key=test";
    // Item 9: with and without a body; X-Forwarded-For absent or multi-valued.
    let r = send_app(
        &app,
        Method::GET,
        c,
        &[("x-forwarded-for", LONDON)],
        Vec::new(),
    )
    .await;
    assert_country(&r, "GB", "United Kingdom", None);
    let r = locate(&app, c, Some(LONDON), json!({"considerIp": true})).await;
    assert_country(&r, "GB", "United Kingdom", None);
    let r = locate(
        &app,
        c,
        Some("67.43.156.1,81.2.69.192, 127.0.0.2"),
        json!({}),
    )
    .await;
    assert_country(&r, "GB", "United Kingdom", None);
    let r = locate(&app, c, Some("67.43.156.1"), json!({})).await;
    assert_country(&r, "BT", "Bhutan", None);
    let r = locate(&app, c, Some("2a02:ffc0::7"), json!({})).await;
    assert_country(&r, "GI", "Gibraltar", None);
    assert_not_found(&locate(&app, c, None, json!({})).await);
    assert_not_found(&send_app(&app, Method::GET, c, &[], Vec::new()).await);
}

#[test]
fn test_database_answers_the_spec_blocks() {
    let db = ichnaea_web::GeoIp::from_bytes(crate::mmdb::test_city_db()).expect("test mmdb");
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let london = db.record(ip("81.2.69.192")).expect("London record");
    assert_eq!(london.country_code.as_deref(), Some("GB"), "{london:?}");
    assert_eq!(london.city_geoname_id, Some(2_643_743));
    assert!(london.has_subdivision);
    let loc = db.locate(ip("81.2.69.207")).expect("London location");
    assert_eq!((loc.latitude, loc.longitude), (51.5142, -0.0931));
    assert_eq!(
        (loc.radius, loc.region_radius, loc.score),
        (40_000.0, 543_000.0, 0.8)
    );
    assert_eq!(loc.region_name, Some("United Kingdom"));
    assert_eq!(
        db.locate(ip("81.2.69.144")).map(|l| l.radius),
        Some(3_000.0)
    );
    assert_eq!(
        db.locate(ip("67.43.156.1")).map(|l| (l.radius, l.score)),
        Some((190_000.0, 0.9))
    );
    assert_eq!(
        db.locate(ip("2a02:ffc0::1")).map(|l| l.radius),
        Some(3_000.0)
    );
    for none in ["127.0.0.1", "81.2.69.208", "2.2.3.1", "::1", "8.8.8.8"] {
        assert_eq!(db.locate(ip(none)), None, "{none}");
    }
    let status = db.status(Utc::now());
    assert_eq!(status.version.as_deref(), Some("2022-01-06T16:20:21Z"));
    assert!(status.loaded);
    // Other database types are refused.
    let country = crate::mmdb::build("GeoLite2-Country", 0, &[]);
    assert!(ichnaea_web::GeoIp::from_bytes(country).is_err());
    assert!(ichnaea_web::GeoIp::from_bytes(b"garbage".to_vec()).is_err());
}

// ---- locate §8 cases otherwise only covered by core unit tests ----------------
//
// T-M1 (reference distances of §7.1) is pure geodesy with no observable
// counterpart in an HTTP answer, and the `region(lat, lon)` examples of T-M2 are
// used only when stations are updated, never by the locate APIs: both stay core
// unit tests.

/// A 200 position whose rounded coordinates are within 1e-7° of (lat, lon)
/// (and 1 m, untagged) and whose accuracy is within 1 m of `accuracy`.
fn assert_exact(r: &Reply, (lat, lon): (f64, f64), accuracy: f64) {
    assert_position(r, (lat, lon), accuracy, None);
    let body = r.json();
    let got_lat = body["location"]["lat"].as_f64().unwrap();
    let got_lon = body["location"]["lng"].as_f64().unwrap();
    assert!(
        (got_lat - lat).abs() <= 1.000_001e-7 && (got_lon - lon).abs() <= 1.000_001e-7,
        "{body}: want ({lat}, {lon})"
    );
}

fn accuracy_of(r: &Reply) -> f64 {
    r.json()["accuracy"].as_f64().unwrap()
}

async fn t_w7_minpack_fidelity(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    put_wifi(
        &fx,
        (0..4)
            .map(|i| {
                let f = i as f64;
                (i, fresh((P0.0 + f * 0.0001, P0.1 + f * 0.00012)))
            })
            .collect(),
    )
    .await;
    let body = json!({"wifiAccessPoints": [
        {"macAddress": mac_hex(0), "signalStrength": -10, "age": 0},
        {"macAddress": mac_hex(1), "signalStrength": -40, "age": 8000},
        {"macAddress": mac_hex(2), "signalStrength": -70, "age": 16000},
        {"macAddress": mac_hex(3), "signalStrength": -100}]});
    let r = locate(&app, T, None, body).await;
    assert_exact(&r, (51.5000009, -0.0999994), 39.51);
    assert_eq!((accuracy_of(&r) * 100.0).round() / 100.0, 39.51);
    // The initial weighted mean is not the answer.
    let body = r.json();
    assert_ne!(
        (
            body["location"]["lat"].as_f64(),
            body["location"]["lng"].as_f64()
        ),
        (Some(51.5000072), Some(-0.0999913))
    );
}

async fn t_w8_high_scores_and_signals(fx: Fx) {
    fixture_keys(&fx).await;
    // The result score (≈ 1.2288) is not part of the answer; that it is ≥ 1 shows
    // in the fallback gate (T-F6): a satisfying result keeps the provider idle.
    let provider = start_provider(200, PROVIDER_OK).await;
    add_key(&fx, fallback_key("fbkey", provider.url())).await;
    let app = app(&fx);
    put_wifi(
        &fx,
        vec![
            (
                0,
                StationFields {
                    samples: Some(50),
                    ..fresh(P0)
                },
            ),
            (
                1,
                StationFields {
                    samples: Some(100),
                    ..fresh((51.5, -0.09999))
                },
            ),
        ],
    )
    .await;
    let body = json!({"wifiAccessPoints": [
        {"macAddress": mac_hex(0), "signalStrength": -60},
        {"macAddress": mac_hex(1), "signalStrength": -80}]});
    assert_exact(
        &locate(&app, T, None, body.clone()).await,
        (51.5, -0.099996),
        10.0,
    );
    assert_exact(
        &locate(&app, "/v1/geolocate?key=fbkey", None, body).await,
        (51.5, -0.099996),
        10.0,
    );
    assert_eq!(provider.count(), 0, "score > 1 satisfies the query");
}

async fn t_w9_signals_weight_the_position(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    put_wifi(
        &fx,
        vec![
            (0, fresh(P0)),
            (1, fresh((51.50001, -0.1))),
            (2, fresh((51.50002, -0.1))),
        ],
    )
    .await;
    let body = json!({"wifiAccessPoints": [
        {"macAddress": mac_hex(0), "signalStrength": -50},
        {"macAddress": mac_hex(1)},
        {"macAddress": mac_hex(2), "signalStrength": -130}]});
    assert_exact(&locate(&app, T, None, body).await, (51.500005, -0.1), 10.0);
}

async fn t_w11_permanently_blocked_station(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    let blocked = |count| StationFields {
        created: Some(now() - Duration::days(120)),
        block_last: Some(now().date() - Duration::days(7)),
        block_count: Some(count),
        ..fresh((51.5001, -0.1))
    };
    // block_count 4 ≥ round(120 / 30): blocked, one usable station left → 404.
    put_wifi(&fx, vec![(0, fresh(P0)), (1, blocked(4))]).await;
    assert_not_found(&locate(&app, T, None, wifi_body(&[0, 1])).await);
    // block_count 3: usable → one result. Its score weights the mean: first
    // collection day = block_last (7 days ago) → score 0.35 against 0.05 of the
    // fresh station → lat 51.5 + 0.0001 · 0.35 / 0.4 = 51.5000875.
    put_wifi(&fx, vec![(2, fresh(P0)), (3, blocked(3))]).await;
    assert_exact(
        &locate(&app, T, None, wifi_body(&[2, 3])).await,
        (51.5000875, -0.1),
        10.0,
    );
}

async fn t_w13_bluetooth_signals(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    put_blue(
        &fx,
        vec![
            (0, fresh(P0)),
            (1, fresh((51.50001, -0.1))),
            (2, fresh((51.50002, -0.1))),
        ],
    )
    .await;
    let body = json!({"bluetoothBeacons": [
        {"macAddress": mac_hex(0), "signalStrength": -50},
        {"macAddress": mac_hex(1), "signalStrength": -150},
        {"macAddress": mac_hex(2)}]});
    assert_exact(&locate(&app, T, None, body).await, (51.5000035, -0.1), 10.0);
}

async fn t_w14_large_cluster(fx: Fx) {
    fixture_keys(&fx).await;
    // The score and the used networks are not part of the answer, so the
    // stations are laid out to make both observable: the 20 lowest-scored
    // networks (score 0.025 each: one sample, modified 90 days ago) sit at P0,
    // the 10 others (score 0.2 each: 4 samples, fresh) 11 m north. Only the
    // 20 enter the aggregate → exactly P0; the result score is the sum of all
    // 30 (2.5 ≥ 1, not the sample's 0.5) → the fallback provider is not asked.
    let provider = start_provider(200, PROVIDER_OK).await;
    add_key(&fx, fallback_key("fbkey", provider.url())).await;
    let app = app(&fx);
    let old = now() - Duration::days(90);
    let low = StationFields {
        created: Some(old),
        modified: Some(old),
        last_seen: Some(old.date()),
        ..fresh(P0)
    };
    let high = StationFields {
        samples: Some(4),
        ..fresh((51.5001, -0.1))
    };
    let rows: Vec<(usize, StationFields)> = (0..30)
        .map(|i| (i, if i < 20 { low.clone() } else { high.clone() }))
        .collect();
    put_wifi(&fx, rows).await;
    let all: Vec<usize> = (0..30).collect();
    assert_exact(&locate(&app, T, None, wifi_body(&all)).await, P0, 10.0);
    assert_exact(
        &locate(&app, "/v1/geolocate?key=fbkey", None, wifi_body(&all)).await,
        P0,
        10.0,
    );
    assert_eq!(provider.count(), 0, "score of all 30 networks ≥ 1");
    // Control: the 20 low-scored networks alone (score 0.5) do ask the provider.
    let low_ids: Vec<usize> = (0..20).collect();
    assert_position(
        &locate(&app, "/v1/geolocate?key=fbkey", None, wifi_body(&low_ids)).await,
        (1.0, 1.0),
        100.0,
        None,
    );
    assert_eq!(provider.count(), 1);
}

async fn t_n11_out_of_range_cell_fields_are_nulled(fx: Fx) {
    // The normalised cell fields show in the request to the external provider
    // (ichnaea format: primaryScramblingCode, timingAdvance, signalStrength).
    let provider = start_provider(200, PROVIDER_OK).await;
    add_key(&fx, fallback_key("fbkey", provider.url())).await;
    let app = app(&fx);
    let cell = |radio: &str, cid: u64, extra: Value| {
        let mut c = cell_json(radio, 234, 10, cid);
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let body = json!({"cellTowers": [
        cell("lte", 1, json!({"primaryScramblingCode": 504})),
        cell("lte", 2, json!({"primaryScramblingCode": 503})),
        cell("wcdma", 3, json!({"timingAdvance": 3, "primaryScramblingCode": 511})),
        cell("gsm", 4, json!({"signalStrength": -40, "timingAdvance": 3})),
    ]});
    let r = locate(&app, "/v1/geolocate?key=fbkey", None, body).await;
    assert_position(&r, (1.0, 1.0), 100.0, None);
    let calls = provider.requests();
    assert_eq!(calls.len(), 1);
    let cells = calls[0].json()["cellTowers"].as_array().unwrap().clone();
    let by_cid = |cid: u64| {
        cells
            .iter()
            .find(|c| c["cellId"] == json!(cid))
            .unwrap_or_else(|| panic!("cell {cid} in {cells:?}"))
            .clone()
    };
    let lte_bad = by_cid(1);
    assert!(lte_bad.get("primaryScramblingCode").is_none(), "{lte_bad}");
    assert_eq!(by_cid(2)["primaryScramblingCode"], json!(503));
    let wcdma = by_cid(3);
    assert!(wcdma.get("timingAdvance").is_none(), "{wcdma}");
    assert_eq!(wcdma["primaryScramblingCode"], json!(511));
    let gsm = by_cid(4);
    assert!(gsm.get("signalStrength").is_none(), "{gsm}");
    assert_eq!(gsm["timingAdvance"], json!(3));
}

/// An app whose GeoIP database holds `networks` (City records).
fn app_with_geoip(fx: &Fx, networks: &[(&str, u8, crate::mmdb::Data)]) -> axum::Router {
    let db = crate::mmdb::build("GeoIP2-City", crate::mmdb::BUILD_EPOCH, networks);
    let mut st = state(fx, false);
    st.geoip = Some(Arc::new(
        ichnaea_web::GeoIp::from_bytes(db).expect("custom mmdb"),
    ));
    router(st)
}

async fn t_g7_geoip_radius_rules(fx: Fx) {
    fixture_keys(&fx).await;
    use crate::mmdb::city_record;
    let app = app_with_geoip(
        &fx,
        &[
            (
                "1.2.1.0",
                24,
                city_record(Some("US"), Some((40.0, -100.0, 1100)), None, &[]),
            ),
            (
                "1.2.2.0",
                24,
                city_record(Some("XK"), Some((42.6, 21.0, 11)), None, &[]),
            ),
            (
                "1.2.3.0",
                24,
                city_record(Some("RU"), Some((55.0, 40.0, 100)), None, &["MOS"]),
            ),
            (
                "1.2.4.0",
                24,
                city_record(
                    Some("GB"),
                    Some((51.5142, -0.0931, 1)),
                    Some((2_643_743, "London")),
                    &["ENG"],
                ),
            ),
            (
                "1.2.5.0",
                24,
                city_record(Some("XX"), Some((10.0, 10.0, 5100)), None, &[]),
            ),
            (
                "1.2.6.0",
                24,
                city_record(Some("XX"), Some((10.0, 10.0, 26)), Some((1, "Some")), &[]),
            ),
        ],
    );
    let r = locate(&app, T, Some("1.2.1.1"), json!({})).await;
    assert_exact(&r, (40.0, -100.0), 1_100_000.0);
    assert!(accuracy_of(&r) > 1_000_000.0);
    for (ip, at, accuracy) in [
        ("1.2.2.1", (42.6, 21.0), 11_000.0),
        ("1.2.3.1", (55.0, 40.0), 100_000.0),
        ("1.2.4.1", (51.5142, -0.0931), 1_000.0),
        ("1.2.5.1", (10.0, 10.0), 5_000_000.0),
        ("1.2.6.1", (10.0, 10.0), 25_000.0),
    ] {
        let r = locate(&app, T, Some(ip), json!({})).await;
        assert_exact(&r, at, accuracy);
        assert_eq!(accuracy_of(&r), accuracy, "{ip}");
    }
}

async fn t_m2_mcc_regions_and_region_radii(fx: Fx) {
    fixture_keys(&fx).await;
    let app = app(&fx);
    let c = "/v1/country?key=test";
    // regions_for_mcc(244) = {FI}: an unknown cell of MCC 244 alone answers FI.
    let body = json!({"cellTowers": [cell_json("gsm", 244, 10, 1)]});
    assert_country(&locate(&app, c, None, body).await, "FI", "Finland", None);
    // regions_for_mcc(1) = {} → nothing.
    let body = json!({"cellTowers": [cell_json("gsm", 1, 10, 1)]});
    assert_not_found(&locate(&app, c, None, body).await);
    // region_max_radius is the GeoIP radius of a record with no accuracy
    // radius, subdivision or city: US 2 971 000, LI 14 000, VA 1 000.
    let app = app_with_geoip(
        &fx,
        &[
            (
                "1.2.1.0",
                24,
                city_record_without_radius("US", (40.0, -100.0)),
            ),
            (
                "1.2.2.0",
                24,
                city_record_without_radius("LI", (47.16, 9.55)),
            ),
            (
                "1.2.3.0",
                24,
                city_record_without_radius("VA", (41.9029, 12.4534)),
            ),
        ],
    );
    for (ip, at, accuracy) in [
        ("1.2.1.1", (40.0, -100.0), 2_971_000.0),
        ("1.2.2.1", (47.16, 9.55), 14_000.0),
        ("1.2.3.1", (41.9029, 12.4534), 1_000.0),
    ] {
        let r = locate(&app, T, Some(ip), json!({})).await;
        assert_exact(&r, at, accuracy);
        assert_eq!(accuracy_of(&r), accuracy, "{ip}");
    }
}

/// A City record with a location but no `accuracy_radius`.
fn city_record_without_radius(code: &str, (lat, lon): (f64, f64)) -> crate::mmdb::Data {
    use crate::mmdb::Data;
    Data::map([
        ("country", Data::map([("iso_code", Data::str(code))])),
        (
            "location",
            Data::map([
                ("latitude", Data::Double(lat)),
                ("longitude", Data::Double(lon)),
            ]),
        ),
    ])
}

// ---- a locked database ------------------------------------------------------------

/// On SQLite, every WAL read lock held by someone else makes a new
/// read wait ~10 s whatever the busy timeout. A locate request then answers
/// within its read timeout (500 ms) from GeoIP, as when the database is down,
/// and a request that needs no station read is served meanwhile; once the
/// lock is gone, stations answer again. The old inline read path held the
/// request (and its runtime thread) for those ~10 s.
async fn locked_database_bounds_locate_reads(fx: Fx) {
    let Some(pool) = fx.store.sqlite_pool() else {
        return; // the inline read path is SQLite's
    };
    let path = pool.connect_options().get_filename().to_path_buf();
    fixture_keys(&fx).await;
    put_wifi(&fx, vec![(1, fresh(P0)), (2, fresh((51.5001, -0.1)))]).await;
    let app = app(&fx);
    let from_stations = |r: &Reply| {
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{:?}",
            String::from_utf8_lossy(&r.body)
        );
        let lat = r.json()["location"]["lat"].as_f64().unwrap();
        assert!(
            (51.4999..51.5002).contains(&lat),
            "{:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json().get("fallback"), None);
    };
    from_stations(&locate(&app, T, Some(LONDON), wifi_body(&[1, 2])).await);

    let lock = ichnaea_testkit::sqlite_lock::WalReadersLocked::hold(&path);
    let start = std::time::Instant::now();
    let (locked, other) = tokio::join!(
        locate(&app, T, Some(LONDON), wifi_body(&[1, 2])),
        locate(&app, "/v1/country?key=test", Some(LONDON), json!({})),
    );
    let took = start.elapsed();
    let mut with_ipf = london_body();
    with_ipf["fallback"] = json!("ipf");
    assert_json_200(&locked, &with_ipf);
    assert_country(&other, "GB", "United Kingdom", None);
    assert!(
        took < std::time::Duration::from_secs(3),
        "both answered after {took:?}"
    );
    // While the stuck read still runs, lookups fail at once.
    let start = std::time::Instant::now();
    assert_json_200(
        &locate(&app, T, Some(LONDON), wifi_body(&[1, 2])).await,
        &with_ipf,
    );
    assert!(start.elapsed() < std::time::Duration::from_millis(400));

    drop(lock);
    // The abandoned read ends (SQLite gives up after its ~10 s of retries or
    // succeeds once the lock is gone); then stations answer again.
    let start = std::time::Instant::now();
    loop {
        let r = locate(&app, T, Some(LONDON), wifi_body(&[1, 2])).await;
        if r.json().get("fallback").is_none() {
            from_stations(&r);
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            String::from_utf8_lossy(&r.body)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
