//! Submit API cases of api §14 and the real clients of spec clients.md,
//! through the real router, on both backends.

use std::sync::Arc;

use axum::http::{Method, StatusCode, header};
use chrono::Utc;
use ichnaea_core::ApiKey;
use ichnaea_core::queues::UPDATE_INCOMING;
use ichnaea_testkit::{PrivateRedis, gzip};
use ichnaea_web::router;
use serde_json::{Value, json};

use crate::{Fx, Reply, send_app, state};

crate::backend_tests!(
    case_41_anonymous_report_is_queued_as_sent,
    case_42_known_key_is_counted_and_named,
    case_43_unknown_and_malformed_keys_are_anonymous,
    case_44_position_sources,
    case_45_empty_bodies_are_parse_errors_without_details,
    case_46_tower_collector_empty_object_is_accepted,
    case_47_nothing_to_queue_is_still_success,
    case_48_51_type_errors_fail_the_request,
    validation_errors_are_capped,
    at_most_10000_reports_are_queued_per_request,
    case_49_timestamps,
    case_50_52_radio_inheritance_and_unknown_members,
    case_53_v1_geosubmit,
    case_55_56_57_v1_submit,
    case_58_sampling_out_enqueues_nothing,
    case_59_daily_limit_per_endpoint,
    case_34_35_limit_precedes_parsing,
    daily_limit_is_exact_under_concurrency,
    full_backlog_is_503_with_retry_after,
    options_and_methods,
    decode_errors,
    client_neostumbler_gzip_batch,
    client_tower_collector,
    client_geoclue_old_and_new,
    case_64_queue_backend_down_is_503,
);

pub(crate) async fn send(
    fx: &Fx,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    send_app(&router(state(fx, false)), method, uri, headers, body).await
}

async fn post(fx: &Fx, uri: &str, body: Value) -> Reply {
    send(
        fx,
        Method::POST,
        uri,
        &[("content-type", "application/json")],
        body.to_string().into_bytes(),
    )
    .await
}

/// Every item waiting in `update_incoming` (leased, not acknowledged).
pub(crate) async fn queued(fx: &Fx) -> Vec<Value> {
    let mut items = Vec::new();
    while let Some(batch) = fx
        .queue
        .lease(
            UPDATE_INCOMING,
            100_000,
            std::time::Duration::from_secs(600),
        )
        .await
        .unwrap()
    {
        items.extend(
            batch
                .items
                .iter()
                .map(|i| serde_json::from_slice::<Value>(i).unwrap()),
        );
    }
    items
}

pub(crate) async fn add_key(fx: &Fx, key: ApiKey) {
    fx.store.insert_api_key(&key).await.unwrap();
}

pub(crate) fn limited(name: &str, maxreq: i64) -> ApiKey {
    ApiKey {
        maxreq: Some(maxreq),
        ..ApiKey::new(name)
    }
}

pub(crate) fn error_reason(r: &Reply) -> String {
    r.json()["error"]["errors"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub(crate) fn assert_cors(r: &Reply) {
    assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
    assert_eq!(r.header(header::ACCESS_CONTROL_MAX_AGE), Some("2592000"));
}

fn case41_body() -> Value {
    json!({"items": [{"position": {"latitude": 51.5, "longitude": -0.1}, "wifiAccessPoints": [{"macAddress": "01:23:45:67:89:ab"}]}]})
}

async fn case_41_anonymous_report_is_queued_as_sent(fx: Fx) {
    let before = Utc::now().timestamp_millis();
    let r = post(&fx, "/v2/geosubmit", case41_body()).await;
    let after = Utc::now().timestamp_millis();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({}));
    assert_eq!(r.header(header::CONTENT_TYPE), Some("application/json"));
    assert_cors(&r);
    let items = queued(&fx).await;
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["api_key"], Value::Null);
    assert_eq!(item["source"], json!("gnss"));
    let ts = item["report"]["timestamp"].as_i64().unwrap();
    assert!(
        (before..=after).contains(&ts),
        "{ts} not in [{before}, {after}]"
    );
    assert_eq!(
        item["report"]["position"],
        json!({"latitude": 51.5, "longitude": -0.1})
    );
    assert_eq!(
        item["report"]["wifiAccessPoints"],
        json!([{"macAddress": "01:23:45:67:89:ab"}])
    );
    assert_eq!(item["report"]["bluetoothBeacons"], json!([]));
    assert_eq!(item["report"]["cellTowers"], json!([]));
}

