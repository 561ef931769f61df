//! Hostile input, generated (issue 14): property tests of body decoding
//! (gzip, charsets), the JSON coercion rules, the bounded parser, report
//! conversion and the locate query parser — never a panic, errors in the
//! documented shape, results independent of member order — and a bounded
//! HTTP fuzz run of mutated real client bodies (`tests/data/clients/`) through
//! the real router: no 5xx, no panic.
//!
//! Case counts are modest so CI stays fast; `PROPTEST_CASES` raises them for a
//! longer local run, and `ICHNAEA_FUZZ_REQUESTS` the HTTP run (deterministic:
//! seed 14, or `ICHNAEA_FUZZ_SEED`).

use std::io::Write;
use std::path::Path;

use axum::http::{HeaderMap, HeaderValue, Method, header};
use ichnaea_core::geocoder::Geocoder;
use ichnaea_core::locate::query::normalize;
use ichnaea_core::{IncomingItem, ingest};
use ichnaea_web::api::body::{BodyLimits, decode_text, parse_lean};
use ichnaea_web::api::coerce::MAX_ERRORS;
use ichnaea_web::api::convert::{ConvertError, SubmitVersion, convert_text};
use ichnaea_web::api::error::{ApiError, ParseDetails};
use ichnaea_web::api::{lean, locate_schema};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::{Fx, send_app, state};

/// The real clients' bodies: (endpoint, client, body).
fn seeds() -> Vec<(String, String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/clients");
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_stem()?.to_str()?.to_string();
            let (endpoint, client) = name.split_once("__")?;
            (path.extension()? == "json").then(|| {
                (
                    endpoint.to_string(),
                    client.to_string(),
                    std::fs::read(&path).unwrap(),
                )
            })
        })
        .collect();
    seeds.sort();
    assert!(
        seeds.len() >= 15,
        "{} seeds in {}",
        seeds.len(),
        dir.display()
    );
    seeds
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn headers(gzip: bool, content_type: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h
}

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=UTF-8",
    "application/json; charset=latin-1",
    "application/json; charset=\"utf_8\"",
    "application/json; charset=utf-16le",
    "application/json; charset=klingon",
    "text/plain",
];

/// The documented outcomes of decoding: text, 413, or `details.decode`.
fn documented(result: &Result<impl Sized, ApiError>) -> bool {
    matches!(
        result,
        Ok(_)
            | Err(ApiError::PayloadTooLarge)
            | Err(ApiError::Parse(Some(ParseDetails::Decode(_))))
    )
}

/// Every kind of scalar, with the spellings the coercion rules treat
/// specially (numeric strings, radio and source names, MACs, the non-finite
/// marker).
fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1000i64..100_000).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "gsm",
            "umts",
            "wcdma",
            "lte",
            "LTE",
            "nr",
            "cdma",
            "gps",
            "fused",
            "fixed",
            "12",
            "-7",
            "1.5",
            "nan",
            "inf",
            "false",
            "0",
            "01:23:45:67:89:ab",
            "0123456789AB",
            "aa-bb-cc-dd-ee-ff",
            "2016-04-07T03:33:20",
            "2012-03-01",
            "\u{0}nonfinite",
            "Résumé",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
    .boxed()
}

/// Any JSON value: scalars nested in arrays and objects with arbitrary and
/// known member names.
fn json_value() -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(ENTRY_NAMES), inner), 0..6)
                    .prop_map(object),
            ]
        })
        .boxed()
}

/// Mostly a scalar, sometimes anything.
fn member_value() -> BoxedStrategy<Value> {
    prop_oneof![8 => scalar(), 1 => json_value()].boxed()
}

