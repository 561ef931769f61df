//! Submit bodies of all three versions (spec api §6.2–§6.5) converted into the
//! internal report format: type coercion, legacy renaming, vocabularies, and the
//! filtering of entries without a MAC and of reports without any network.

use chrono::NaiveDateTime;
use ichnaea_core::ReportSource;
use serde_json::{Map, Value};

use super::coerce::{Errors, array, int, join, object, string, try_float, try_int, try_string};

/// Builds an error path on demand.
type LazyPath<'a> = &'a dyn Fn() -> String;

/// Which submit format a body is in.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SubmitVersion {
    /// `/v2/geosubmit`: nested `position`, current names.
    V2,
    /// `/v1/geosubmit`: flat position members, `psc`.
    V1,
    /// `/v1/submit`: the original short names (`lat`, `wifi`, `key`, `time`, …).
    V0,
}

/// One report ready for the incoming queue, with its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `position.source` if sent, else `gnss`.
    pub source: ReportSource,
    /// The internal report object.
    pub report: Map<String, Value>,
}

/// Outcome of converting a body: reports, or the type errors that fail it.
pub type Converted = Result<Vec<Report>, Errors>;

const MS_LOW: i64 = 1_000_000_000_000;
const MS_HIGH: i64 = 10_000_000_000_000;

/// Radio vocabulary of `radioType`/`radio`, lower-cased; `umts` means `wcdma`.
fn radio(value: Option<String>) -> Option<&'static str> {
    match value?.to_ascii_lowercase().as_str() {
        "gsm" => Some("gsm"),
        "cdma" => Some("cdma"),
        "umts" | "wcdma" => Some("wcdma"),
        "lte" => Some("lte"),
        "nr" => Some("nr"),
        _ => None,
    }
}

/// Source vocabulary, lower-cased; anything else (`gps`, `manual`) is absent.
fn source(value: Option<String>) -> Option<&'static str> {
    match value?.to_ascii_lowercase().as_str() {
        "fixed" => Some("fixed"),
        "gnss" => Some("gnss"),
        "fused" => Some("fused"),
        "query" => Some("query"),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Float,
    Str,
}

/// Copies member `from` of `input` into `out` as `to`, coerced to `kind`, if present.
/// The error path is only built when there is an error (this runs for every
/// member of every entry of every report).
fn copy(
    input: &Map<String, Value>,
    out: &mut Map<String, Value>,
    path: LazyPath<'_>,
    from: &str,
    to: &str,
    kind: Kind,
    errors: &mut Errors,
) {
    let Some(value) = input.get(from) else { return };
    let coerced = match kind {
        Kind::Int => try_int(Some(value)).map(|v| v.map(Value::from)),
        Kind::Float => try_float(Some(value)).map(|v| v.map(Value::from)),
        Kind::Str => try_string(Some(value)).map(|v| v.map(Value::from)),
    };
    match coerced {
        Ok(Some(v)) => {
            out.insert(to.to_string(), v);
        }
        Ok(None) => {}
        Err(message) => errors.add(&join(&path(), from), message),
    }
}

/// Member names of one version: (input name, output name, kind).
type Fields = &'static [(&'static str, &'static str, Kind)];

const POSITION_FLOATS: [&str; 8] = [
    "latitude",
    "longitude",
    "accuracy",
    "altitude",
    "altitudeAccuracy",
    "heading",
    "pressure",
    "speed",
];