async fn case_42_known_key_is_counted_and_named(fx: Fx) {
    add_key(&fx, ApiKey::new("test")).await;
    let r = send(
        &fx,
        Method::POST,
        "/v2/geosubmit?key=test",
        &[("x-forwarded-for", "10.0.0.1, 81.2.69.192, ::1")],
        case41_body().to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(queued(&fx).await[0]["api_key"], json!("test"));
    let now = Utc::now();
    assert_eq!(
        fx.counters
            .requests("test", "v2.geosubmit", now)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        fx.counters
            .unique_users("submit", "test", now)
            .await
            .unwrap(),
        1
    );
}

async fn case_43_unknown_and_malformed_keys_are_anonymous(fx: Fx) {
    for uri in [
        "/v2/geosubmit?key=abcdefg",
        "/v2/geosubmit?key=invalid_key",
        "/v2/geosubmit?key=",
    ] {
        let r = post(&fx, uri, case41_body()).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
    }
    let items = queued(&fx).await;
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i["api_key"].is_null()));
    let now = Utc::now();
    assert_eq!(
        fx.counters
            .requests("abcdefg", "v2.geosubmit", now)
            .await
            .unwrap(),
        0
    );
}

async fn case_44_position_sources(fx: Fx) {
    for (sent, source, kept) in [
        ("fused", "fused", json!("fused")),
        ("GNSS", "gnss", json!("gnss")),
        ("gps", "gnss", Value::Null),
    ] {
        let body = json!({"items": [{"position": {"latitude": 1.0, "longitude": 2.0, "source": sent}, "cellTowers": [{"cellId": 1}]}]});
        assert_eq!(
            post(&fx, "/v2/geosubmit", body).await.status,
            StatusCode::OK
        );
        let items = queued(&fx).await;
        assert_eq!(items[0]["source"], json!(source), "{sent}");
        assert_eq!(
            items[0]["report"]["position"]
                .get("source")
                .cloned()
                .unwrap_or(Value::Null),
            kept,
            "{sent}"
        );
    }
}