fn object(members: Vec<(&'static str, Value)>) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn object_of(names: &'static [&'static str], value: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop::collection::vec((prop::sample::select(names), value), 0..7)
        .prop_map(object)
        .boxed()
}

/// Member names of network entries, of every format.
const ENTRY_NAMES: &[&str] = &[
    "macAddress",
    "key",
    "signalStrength",
    "signal",
    "ssid",
    "age",
    "channel",
    "frequency",
    "radioType",
    "radio",
    "signalToNoiseRatio",
    "name",
    "cellId",
    "cid",
    "mobileCountryCode",
    "mcc",
    "mobileNetworkCode",
    "mnc",
    "locationAreaCode",
    "lac",
    "psc",
    "primaryScramblingCode",
    "serving",
    "asu",
    "timingAdvance",
    "ta",
    "x",
    "",
];

/// A network array: mostly entries, sometimes anything.
fn entries() -> BoxedStrategy<Value> {
    let element = prop_oneof![8 => object_of(ENTRY_NAMES, member_value()), 1 => member_value()];
    prop_oneof![
        6 => prop::collection::vec(element, 0..6).prop_map(Value::Array),
        1 => member_value(),
    ]
    .boxed()
}

/// One member of an object, named from `scalars` (a member value) or
/// `arrays` (network entries), or `nested` (an object of position members).
fn members(
    scalars: &'static [&'static str],
    arrays: &'static [&'static str],
    nested: &'static [&'static str],
) -> BoxedStrategy<Vec<(&'static str, Value)>> {
    const POSITION: &[&str] = &[
        "latitude",
        "longitude",
        "accuracy",
        "altitude",
        "altitudeAccuracy",
        "heading",
        "pressure",
        "speed",
        "age",
        "source",
        "lacf",
        "ipf",
        "x",
    ];
    let member = prop_oneof![
        (prop::sample::select(scalars), member_value()),
        (prop::sample::select(arrays), entries()),
        (
            prop::sample::select(nested),
            prop_oneof![4 => object_of(POSITION, member_value()), 1 => member_value()]
        ),
    ];
    prop::collection::vec(member, 0..8).boxed()
}

/// A locate body: the known top-level members with entries, now and then a
/// wrong kind or an unknown member.
fn locate_body() -> BoxedStrategy<Value> {
    prop_oneof![
        8 => members(
            &["considerIp", "radioType", "carrier", "homeMobileCountryCode", "homeMobileNetworkCode", "x"],
            &["wifiAccessPoints", "cellTowers", "bluetoothBeacons"],
            &["fallbacks"],
        )
        .prop_map(object),
        1 => json_value(),
    ]
    .boxed()
}

/// A submit body: `{"items": [report…]}` with the members of every format.
fn submit_body() -> BoxedStrategy<Value> {
    let report = members(
        &[
            "timestamp",
            "time",
            "radioType",
            "radio",
            "lat",
            "lon",
            "latitude",
            "longitude",
            "accuracy",
            "carrier",
            "source",
            "age",
            "homeMobileCountryCode",
            "speed",
            "x",
        ],
        &[
            "cellTowers",
            "cell",
            "wifiAccessPoints",
            "wifi",
            "bluetoothBeacons",
            "blue",
        ],
        &["position"],
    )
    .prop_map(object);
    prop_oneof![
        8 => prop::collection::vec(prop_oneof![8 => report, 1 => member_value()], 0..5)
            .prop_map(|items| json!({ "items": items })),
        1 => json_value(),
    ]
    .boxed()
}