const BLUE_NEW: Fields = &[
    ("macAddress", "macAddress", Kind::Str),
    ("age", "age", Kind::Int),
    ("name", "name", Kind::Str),
    ("signalStrength", "signalStrength", Kind::Int),
];
const BLUE_V0: Fields = &[
    ("key", "macAddress", Kind::Str),
    ("age", "age", Kind::Int),
    ("name", "name", Kind::Str),
    ("signal", "signalStrength", Kind::Int),
];
const WIFI_NEW: Fields = &[
    ("macAddress", "macAddress", Kind::Str),
    ("age", "age", Kind::Int),
    ("channel", "channel", Kind::Int),
    ("frequency", "frequency", Kind::Int),
    ("radioType", "radioType", Kind::Str),
    ("signalStrength", "signalStrength", Kind::Int),
    ("signalToNoiseRatio", "signalToNoiseRatio", Kind::Int),
    ("ssid", "ssid", Kind::Str),
];
const WIFI_V0: Fields = &[
    ("key", "macAddress", Kind::Str),
    ("age", "age", Kind::Int),
    ("channel", "channel", Kind::Int),
    ("frequency", "frequency", Kind::Int),
    ("radio", "radioType", Kind::Str),
    ("signal", "signalStrength", Kind::Int),
    ("signalToNoiseRatio", "signalToNoiseRatio", Kind::Int),
    ("ssid", "ssid", Kind::Str),
];
const CELL_V2: Fields = &[
    ("mobileCountryCode", "mobileCountryCode", Kind::Int),
    ("mobileNetworkCode", "mobileNetworkCode", Kind::Int),
    ("locationAreaCode", "locationAreaCode", Kind::Int),
    ("cellId", "cellId", Kind::Int),
    ("age", "age", Kind::Int),
    ("asu", "asu", Kind::Int),
    ("primaryScramblingCode", "primaryScramblingCode", Kind::Int),
    ("serving", "serving", Kind::Int),
    ("signalStrength", "signalStrength", Kind::Int),
    ("timingAdvance", "timingAdvance", Kind::Int),
];
const CELL_V1: Fields = &[
    ("mobileCountryCode", "mobileCountryCode", Kind::Int),
    ("mobileNetworkCode", "mobileNetworkCode", Kind::Int),
    ("locationAreaCode", "locationAreaCode", Kind::Int),
    ("cellId", "cellId", Kind::Int),
    ("age", "age", Kind::Int),
    ("asu", "asu", Kind::Int),
    ("psc", "primaryScramblingCode", Kind::Int),
    ("serving", "serving", Kind::Int),
    ("signalStrength", "signalStrength", Kind::Int),
    ("timingAdvance", "timingAdvance", Kind::Int),
];
const CELL_V0: Fields = &[
    ("mcc", "mobileCountryCode", Kind::Int),
    ("mnc", "mobileNetworkCode", Kind::Int),
    ("lac", "locationAreaCode", Kind::Int),
    ("cid", "cellId", Kind::Int),
    ("age", "age", Kind::Int),
    ("asu", "asu", Kind::Int),
    ("psc", "primaryScramblingCode", Kind::Int),
    ("serving", "serving", Kind::Int),
    ("signal", "signalStrength", Kind::Int),
    ("ta", "timingAdvance", Kind::Int),
];

/// Names that differ between the versions.
struct Names {
    blue: &'static str,
    cell: &'static str,
    wifi: &'static str,
    radio: &'static str,
    blue_fields: Fields,
    cell_fields: Fields,
    wifi_fields: Fields,
}

fn names(version: SubmitVersion) -> Names {
    match version {
        SubmitVersion::V2 | SubmitVersion::V1 => Names {
            blue: "bluetoothBeacons",
            cell: "cellTowers",
            wifi: "wifiAccessPoints",
            radio: "radioType",
            blue_fields: BLUE_NEW,
            cell_fields: if version == SubmitVersion::V2 {
                CELL_V2
            } else {
                CELL_V1
            },
            wifi_fields: WIFI_NEW,
        },
        SubmitVersion::V0 => Names {
            blue: "blue",
            cell: "cell",
            wifi: "wifi",
            radio: "radio",
            blue_fields: BLUE_V0,
            cell_fields: CELL_V0,
            wifi_fields: WIFI_V0,
        },
    }
}