async fn case_45_empty_bodies_are_parse_errors_without_details(fx: Fx) {
    for (method, uri) in [
        (Method::POST, "/v2/geosubmit"),
        (Method::GET, "/v2/geosubmit"),
        (Method::POST, "/v1/submit"),
        (Method::GET, "/v1/geosubmit"),
    ] {
        let r = send(&fx, method.clone(), uri, &[], Vec::new()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {uri}");
        assert_eq!(
            r.json(),
            json!({"error": {"errors": [{"domain": "global", "reason": "parseError", "message": "Parse Error"}], "code": 400, "message": "Parse Error"}})
        );
        assert_cors(&r);
    }
    let head = send(&fx, Method::HEAD, "/v2/geosubmit", &[], Vec::new()).await;
    assert_eq!(head.status, StatusCode::BAD_REQUEST);
    assert!(head.body.is_empty());
}

async fn case_46_tower_collector_empty_object_is_accepted(fx: Fx) {
    // The spec's original answered 400 {"items": "Required"}; Tower Collector sends
    // `{}` for an empty upload and needs 200, so an object without items is an
    // empty submission.
    let r = post(&fx, "/v2/geosubmit", json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({}));
    assert!(queued(&fx).await.is_empty());
}

async fn case_47_nothing_to_queue_is_still_success(fx: Fx) {
    for body in [
        json!({"items": []}),
        json!({"items": [{"wifiAccessPoints": [{"ssid": "x"}]}]}),
        // Reports whose cells cannot contribute (no identity member) are
        // dropped: a body of this shape once cost 1 GB at 500,000 reports.
        json!({"items": [{"cellTowers": [{}]}, {"radioType": "gsm", "cellTowers": [{}, {"signalStrength": -60}]}]}),
    ] {
        let r = post(&fx, "/v2/geosubmit", body.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{body}");
        assert_eq!(r.json(), json!({}));
    }
    assert!(queued(&fx).await.is_empty());
}

async fn case_48_51_type_errors_fail_the_request(fx: Fx) {
    for (body, path) in [
        (
            json!({"items": [{"position": null, "cellTowers": [{}]}]}),
            "items.0.position",
        ),
        (
            json!({"items": [{"wifiAccessPoints": [{"macAddress": 10}]}]}),
            "items.0.wifiAccessPoints.0.macAddress",
        ),
        (json!({"items": null}), "items"),
        (json!([1]), ""),
        (
            json!({"items": [{"cellTowers": [{"cellId": "abc"}]}, {"wifiAccessPoints": [{"macAddress": "a"}]}]}),
            "items.0.cellTowers.0.cellId",
        ),
    ] {
        let r = post(&fx, "/v2/geosubmit", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_reason(&r), "parseError");
        let validation = r.json()["details"]["validation"].clone();
        assert!(validation.get(path).is_some(), "{body}: {validation}");
        assert!(
            r.json()["error"].get("details").is_none(),
            "details are top level"
        );
    }
    assert!(
        queued(&fx).await.is_empty(),
        "nothing of a failed request is queued"
    );
}

async fn validation_errors_are_capped(fx: Fx) {
    let items: Vec<Value> = (0..500)
        .map(|_| json!({"wifiAccessPoints": [{"macAddress": 1}]}))
        .collect();
    let r = post(&fx, "/v2/geosubmit", json!({ "items": items })).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let validation = r.json()["details"]["validation"].clone();
    let paths = validation.as_object().unwrap();
    assert_eq!(paths.len(), 100, "the first 100 errors are listed");
    assert!(paths.contains_key("items.0.wifiAccessPoints.0.macAddress"));
    assert!(paths.contains_key("items.99.wifiAccessPoints.0.macAddress"));
    assert!(!paths.contains_key("items.100.wifiAccessPoints.0.macAddress"));
    assert!(queued(&fx).await.is_empty());
}

async fn at_most_10000_reports_are_queued_per_request(fx: Fx) {
    let report = json!({"cellTowers": [{"cellId": 1}]});
    let useless = json!({"cellTowers": [{}]});
    let mut items = vec![report.clone(); 10_000];
    items.extend(vec![useless; 5_000]);
    let r = post(&fx, "/v2/geosubmit", json!({ "items": items })).await;
    assert_eq!(r.status, StatusCode::OK, "dropped reports do not count");
    assert_eq!(queued(&fx).await.len(), 10_000);
    items.push(report);
    let r = post(&fx, "/v2/geosubmit", json!({ "items": items })).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["error"]["code"], json!(413));
    assert_cors(&r);
    assert!(queued(&fx).await.is_empty(), "nothing of it queued");
}

async fn case_49_timestamps(fx: Fx) {
    for (sent, kept) in [(1_460_000_000_000i64, true), (146_000_000_000, false)] {
        let body = json!({"items": [{"timestamp": sent, "cellTowers": [{"cellId": 1}]}]});
        assert_eq!(
            post(&fx, "/v2/geosubmit", body).await.status,
            StatusCode::OK
        );
        let ts = queued(&fx).await[0]["report"]["timestamp"]
            .as_i64()
            .unwrap();
        if kept {
            assert_eq!(ts, sent);
        } else {
            assert!(ts > 1_000_000_000_000, "{ts}");
        }
    }
}

async fn case_50_52_radio_inheritance_and_unknown_members(fx: Fx) {
    let body = json!({"items": [{"radioType": "gsm", "xtra_field": 1,
        "position": {"latitude": 1.0, "xtra_field": 2},
        "cellTowers": [{"radioType": "lte", "cellId": 1, "xtra_field": 3}, {"cellId": 2}, {"radioType": "UMTS", "cellId": 3}, {"radioType": "18", "cellId": 4}],
        "wifiAccessPoints": [{"macAddress": "aa", "xtra_field": 4}]}]});
    assert_eq!(
        post(&fx, "/v2/geosubmit", body).await.status,
        StatusCode::OK
    );
    let report = queued(&fx).await[0]["report"].clone();
    let radios: Vec<&str> = report["cellTowers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["radioType"].as_str().unwrap())
        .collect();
    assert_eq!(radios, vec!["lte", "gsm", "wcdma", "gsm"]);
    assert!(report.get("radioType").is_none());
    assert!(!report.to_string().contains("xtra_field"));
}

async fn case_53_v1_geosubmit(fx: Fx) {
    let body = br#"{"items": [{"latitude": 1.5, "longitude": 2.5, "accuracy": NaN, "cellTowers": [{"psc": 7, "primaryScramblingCode": 9, "cellId": 1}]}, {"wifiAccessPoints": [{"macAddress": "ab"}]}]}"#;
    let r = send(&fx, Method::POST, "/v1/geosubmit", &[], body.to_vec()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({}));
    let items = queued(&fx).await;
    assert_eq!(
        items[0]["report"]["position"],
        json!({"latitude": 1.5, "longitude": 2.5})
    );
    assert_eq!(
        items[0]["report"]["cellTowers"],
        json!([{"cellId": 1, "primaryScramblingCode": 7}])
    );
    assert!(items[1]["report"].get("position").is_none(), "case 54");
}

async fn case_55_56_57_v1_submit(fx: Fx) {
    let body = json!({"items": [{"lat": 1.5, "lon": 2.5, "time": "2016-04-07T03:33:20", "wifi": [{"key": "AB:CD:EF:01:23:45", "signal": -70}]},
                                 {"cell": [{"radio": "UMTS", "cid": 1}, {"radio": "foo", "cid": 2}]},
                                 {"lat": 1, "lon": 2, "wifi": [{}]}]});
    let r = post(&fx, "/v1/submit", body).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    assert_eq!(r.header(header::CONTENT_TYPE), None);
    assert_cors(&r);
    let items = queued(&fx).await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["report"]["timestamp"], json!(1_460_000_000_000i64));
    assert_eq!(
        items[0]["report"]["position"],
        json!({"latitude": 1.5, "longitude": 2.5})
    );
    assert_eq!(
        items[0]["report"]["wifiAccessPoints"],
        json!([{"macAddress": "AB:CD:EF:01:23:45", "signalStrength": -70}])
    );
    assert_eq!(
        items[1]["report"]["cellTowers"],
        json!([{"radioType": "wcdma", "cellId": 1}, {"cellId": 2}])
    );
    let bad = post(
        &fx,
        "/v1/submit",
        json!({"items": [{"time": 12345, "wifi": [{"key": "a"}]}]}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.json()["details"]["validation"]
            .get("items.0.time")
            .is_some()
    );
}

async fn case_58_sampling_out_enqueues_nothing(fx: Fx) {
    add_key(
        &fx,
        ApiKey {
            store_sample_submit: Some(0),
            ..ApiKey::new("nosubmit")
        },
    )
    .await;
    add_key(
        &fx,
        ApiKey {
            store_sample_submit: None,
            ..ApiKey::new("nullsample")
        },
    )
    .await;
    for key in ["nosubmit", "nullsample"] {
        let r = post(&fx, &format!("/v2/geosubmit?key={key}"), case41_body()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json(), json!({}));
    }
    assert!(queued(&fx).await.is_empty());
}

async fn case_59_daily_limit_per_endpoint(fx: Fx) {
    add_key(&fx, limited("limited", 2)).await;
    let v0 = json!({"items": [{"lat": 1, "lon": 2, "wifi": [{"key": "ab"}]}]});
    let statuses: Vec<StatusCode> = futures_util::future::join_all(
        (0..3).map(|_| post(&fx, "/v1/submit?key=limited", v0.clone())),
    )
    .await
    .into_iter()
    .map(|r| r.status)
    .collect();
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            StatusCode::NO_CONTENT,
            StatusCode::NO_CONTENT,
            StatusCode::FORBIDDEN
        ]
    );
    let over = post(&fx, "/v1/submit?key=limited", v0).await;
    assert_eq!(over.status, StatusCode::FORBIDDEN);
    assert_eq!(
        over.json(),
        json!({"error": {"errors": [{"domain": "usageLimits", "reason": "dailyLimitExceeded", "message": "You have exceeded your daily limit."}], "code": 403, "message": "You have exceeded your daily limit."}})
    );
    assert_cors(&over);
    // Case 37: another endpoint has its own counter.
    assert_eq!(
        post(&fx, "/v2/geosubmit?key=limited", case41_body())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        fx.counters
            .requests("limited", "v1.submit", Utc::now())
            .await
            .unwrap(),
        4
    );
    assert_eq!(queued(&fx).await.len(), 3);
}