/// `value` as JSON text with every object's members in reverse order.
fn reversed(value: &Value) -> String {
    match value {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(reversed).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .rev()
                .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), reversed(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// Positions everywhere are on land and every MCC is valid: the most
/// permissive geocoder, so ingestion goes as far as it can.
struct Everywhere;

impl Geocoder for Everywhere {
    fn region(&self, _: f64, _: f64) -> Option<String> {
        Some("DE".into())
    }
    fn in_region(&self, _: f64, _: f64, _: &str) -> bool {
        true
    }
    fn any_region(&self, _: f64, _: f64) -> bool {
        true
    }
    fn region_for_cell(&self, _: f64, _: f64, _: u16) -> Option<String> {
        Some("DE".into())
    }
    fn valid_mcc(&self, mcc: i64) -> bool {
        (1..=999).contains(&mcc)
    }
}

fn error_paths(e: &ConvertError) -> Vec<String> {
    match e {
        ConvertError::Invalid(errors) => errors.0.keys().cloned().collect(),
        ConvertError::Json(e) => vec![format!("json: {e}")],
        ConvertError::TooManyReports => vec!["too many".into()],
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes, plain or gzipped (and then perhaps cut or corrupted), in any
    /// declared charset: decoding ends in text, 413 or `details.decode`, and the
    /// text parses (or not) without a panic on every endpoint's path.
    #[test]
    fn body_decoding_never_panics(
        data in prop::collection::vec(any::<u8>(), 0..600),
        gzip in any::<bool>(),
        cut in prop::option::of(any::<prop::sample::Index>()),
        flip in prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
        content_type in prop::sample::select(CONTENT_TYPES),
        small in any::<bool>(),
    ) {
        let mut raw = if gzip { gz(&data) } else { data.clone() };
        if let Some(at) = cut {
            raw.truncate(at.index(raw.len() + 1));
        }
        if let Some((at, byte)) = flip && !raw.is_empty() {
            let i = at.index(raw.len());
            raw[i] ^= byte;
        }
        let limits = BodyLimits {
            max_decoded: if small { 100 } else { 1 << 20 },
            ..BodyLimits::default()
        };
        let h = headers(gzip, content_type);
        let text = decode_text(&h, &raw, limits);
        prop_assert!(documented(&text), "{text:?}");
        if let Ok(text) = text {
            prop_assert!(documented(&parse_lean(&text, locate_schema::BODY)));
            for version in [SubmitVersion::V2, SubmitVersion::V1, SubmitVersion::V0] {
                let _ = convert_text(&text, version, 1_700_000_000_000);
            }
        }
    }

    /// gzip changes nothing: a gzipped body decodes to the plain body's text,
    /// and inflating past the limit is 413.
    #[test]
    fn gzip_round_trips_and_is_bounded(value in json_value(), limit in 0usize..400) {
        let text = value.to_string();
        let h = headers(true, "application/json");
        let limits = BodyLimits { max_decoded: limit, ..BodyLimits::default() };
        let zipped = gz(text.as_bytes());
        let decoded = decode_text(&h, &zipped, limits).map(|t| t.into_owned());
        if text.len() <= limit {
            prop_assert_eq!(decoded.unwrap(), text);
        } else {
            prop_assert_eq!(decoded.unwrap_err(), ApiError::PayloadTooLarge);
        }
    }

    /// Latin-1 text decodes to the same characters as its UTF-8 spelling.
    #[test]
    fn latin1_and_utf8_agree(text in "[ -~\u{a0}-\u{ff}]{0,40}") {
        let json = Value::from(text.as_str()).to_string();
        let latin1: Vec<u8> = json.chars().map(|c| c as u32 as u8).collect();
        let limits = BodyLimits::default();
        let a = decode_text(&headers(false, "application/json; charset=latin-1"), &latin1, limits).unwrap();
        let b = decode_text(&headers(false, "application/json"), json.as_bytes(), limits).unwrap();
        prop_assert_eq!(a, b);
    }

    /// The bounded parser changes nothing the locate schema sees: the same
    /// body (or the same error paths) as from the whole `Value`; the
    /// normalised query stays within its caps; at most MAX_ERRORS paths.
    #[test]
    fn locate_bodies_parse_the_same_when_bounded(value in locate_body()) {
        let text = value.to_string();
        let whole = locate_schema::parse(&value);
        let bounded = locate_schema::parse(&lean::parse(&text, locate_schema::BODY).unwrap());
        match (&whole, &bounded) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => {
                prop_assert_eq!(a.0.keys().collect::<Vec<_>>(), b.0.keys().collect::<Vec<_>>());
                prop_assert!(b.0.len() <= MAX_ERRORS);
            }
            _ => prop_assert!(false, "{text}: {whole:?} / {bounded:?}"),
        }
        if let Ok(body) = bounded {
            let query = normalize(&body.input);
            prop_assert!(query.wifi.len() <= 100 && query.blue.len() <= 100 && query.cell.len() <= 50);
        }
    }

    /// Report conversion: never a panic; the same reports (and error paths)
    /// whatever the order of members; every report is an object with a
    /// timestamp and the three arrays, wraps into an incoming item that the
    /// pipeline decodes, and ingests without a panic; Wi-Fi and Bluetooth
    /// entries have a MAC, cells an identity member.
    #[test]
    fn report_conversion_is_sound(body in submit_body()) {
        let text = body.to_string();
        let backwards = reversed(&body);
        for version in [SubmitVersion::V2, SubmitVersion::V1, SubmitVersion::V0] {
            let a = convert_text(&text, version, 1_700_000_000_000);
            let b = convert_text(&backwards, version, 1_700_000_000_000);
            match (&a, &b) {
                (Ok(x), Ok(y)) => prop_assert_eq!(x, y),
                (Err(x), Err(y)) => {
                    prop_assert_eq!(error_paths(x), error_paths(y));
                    prop_assert!(error_paths(x).len() <= MAX_ERRORS);
                }
                _ => prop_assert!(false, "{version:?} {text}: {a:?} / {b:?}"),
            }
            let Ok(reports) = a else { continue };
            for r in reports {
                let report: Map<String, Value> = serde_json::from_str(&r.json).unwrap();
                prop_assert!(report["timestamp"].is_i64());
                for (list, need) in [("wifiAccessPoints", &["macAddress"][..]), ("bluetoothBeacons", &["macAddress"]),
                    ("cellTowers", &["mobileCountryCode", "mobileNetworkCode", "locationAreaCode", "cellId"])] {
                    for entry in report[list].as_array().unwrap() {
                        prop_assert!(need.iter().any(|k| entry.get(*k).is_some()), "{list}: {entry}");
                    }
                }
                let item = IncomingItem::decode(&IncomingItem::encode_raw(Some("k\"ey"), r.source, &r.json)).unwrap();
                prop_assert_eq!(&item.report, &report);
                let _ = ingest::ingest_report(&item.report, &Everywhere);
            }
        }
    }

    /// The coercion rules never panic, and integers, floats and strings
    /// survive them as they are (also integers sent as decimal strings).
    #[test]
    fn coercion_rules_keep_plain_values(value in json_value(), i in any::<i64>(), f in any::<f64>()) {
        use ichnaea_web::api::coerce::{boolean, try_float, try_int, try_string};
        let _ = (try_int(Some(&value)), try_float(Some(&value)), try_string(Some(&value)));
        let _ = boolean(Some(&value), true);
        prop_assert_eq!(try_int(Some(&Value::from(i))), Ok(Some(i)));
        prop_assert_eq!(try_int(Some(&Value::from(i.to_string()))), Ok(Some(i)));
        if f.is_finite() {
            prop_assert_eq!(try_float(Some(&Value::from(f))), Ok(Some(f)));
            prop_assert_eq!(try_int(Some(&Value::from(f))), Ok(Some(f.trunc() as i64)));
        }
        let text = format!("x{i}");
        prop_assert_eq!(try_string(Some(&Value::from(text.as_str()))), Ok(Some(text)));
    }

    /// What the bounded parser keeps is never more than the whole value, and a
    /// value in a scalar's place keeps at most a small sample (≤ 67 nodes)
    /// however large it is.
    #[test]
    fn bounded_parser_keeps_little(value in json_value(), repeat in 1usize..50) {
        fn nodes(v: &Value) -> usize {
            match v {
                Value::Array(a) => 1 + a.iter().map(nodes).sum::<usize>(),
                Value::Object(o) => 1 + o.values().map(nodes).sum::<usize>(),
                _ => 1,
            }
        }
        let text = value.to_string();
        let kept = lean::parse(&text, locate_schema::BODY).unwrap();
        prop_assert!(nodes(&kept) <= nodes(&value), "{text}");
        let big = Value::Array(vec![value; repeat]);
        let sample = lean::parse(&big.to_string(), lean::Shape::Scalar).unwrap();
        // 1 + 3 + 9 + 27 values, and a placeholder member in each of the 27.
        prop_assert!(nodes(&sample) <= 67, "{sample}");
    }

    /// Shapes keep at most what they say, and any JSON text parses or fails
    /// without a panic whatever the shape.
    #[test]
    fn bounded_parser_never_panics(text in "[\\[\\]{}\":,0-9a-z .eE+-]{0,80}") {
        for shape in [lean::Shape::Scalar, locate_schema::BODY] {
            let _ = lean::parse(&text, shape);
        }
        let _ = convert_text(&text, SubmitVersion::V2, 0);
    }
}

/// Cases per property: `PROPTEST_CASES`, else 1,024; a failure prints its
/// minimal input instead of writing a regression file into the tree.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_024),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One mutation of a seed body.
fn mutate(rng: &mut fastrand::Rng, body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    for _ in 0..rng.usize(1..4) {
        match rng.u8(0..9) {
            0 if !out.is_empty() => {
                let i = rng.usize(0..out.len());
                out[i] = rng.u8(..);
            }
            1 => out.truncate(rng.usize(0..=out.len())),
            2 if !out.is_empty() => {
                let (a, b) = (rng.usize(0..out.len()), rng.usize(0..out.len()));
                let (a, b) = (a.min(b), a.max(b));
                let slice = out[a..b].to_vec();
                let at = rng.usize(0..=out.len());
                out.splice(at..at, slice);
            }
            3 => {
                let junk: &[&[u8]] = &[
                    b"NaN",
                    b"-Infinity",
                    b"1e999",
                    b"null",
                    b"[]",
                    b"{}",
                    b"\"\\u0000\"",
                    b"\xff\xfe",
                    b"99999999999999999999999",
                    b"-0.0",
                    b"\"gsm\"",
                    b"[[[[[[[[",
                    b"}}}}",
                ];
                let at = rng.usize(0..=out.len());
                out.splice(at..at, junk[rng.usize(0..junk.len())].iter().copied());
            }
            4 => {
                // Numbers become strings, strings numbers.
                let text = String::from_utf8_lossy(&out).into_owned();
                out = text.replacen(':', ":\"", 1).into_bytes();
            }
            _ => {}
        }
    }
    out
}

const PATHS: &[&str] = &[
    "/v1/geolocate",
    "/v1/country",
    "/v2/geosubmit",
    "/v1/geosubmit",
    "/v1/submit",
    "/__heartbeat__",
    "/__lbheartbeat__",
    "/__version__",
    "/contribute.json",
    "/robots.txt",
    "/admin/api-keys",
    "/admin/api-keys/fuzz-key",
    "/admin/export-configs",
    "/v1/geolocate/x",
    "/v2/geosubmit/",
    "//v1/submit",
    "/v1/%67eolocate",
    "/nope",
    "/",
];
const QUERIES: &[&str] = &[
    "",
    "?key=fuzz-key",
    "?key=fuzz-key",
    "?key=",
    "?key=unknown-key",
    "?key=a",
    "?key=%00%ff",
    "?key=fuzz-key&key=other",
    "?key=fuzz-key&x=%zz",
    "?KEY=fuzz-key",
];

/// A bounded HTTP fuzz run through the real router: mutated seed bodies, odd
/// methods, paths, keys and headers. Every answer is below 500, API errors are
/// the JSON envelope with their own status as `code`.
async fn http_fuzz_run(fx: Fx) {
    let requests: usize = std::env::var("ICHNAEA_FUZZ_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    fx.store
        .insert_api_key(&ichnaea_core::ApiKey::new("fuzz-key"))
        .await
        .unwrap();
    let app = ichnaea_web::router(state(&fx, true));
    let seeds = seeds();
    let seed = std::env::var("ICHNAEA_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(14);
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = std::time::Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for n in 0..requests {
        let (endpoint, _, seed) = &seeds[rng.usize(0..seeds.len())];
        let path = match rng.u8(0..4) {
            0 => PATHS[rng.usize(0..PATHS.len())],
            _ => match endpoint.as_str() {
                "geolocate" => "/v1/geolocate",
                "country" => "/v1/country",
                "geosubmit_v2" => "/v2/geosubmit",
                "geosubmit_v1" => "/v1/geosubmit",
                _ => "/v1/submit",
            },
        };
        let uri = format!("{path}{}", QUERIES[rng.usize(0..QUERIES.len())]);
        let method = match rng.u8(0..12) {
            0 => Method::GET,
            1 => Method::OPTIONS,
            2 => Method::PUT,
            3 => Method::DELETE,
            4 => Method::HEAD,
            5 => Method::from_bytes(b"BREW").unwrap(),
            _ => Method::POST,
        };
        let mut body = if rng.u8(0..5) == 0 {
            seed.clone()
        } else {
            mutate(&mut rng, seed)
        };
        let mut headers: Vec<(&str, &str)> = Vec::new();
        match rng.u8(0..6) {
            0 => {
                headers.push(("content-encoding", "gzip"));
                body = gz(&body);
                if rng.bool() {
                    body = mutate(&mut rng, &body);
                }
            }
            1 => headers.push(("content-encoding", "gzip")),
            2 => headers.push(("content-encoding", "deflate")),
            _ => {}
        }
        headers.push((
            "content-type",
            CONTENT_TYPES[rng.usize(0..CONTENT_TYPES.len())],
        ));
        if rng.bool() {
            let forwarded = [
                "203.0.113.9",
                "junk, 10.0.0.1",
                "::1, 2001:db8::1",
                "",
                "1.2.3.4:80",
            ];
            headers.push(("x-forwarded-for", forwarded[rng.usize(0..forwarded.len())]));
        }
        if path.starts_with("/admin") && rng.bool() {
            headers.push(("authorization", "Bearer wrong-token"));
        }
        let reply = send_app(&app, method.clone(), &uri, &headers, body.clone()).await;
        let status = reply.status.as_u16();
        *statuses.entry(status).or_default() += 1;
        assert!(
            status < 500,
            "request {n}: {method} {uri} {headers:?} {:?} → {status} {:?}",
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(&reply.body)
        );
        let api = [
            "/v1/geolocate",
            "/v1/country",
            "/v2/geosubmit",
            "/v1/geosubmit",
            "/v1/submit",
        ]
        .contains(&path);
        if api && status >= 400 && method != Method::HEAD && status != 405 {
            let error = reply.json();
            assert_eq!(error["error"]["code"], json!(status), "{uri}: {error}");
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "HTTP fuzz (seed {seed}): {requests} requests in {:?}, statuses {statuses:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn http_fuzz_of_the_real_router() {
    ichnaea_testkit::backends::on_embedded(http_fuzz_run).await;
}