/// Converts a decoded submit body. `now_ms` replaces missing or implausible
/// timestamps.
pub fn convert(body: &Value, version: SubmitVersion, now_ms: i64) -> Converted {
    let mut errors = Errors::default();
    let Some(root) = object(body, "", &mut errors) else {
        return Err(errors);
    };
    // The original answered 400 `{"items": "Required"}` here; Tower Collector
    // sends `{}` for an empty upload and needs 200, so no `items` means no reports.
    let Some(items) = root.get("items") else {
        return Ok(Vec::new());
    };
    let items = array(Some(items), "items", &mut errors);
    let mut reports = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = join("items", i);
        if let Some(item) = object(item, &path, &mut errors)
            && let Some(report) = convert_report(item, &path, version, now_ms, &mut errors)
        {
            reports.push(report);
        }
    }
    if errors.is_empty() {
        Ok(reports)
    } else {
        Err(errors)
    }
}

/// Report-level members of the v1 and v2 formats, kept as they are.
const REPORT_MEMBERS: Fields = &[
    ("carrier", "carrier", Kind::Str),
    ("homeMobileCountryCode", "homeMobileCountryCode", Kind::Int),
    ("homeMobileNetworkCode", "homeMobileNetworkCode", Kind::Int),
];

/// Position members of `/v1/submit` and their current names.
const POSITION_V0: [(&str, &str); 8] = [
    ("lat", "latitude"),
    ("lon", "longitude"),
    ("accuracy", "accuracy"),
    ("altitude", "altitude"),
    ("altitude_accuracy", "altitudeAccuracy"),
    ("heading", "heading"),
    ("pressure", "pressure"),
    ("speed", "speed"),
];

/// Converts one report; `None` when it has no network entry left.
fn convert_report(
    item: &Map<String, Value>,
    path: &str,
    version: SubmitVersion,
    now_ms: i64,
    errors: &mut Errors,
) -> Option<Report> {
    let mut out = Map::new();
    let timestamp = report_timestamp(item, path, version, errors).unwrap_or(now_ms);
    out.insert("timestamp".into(), Value::from(timestamp));
    if version != SubmitVersion::V0 {
        let report_path = || path.to_string();
        for (from, to, kind) in REPORT_MEMBERS {
            copy(item, &mut out, &report_path, from, to, *kind, errors);
        }
    }
    let position = report_position(item, path, version, errors);
    let source = position
        .as_ref()
        .and_then(|p| p.get("source"))
        .and_then(Value::as_str)
        .and_then(ReportSource::from_name)
        .unwrap_or(ReportSource::Gnss);
    if let Some(position) = position {
        out.insert("position".into(), position);
    }
    if !network_entries(item, path, version, &mut out, errors) {
        return None;
    }
    Some(Report {
        source,
        report: out,
    })
}

/// The report's time in milliseconds, if sent and plausible (v0 `time` is ISO 8601).
fn report_timestamp(
    item: &Map<String, Value>,
    path: &str,
    version: SubmitVersion,
    errors: &mut Errors,
) -> Option<i64> {
    let timestamp = match version {
        SubmitVersion::V0 => {
            string(item.get("time"), &join(path, "time"), errors).and_then(|t| parse_time(&t))
        }
        _ => int(item.get("timestamp"), &join(path, "timestamp"), errors),
    };
    timestamp.filter(|t| *t > MS_LOW && *t < MS_HIGH)
}

/// The `position` member: v2 nests it (`null` when absent), v1 and v0 have the
/// members on the report itself (absent when none is sent).
fn report_position(
    item: &Map<String, Value>,
    path: &str,
    version: SubmitVersion,
    errors: &mut Errors,
) -> Option<Value> {
    let same_names = POSITION_FLOATS.map(|f| (f, f));
    match version {
        SubmitVersion::V2 => match item.get("position") {
            None => Some(Value::Null),
            Some(p) => {
                let position_path = join(path, "position");
                object(p, &position_path, errors).map(|p| {
                    Value::Object(convert_position(p, &position_path, &same_names, errors))
                })
            }
        },
        SubmitVersion::V1 | SubmitVersion::V0 => {
            let names: &[(&str, &str)] = if version == SubmitVersion::V1 {
                &same_names
            } else {
                &POSITION_V0
            };
            let p = convert_position(item, path, names, errors);
            (!p.is_empty()).then_some(Value::Object(p))
        }
    }
}