async fn case_34_35_limit_precedes_parsing(fx: Fx) {
    add_key(&fx, limited("k-over", 5)).await;
    let now = Utc::now();
    fx.counters
        .set_requests("k-over", "v2.geosubmit", now, 10)
        .await
        .unwrap();
    let r = send(
        &fx,
        Method::POST,
        "/v2/geosubmit?key=k-over",
        &[],
        b"not json".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(error_reason(&r), "dailyLimitExceeded");
    assert_eq!(
        fx.counters
            .requests("k-over", "v2.geosubmit", now)
            .await
            .unwrap(),
        11
    );
}

async fn daily_limit_is_exact_under_concurrency(fx: Fx) {
    add_key(&fx, limited("burst", 20)).await;
    let app = router(state(&fx, false));
    let body = case41_body().to_string().into_bytes();
    let tasks: Vec<_> = (0..60)
        .map(|_| {
            let app = app.clone();
            let body = body.clone();
            tokio::spawn(async move {
                send_app(&app, Method::POST, "/v2/geosubmit?key=burst", &[], body)
                    .await
                    .status
            })
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::FORBIDDEN => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, refused), (20, 40));
    assert_eq!(queued(&fx).await.len(), 20);
}

async fn full_backlog_is_503_with_retry_after(fx: Fx) {
    let mut st = state(&fx, false);
    st.api.incoming_queue_max = 2;
    let app = router(st);
    let body = json!({"items": [{"cellTowers": [{"cellId": 1}]}, {"cellTowers": [{"cellId": 2}]}]})
        .to_string()
        .into_bytes();
    let first = send_app(&app, Method::POST, "/v2/geosubmit", &[], body.clone()).await;
    assert_eq!(first.status, StatusCode::OK);
    let second = send_app(&app, Method::POST, "/v2/geosubmit", &[], body).await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_reason(&second), "serviceUnavailable");
    assert_eq!(second.header(header::RETRY_AFTER), Some("30"));
    assert_cors(&second);
    assert_eq!(
        queued(&fx).await.len(),
        2,
        "the refused request left nothing behind"
    );
}

