//! The locate models through the router: `locate_model = calibrated` (the
//! default) answers with circles of the stated confidence and echoes an
//! optional `"confidence"` member (50–99; anything else is a parseError);
//! `classic` keeps the original's answers, scaled only when a confidence is
//! asked. Privacy rules hold under the calibrated model.

use axum::http::{Method, StatusCode};
use chrono::{Duration, Utc};
use ichnaea_core::geo::{distance, latitude_add, longitude_add};
use ichnaea_core::locate::LocateModel;
use ichnaea_core::station::{BlueStation, StationFields, WifiStation};
use ichnaea_core::{ApiKey, Mac};
use ichnaea_web::api::ApiSettings;
use ichnaea_web::router;
use serde_json::{Value, json};

use crate::submit::{add_key, error_reason};
use crate::{Fx, Reply, send_app, state};

crate::backend_tests!(
    calibrated_circles_follow_the_confidence,
    confidence_outside_50_to_99_is_a_parse_error,
    classic_model_keeps_its_answer_and_scales_on_request,
    calibrated_keeps_the_wifi_privacy_rule,
    calibrated_answers_from_one_known_beacon,
);

const LAT: f64 = 52.52;
const LON: f64 = 13.405;

async fn app(fx: &Fx, model: LocateModel) -> axum::Router {
    if fx.store.api_key("conf").await.unwrap().is_none() {
        add_key(fx, ApiKey::new("conf")).await;
    }
    let mut st = state(fx, false);
    st.api = ApiSettings {
        locate_model: model,
        ..st.api
    };
    router(st)
}

async fn post(app: &axum::Router, body: Value) -> Reply {
    send_app(
        app,
        Method::POST,
        "/v1/geolocate?key=conf",
        &[("content-type", "application/json")],
        body.to_string().into_bytes(),
    )
    .await
}

fn mac(i: u8) -> Mac {
    Mac([0x3c, 0xa6, 0x2f, 0, 0, i])
}

fn mac_text(i: u8) -> String {
    format!("3c:a6:2f:00:00:{i:02x}")
}

/// A well-known station `east` metres east of the centre.
fn station(east: f64) -> StationFields {
    let now = Utc::now().naive_utc();
    StationFields {
        lat: Some(LAT),
        lon: Some(longitude_add(LAT, LON, east)),
        radius: Some(60),
        samples: Some(400),
        created: Some(now - Duration::days(90)),
        modified: Some(now),
        last_seen: Some(now.date()),
        ..StationFields::default()
    }
}

async fn put_wifi(fx: &Fx, stations: &[(u8, f64)]) {
    let rows: Vec<WifiStation> = stations
        .iter()
        .map(|&(i, east)| WifiStation {
            mac: mac(i),
            fields: station(east),
        })
        .collect();
    fx.store.upsert_wifi_stations(&rows).await.unwrap();
}