/// Converts the three network arrays into `out`; false when all are empty.
/// A cell's radio is its own, else the report's.
fn network_entries(
    item: &Map<String, Value>,
    path: &str,
    version: SubmitVersion,
    out: &mut Map<String, Value>,
    errors: &mut Errors,
) -> bool {
    let n = names(version);
    let report_radio = radio(string(item.get(n.radio), &join(path, n.radio), errors));
    let blue = entries(item, path, n.blue, n.blue_fields, errors, |_| {}, true);
    let cells = entries(
        item,
        path,
        n.cell,
        n.cell_fields,
        errors,
        |(entry, input, entry_path, errors)| {
            let own = radio(errors.value(try_string(input.get(n.radio)), || {
                join(&entry_path(), n.radio)
            }));
            if let Some(r) = own.or(report_radio) {
                entry.insert("radioType".into(), Value::from(r));
            }
        },
        false,
    );
    let wifi = entries(item, path, n.wifi, n.wifi_fields, errors, |_| {}, true);
    let any = !(blue.is_empty() && cells.is_empty() && wifi.is_empty());
    out.insert("bluetoothBeacons".into(), Value::Array(blue));
    out.insert("cellTowers".into(), Value::Array(cells));
    out.insert("wifiAccessPoints".into(), Value::Array(wifi));
    any
}

/// The position members (floats, `age`, `source`) of `input`, renamed by `floats`.
fn convert_position(
    input: &Map<String, Value>,
    path: &str,
    floats: &[(&str, &str)],
    errors: &mut Errors,
) -> Map<String, Value> {
    let mut out = Map::new();
    let lazy = || path.to_string();
    for (from, to) in floats {
        copy(input, &mut out, &lazy, from, to, Kind::Float, errors);
    }
    copy(input, &mut out, &lazy, "age", "age", Kind::Int, errors);
    if let Some(s) = source(string(input.get("source"), &join(path, "source"), errors)) {
        out.insert("source".into(), Value::from(s));
    }
    out
}

type EntryHook<'a> = (
    &'a mut Map<String, Value>,
    &'a Map<String, Value>,
    LazyPath<'a>,
    &'a mut Errors,
);

/// Converts one array of entries; with `need_mac`, entries without a MAC are dropped.
fn entries(
    item: &Map<String, Value>,
    path: &str,
    member: &str,
    fields: Fields,
    errors: &mut Errors,
    mut hook: impl FnMut(EntryHook<'_>),
    need_mac: bool,
) -> Vec<Value> {
    let list_path = join(path, member);
    let mut out = Vec::new();
    for (i, entry) in array(item.get(member), &list_path, errors)
        .iter()
        .enumerate()
    {
        let entry_path = || join(&list_path, i);
        let Some(input) = entry.as_object() else {
            object(entry, &entry_path(), errors);
            continue;
        };
        let mut converted = Map::new();
        hook((&mut converted, input, &entry_path, errors));
        for (from, to, kind) in fields {
            copy(input, &mut converted, &entry_path, from, to, *kind, errors);
        }
        if need_mac && !converted.contains_key("macAddress") {
            continue;
        }
        out.push(Value::Object(converted));
    }
    out
}

/// The v0 `time`: ISO 8601, date-only allowed; any UTC offset is ignored (the wall
/// clock is read as UTC, as the original did); whole seconds.
fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim();
    let t = t.strip_suffix(['Z', 'z']).unwrap_or(t);
    let t = strip_offset(t);
    if let Ok(date) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return date
            .and_hms_opt(0, 0, 0)
            .map(|dt| dt.and_utc().timestamp() * 1000);
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    .map(|dt| dt.and_utc().timestamp() * 1000)
}