async fn options_and_methods(fx: Fx) {
    for uri in ["/v2/geosubmit", "/v1/geosubmit", "/v1/submit"] {
        let r = send(&fx, Method::OPTIONS, uri, &[], Vec::new()).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert!(r.body.is_empty());
        assert_eq!(r.header(header::CONTENT_TYPE), None);
        assert_cors(&r);
        for m in [Method::PUT, Method::PATCH, Method::DELETE] {
            let r = send(&fx, m.clone(), uri, &[], Vec::new()).await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m} {uri}");
            assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
        }
    }
    assert_eq!(
        send(&fx, Method::POST, "/v2/geosubmit/", &[], Vec::new())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn decode_errors(fx: Fx) {
    let body = case41_body().to_string().into_bytes();
    let gz = gzip(&body);
    let ok = send(
        &fx,
        Method::POST,
        "/v2/geosubmit",
        &[("content-encoding", "gzip")],
        gz.clone(),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    for (headers, bytes) in [
        (
            vec![("content-encoding", "gzip")],
            gz[..gz.len() - 2].to_vec(),
        ),
        (vec![("content-encoding", "GZIP")], gz.clone()),
        (
            vec![("content-type", "application/json; charset=utf-8")],
            b"{\"comment\": \"R\xe9sum\xe9\", \"items\": []}".to_vec(),
        ),
        (vec![], b"\xc2\xae".to_vec()),
    ] {
        let r = send(&fx, Method::POST, "/v2/geosubmit", &headers, bytes).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{headers:?}");
        assert!(r.json()["details"]["decode"].is_string(), "{headers:?}");
    }
    let latin = send(
        &fx,
        Method::POST,
        "/v2/geosubmit",
        &[("content-type", "application/json; charset=latin-1")],
        b"{\"comment\": \"R\xe9sum\xe9\", \"items\": []}".to_vec(),
    )
    .await;
    assert_eq!(latin.status, StatusCode::OK);
    assert_eq!(queued(&fx).await.len(), 1);
}

/// A NeoStumbler upload: 950 reports, gzip, unknown members, nr cells with
/// 36-bit ids, BLE ids, negative ages, explicit nulls.
fn neostumbler_batch() -> Value {
    let items: Vec<Value> = (0..950)
        .map(|i| {
            json!({
                "timestamp": 1_700_000_000_000i64 + i,
                "position": {"latitude": 60.17 + i as f64 * 1e-5, "longitude": 24.94, "accuracy": 5.0, "age": -120,
                             "altitude": 20.0, "altitudeAccuracy": 3.0, "heading": 90.0, "pressure": null, "speed": 1.2, "source": "gps"},
                "wifiAccessPoints": [{"macAddress": format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256), "radioType": "802.11ax", "age": -5,
                                      "channel": 36, "frequency": 5180, "signalStrength": -60, "ssid": "net",
                                      "estimatedDistance": {"distance": 4.2, "accuracy": 1.0, "type": "TWO_SIDED"}}],
                "cellTowers": [{"radioType": "nr", "mobileCountryCode": 244, "mobileCountryCodeStr": "244", "mobileNetworkCode": 91,
                                "mobileNetworkCodeStr": "91", "locationAreaCode": 16_777_215, "cellId": 68_719_476_735i64,
                                "primaryScramblingCode": 1007, "serving": 1, "signalStrength": -90, "arfcn": 632_628, "age": 100}],
                "bluetoothBeacons": [{"macAddress": "c0:ff:ee:00:00:01", "beaconType": 533, "id1": "f7826da6", "id2": "1", "id3": "2",
                                      "age": 300, "signalStrength": -70}]
            })
        })
        .collect();
    json!({"items": items})
}

async fn client_neostumbler_gzip_batch(fx: Fx) {
    let body = gzip(neostumbler_batch().to_string().as_bytes());
    let r = send(
        &fx,
        Method::POST,
        "/v2/geosubmit",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("user-agent", "NeoStumbler/24"),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({}));
    let items = queued(&fx).await;
    assert_eq!(items.len(), 950);
    let cell = &items[949]["report"]["cellTowers"][0];
    assert_eq!(cell["radioType"], json!("nr"));
    assert_eq!(cell["cellId"], json!(68_719_476_735i64));
    assert_eq!(cell["locationAreaCode"], json!(16_777_215));
    assert!(cell.get("arfcn").is_none() && cell.get("mobileCountryCodeStr").is_none());
    assert_eq!(items[949]["report"]["position"]["age"], json!(-120));
    assert!(
        items[949]["report"]["wifiAccessPoints"][0]
            .get("estimatedDistance")
            .is_none()
    );
    assert_eq!(items[0]["source"], json!("gnss"));
}

fn tower_collector_batch(n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({"timestamp": 1_700_000_000_000i64 + i as i64, "position": {"latitude": 52.2, "longitude": 21.0, "accuracy": 8.0, "altitude": 100.0, "heading": 0.0, "speed": 0.0, "source": "gps"},
                   "cellTowers": [{"radioType": if i % 2 == 0 { "lte" } else { "nr" }, "mobileCountryCode": 260, "mobileNetworkCode": 2, "locationAreaCode": 58_000,
                                   "cellId": 12_345_678 + i as i64, "primaryScramblingCode": 100, "asu": 40, "signalStrength": -80, "timingAdvance": 3, "arfcn": 1300, "serving": 1}]})
        })
        .collect();
    json!({"items": items})
}