fn wifi_body(entries: &[(u8, i64)], extra: Value) -> Value {
    let mut body = json!({
        "considerIp": false,
        "wifiAccessPoints": entries
            .iter()
            .map(|&(i, s)| json!({"macAddress": mac_text(i), "signalStrength": s}))
            .collect::<Vec<_>>(),
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn accuracy(r: &Reply) -> f64 {
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["accuracy"].as_f64().unwrap()
}

async fn calibrated_circles_follow_the_confidence(fx: Fx) {
    put_wifi(&fx, &[(1, 0.0), (2, 30.0), (3, 60.0)]).await;
    let app = app(&fx, LocateModel::Calibrated).await;
    let entries = [(1, -60), (2, -70), (3, -80)];
    let plain = post(&app, wifi_body(&entries, json!({}))).await;
    let a95 = accuracy(&plain);
    // No confidence asked: the response has the classic shape.
    let keys: Vec<String> = plain.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["accuracy", "location"]);
    let v = plain.json();
    let (lat, lng) = (
        v["location"]["lat"].as_f64().unwrap(),
        v["location"]["lng"].as_f64().unwrap(),
    );
    // The strongest network (the westmost) pulls the fix west of the middle.
    assert!(distance(lat, lng, LAT, LON) < 30.0, "{v}");

    let r68 = post(&app, wifi_body(&entries, json!({"confidence": 68}))).await;
    let a68 = accuracy(&r68);
    assert_eq!(r68.json()["confidence"], 68);
    assert_eq!(r68.json()["location"], v["location"]);
    assert!((a68 / a95 - 0.6167).abs() < 0.01, "{a68} {a95}");
    let r95 = post(&app, wifi_body(&entries, json!({"confidence": 95}))).await;
    assert_eq!(accuracy(&r95), a95);
    assert_eq!(r95.json()["confidence"], 95);
    let r99 = post(&app, wifi_body(&entries, json!({"confidence": 99}))).await;
    assert!(accuracy(&r99) > a95);
}

async fn confidence_outside_50_to_99_is_a_parse_error(fx: Fx) {
    put_wifi(&fx, &[(1, 0.0), (2, 30.0)]).await;
    for model in [LocateModel::Calibrated, LocateModel::Classic] {
        let app = app(&fx, model).await;
        for bad in [
            json!(49),
            json!(100),
            json!(-1),
            json!(95.5),
            json!("95"),
            json!(null),
            json!([95]),
        ] {
            let r = post(
                &app,
                wifi_body(&[(1, -60), (2, -70)], json!({"confidence": bad})),
            )
            .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(error_reason(&r), "parseError", "{bad}");
        }
    }
}

async fn classic_model_keeps_its_answer_and_scales_on_request(fx: Fx) {
    put_wifi(&fx, &[(1, 0.0), (2, 30.0)]).await;
    let app = app(&fx, LocateModel::Classic).await;
    let entries = [(1, -60), (2, -70)];
    let plain = post(&app, wifi_body(&entries, json!({}))).await;
    let a95 = accuracy(&plain);
    let keys: Vec<String> = plain.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["accuracy", "location"]);
    let r68 = post(&app, wifi_body(&entries, json!({"confidence": 68}))).await;
    assert_eq!(r68.json()["location"], plain.json()["location"]);
    assert_eq!(r68.json()["confidence"], 68);
    assert!((accuracy(&r68) / a95 - 0.6167).abs() < 0.01);
}

async fn calibrated_keeps_the_wifi_privacy_rule(fx: Fx) {
    // One known network and one unknown (a `_nomap` or hidden one is never
    // stored): no answer reveals the known network's position.
    put_wifi(&fx, &[(1, 0.0)]).await;
    let app = app(&fx, LocateModel::Calibrated).await;
    let r = post(&app, wifi_body(&[(1, -50), (9, -60)], json!({}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // One network alone is not even a query.
    let r = post(&app, wifi_body(&[(1, -50)], json!({}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Two known networks far apart do not vouch for each other.
    put_wifi(&fx, &[(2, 5_000.0)]).await;
    let r = post(&app, wifi_body(&[(1, -50), (2, -60)], json!({}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn calibrated_answers_from_one_known_beacon(fx: Fx) {
    let beacon = BlueStation {
        mac: mac(7),
        fields: StationFields {
            lat: Some(latitude_add(LAT, LON, 10.0)),
            ..station(0.0)
        },
    };
    fx.store.upsert_blue_stations(&[beacon]).await.unwrap();
    let body = json!({
        "considerIp": false,
        "bluetoothBeacons": [
            {"macAddress": mac_text(7), "signalStrength": -70},
            {"macAddress": mac_text(8), "signalStrength": -80},
        ],
    });
    let calibrated = post(&app(&fx, LocateModel::Calibrated).await, body.clone()).await;
    let acc = accuracy(&calibrated);
    assert!((3.0..=200.0).contains(&acc), "{acc}");
    // The classic model needs two known beacons.
    let classic = post(&app(&fx, LocateModel::Classic).await, body).await;
    assert_eq!(classic.status, StatusCode::NOT_FOUND);
}