/// Removes a trailing `±HH:MM`, `±HHMM` or `±HH` after a time of day.
fn strip_offset(t: &str) -> &str {
    let Some(tpos) = t.find(['T', ' ']) else {
        return t;
    };
    match t[tpos..].rfind(['+', '-']) {
        Some(i) => {
            let offset = &t[tpos + i + 1..];
            let plausible = !offset.is_empty()
                && offset.len() <= 5
                && offset.bytes().all(|b| b.is_ascii_digit() || b == b':');
            if plausible { &t[..tpos + i] } else { t }
        }
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_123;

    fn ok(body: Value, v: SubmitVersion) -> Vec<Report> {
        convert(&body, v, NOW).unwrap_or_else(|e| panic!("{:?}", e.0))
    }
    fn err_paths(body: Value, v: SubmitVersion) -> Vec<String> {
        convert(&body, v, NOW).unwrap_err().0.into_keys().collect()
    }

    #[test]
    fn v2_case_41_forwards_without_normalising() {
        let r = ok(
            json!({"items": [{"position": {"latitude": 51.5, "longitude": -0.1}, "wifiAccessPoints": [{"macAddress": "01:23:45:67:89:ab"}]}]}),
            SubmitVersion::V2,
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].source.name(), "gnss");
        assert_eq!(
            Value::Object(r[0].report.clone()),
            json!({"timestamp": NOW, "position": {"latitude": 51.5, "longitude": -0.1},
                   "bluetoothBeacons": [], "cellTowers": [], "wifiAccessPoints": [{"macAddress": "01:23:45:67:89:ab"}]})
        );
    }

    #[test]
    fn envelope_errors() {
        assert!(
            ok(json!({}), SubmitVersion::V2).is_empty(),
            "Tower Collector's empty upload"
        );
        assert_eq!(err_paths(json!([1]), SubmitVersion::V2), vec![""]);
        assert_eq!(
            err_paths(json!({"items": null}), SubmitVersion::V2),
            vec!["items"]
        );
        assert_eq!(
            err_paths(json!({"items": [1]}), SubmitVersion::V2),
            vec!["items.0"]
        );
        assert_eq!(
            err_paths(json!({"items": [{"position": null}]}), SubmitVersion::V2),
            vec!["items.0.position"]
        );
        assert_eq!(
            err_paths(
                json!({"items": [{"wifiAccessPoints": [{"macAddress": 10}]}]}),
                SubmitVersion::V2
            ),
            vec!["items.0.wifiAccessPoints.0.macAddress"]
        );
        assert_eq!(
            err_paths(
                json!({"items": [{"time": 12345, "wifi": [{"key": "a"}]}]}),
                SubmitVersion::V0
            ),
            vec!["items.0.time"]
        );
        assert!(ok(json!({"items": []}), SubmitVersion::V2).is_empty());
        assert!(
            ok(
                json!({"items": [{"wifiAccessPoints": [{"ssid": "x"}]}]}),
                SubmitVersion::V2
            )
            .is_empty()
        );
    }

    #[test]
    fn sources_and_timestamps() {
        for (sent, item_source, kept) in [
            ("fused", "fused", Some("fused")),
            ("GNSS", "gnss", Some("gnss")),
            ("gps", "gnss", None),
        ] {
            let r = ok(
                json!({"items": [{"timestamp": 146000000000i64, "position": {"source": sent}, "cellTowers": [{}]}]}),
                SubmitVersion::V2,
            );
            assert_eq!(r[0].source.name(), item_source);
            assert_eq!(
                r[0].report["position"]
                    .get("source")
                    .and_then(Value::as_str),
                kept
            );
            assert_eq!(
                r[0].report["timestamp"],
                json!(NOW),
                "implausible timestamp replaced"
            );
        }
        let r = ok(
            json!({"items": [{"timestamp": 1460000000000i64, "cellTowers": [{}]}]}),
            SubmitVersion::V2,
        );
        assert_eq!(r[0].report["timestamp"], json!(1_460_000_000_000i64));
        assert_eq!(r[0].report["position"], Value::Null);
        assert_eq!(
            r[0].report["cellTowers"],
            json!([{}]),
            "empty cells are kept"
        );
    }

    #[test]
    fn case_50_radio_inheritance() {
        let r = ok(
            json!({"items": [{"radioType": "gsm", "cellTowers": [{"radioType": "lte", "cellId": 1}, {"cellId": 2}, {"radioType": "UMTS", "cellId": 3}, {"radioType": "18", "cellId": 4}, {"radioType": "nr", "cellId": 68719476735i64}]}]}),
            SubmitVersion::V2,
        );
        let radios: Vec<&str> = r[0].report["cellTowers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["radioType"].as_str().unwrap())
            .collect();
        assert_eq!(radios, vec!["lte", "gsm", "wcdma", "gsm", "nr"]);
        assert_eq!(
            r[0].report["cellTowers"][4]["cellId"],
            json!(68_719_476_735i64)
        );
        assert!(!r[0].report.contains_key("radioType"));
    }

    #[test]
    fn case_52_unknown_members_dropped() {
        let r = ok(
            json!({"items": [{"xtra_field": 1, "position": {"latitude": 1.0, "xtra_field": 2},
            "cellTowers": [{"cellId": 1, "xtra_field": 3, "psc": 4, "arfcn": 5}], "wifiAccessPoints": [{"macAddress": "a", "xtra_field": 4, "estimatedDistance": {"distance": 1}}]}]}),
            SubmitVersion::V2,
        );
        assert!(
            !Value::Object(r[0].report.clone())
                .to_string()
                .contains("xtra_field")
        );
        assert_eq!(
            r[0].report["cellTowers"],
            json!([{"cellId": 1}]),
            "psc is ignored in v2"
        );
    }

    #[test]
    fn case_53_v1_flat_position_and_psc() {
        let body = super::super::body::parse_json(r#"{"items": [{"latitude": 1.5, "longitude": 2.5, "accuracy": NaN, "cellTowers": [{"psc": 7, "primaryScramblingCode": 9, "cellId": 1}]}]}"#).unwrap();
        let r = ok(body, SubmitVersion::V1);
        assert_eq!(
            r[0].report["position"],
            json!({"latitude": 1.5, "longitude": 2.5})
        );
        assert_eq!(
            r[0].report["cellTowers"],
            json!([{"cellId": 1, "primaryScramblingCode": 7}])
        );
        let r = ok(
            json!({"items": [{"position": {"latitude": 1.0}, "cellTowers": [{}]}]}),
            SubmitVersion::V1,
        );
        assert!(
            !r[0].report.contains_key("position"),
            "case 54: no position member"
        );
    }

    #[test]
    fn case_55_56_v0() {
        let r = ok(
            json!({"items": [{"lat": 1.5, "lon": 2.5, "time": "2016-04-07T03:33:20", "wifi": [{"key": "AB:CD:EF:01:23:45", "signal": -70}]}]}),
            SubmitVersion::V0,
        );
        assert_eq!(
            Value::Object(r[0].report.clone()),
            json!({"timestamp": 1_460_000_000_000i64, "position": {"latitude": 1.5, "longitude": 2.5},
                   "bluetoothBeacons": [], "cellTowers": [], "wifiAccessPoints": [{"macAddress": "AB:CD:EF:01:23:45", "signalStrength": -70}]})
        );
        let r = ok(
            json!({"items": [{"cell": [{"radio": "UMTS", "cid": 1}, {"radio": "foo", "cid": 2}]}, {"lat": 1, "lon": 2, "wifi": [{}]}]}),
            SubmitVersion::V0,
        );
        assert_eq!(r.len(), 1, "the wifi: [{{}}] item is dropped");
        assert_eq!(
            r[0].report["cellTowers"],
            json!([{"radioType": "wcdma", "cellId": 1}, {"cellId": 2}])
        );
        assert_eq!(r[0].report["timestamp"], json!(NOW));
        assert!(
            ok(
                json!({"items": [{"wifiAccessPoints": [{"macAddress": "a"}]}]}),
                SubmitVersion::V0
            )
            .is_empty(),
            "new names unknown in v0"
        );
    }

    #[test]
    fn v0_times() {
        assert_eq!(parse_time("2012-03-01"), Some(1_330_560_000_000));
        assert_eq!(
            parse_time("2012-03-01T05:00:00+02:00"),
            Some(1_330_578_000_000)
        );
        assert_eq!(
            parse_time("2012-03-01T05:00:00.999Z"),
            Some(1_330_578_000_000)
        );
        assert_eq!(
            parse_time("2012-03-01T05:00:00-0500"),
            Some(1_330_578_000_000)
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