async fn client_tower_collector(fx: Fx) {
    let headers = [
        ("content-type", "application/json; charset=utf-8"),
        ("user-agent", "TowerCollector/3.0"),
    ];
    let r = send(
        &fx,
        Method::POST,
        "/v2/geosubmit",
        &headers,
        tower_collector_batch(85).to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "exactly 200, not 202");
    assert_eq!(queued(&fx).await.len(), 85);
    for body in ["{}", r#"{"items":[]}"#] {
        let r = send(
            &fx,
            Method::POST,
            "/v2/geosubmit",
            &headers,
            body.as_bytes().to_vec(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{body}");
    }
}

async fn client_geoclue_old_and_new(fx: Fx) {
    add_key(&fx, ApiKey::new("geoclue")).await;
    let old = json!({"items": [{"lat": 48.85, "lon": 2.35, "accuracy": 20.0, "altitude": 35.0, "time": "2024-05-01T10:00:00+0200", "radioType": "gsm",
        "wifi": [{"key": "00:11:22:33:44:55", "signal": -60, "frequency": 2412}, {"key": "00:11:22:33:44:56", "signal": -70, "frequency": 2437}],
        "cell": [{"radio": "gsm", "cid": 1234, "mcc": 208, "mnc": 1, "lac": 5678}]}]});
    let r = send(
        &fx,
        Method::POST,
        "/v1/submit?key=geoclue",
        &[
            ("x-nickname", "someone"),
            ("content-type", "application/json"),
        ],
        old.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let new = json!({"items": [{"timestamp": 1_714_557_600_000i64, "position": {"latitude": 48.85, "longitude": 2.35, "accuracy": 20.0, "altitude": 35.0, "speed": 0.0},
        "wifiAccessPoints": [{"macAddress": "00:11:22:33:44:55", "signalStrength": -60, "frequency": 2412, "age": 10}],
        "cellTowers": [{"radioType": "lte", "cellId": 1234, "mobileCountryCode": 208, "mobileNetworkCode": 1, "locationAreaCode": 5678}]}]});
    let r = send(
        &fx,
        Method::POST,
        "/v2/geosubmit?key=geoclue",
        &[("x-nickname", "someone"), ("user-agent", "geoclue/2.7.2")],
        new.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let items = queued(&fx).await;
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0]["report"]["timestamp"],
        json!(1_714_557_600_000i64),
        "offset ignored: wall clock read as UTC"
    );
    assert_eq!(
        items[0]["report"]["cellTowers"][0]["radioType"],
        json!("gsm")
    );
    assert!(items.iter().all(|i| i["api_key"] == json!("geoclue")));
    let _ = Arc::new(());
}

async fn case_64_queue_backend_down_is_503(fx: Fx) {
    let body = case41_body().to_string().into_bytes();
    match fx.queue.backend() {
        "redis" => {
            let mut redis = PrivateRedis::start(&["--appendonly", "no"]);
            let queue = ichnaea_queue::Queue::redis(redis.url(), "").await.unwrap();
            let down = Fx {
                queue,
                ..fx.clone()
            };
            let app = router(state(&down, false));
            assert_eq!(
                send_app(&app, Method::POST, "/v2/geosubmit", &[], body.clone())
                    .await
                    .status,
                StatusCode::OK
            );
            redis.stop();
            let r = send_app(&app, Method::POST, "/v2/geosubmit", &[], body).await;
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(error_reason(&r), "serviceUnavailable");
            assert_cors(&r);
        }
        _ => {
            let app = router(state(&fx, false));
            fx.store.close().await;
            let r = send_app(&app, Method::POST, "/v2/geosubmit", &[], body).await;
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(error_reason(&r), "serviceUnavailable");
            assert_eq!(r.header(header::RETRY_AFTER), Some("30"));
            assert_cors(&r);
        }
    }
}
