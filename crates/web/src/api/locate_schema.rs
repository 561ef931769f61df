//! The request body of `/v1/geolocate` and `/v1/country` (api §5.1): type
//! coercion of every known member with the shared rules of [`super::coerce`], the
//! top-level `radioType` inherited by cells, and the fallback flags (§5.3).
//!
//! Range checks and de-duplication are not done here: they belong to
//! [`ichnaea_core::locate::query::normalize`] and never fail a request.
//!
//! Sections (§) refer to docs/reference/api.md.

use ichnaea_core::Radio;
use ichnaea_core::locate::MAX_RAW_ENTRIES;
use ichnaea_core::locate::query::{
    BlueQuery, CellQuery, FallbackMembers, Fallbacks, QueryInput, WifiQuery,
};
use serde_json::{Map, Value};

use super::coerce::{Errors, array, boolean, int, join, object, string, try_int, try_string};
use super::lean::Shape;

/// What a locate body keeps while it is parsed: the members read below, and
/// the first [`MAX_RAW_ENTRIES`] entries of each array (the rest are never
/// read, so they are not kept either).
pub const BODY: Shape = Shape::Object(body_member);

fn body_member(name: &str) -> Option<Shape> {
    static BLUE: Shape = Shape::Object(blue_member);
    static WIFI: Shape = Shape::Object(wifi_member);
    static CELL: Shape = Shape::Object(cell_member);
    match name {
        "carrier"
        | "homeMobileCountryCode"
        | "homeMobileNetworkCode"
        | "radioType"
        | "considerIp"
        | "confidence" => Some(Shape::Scalar),
        "fallbacks" => Some(Shape::Object(fallbacks_member)),
        "bluetoothBeacons" => Some(Shape::Array(&BLUE, MAX_RAW_ENTRIES)),
        "wifiAccessPoints" => Some(Shape::Array(&WIFI, MAX_RAW_ENTRIES)),
        "cellTowers" => Some(Shape::Array(&CELL, MAX_RAW_ENTRIES)),
        _ => None,
    }
}

fn fallbacks_member(name: &str) -> Option<Shape> {
    matches!(name, "lacf" | "ipf").then_some(Shape::Scalar)
}

fn blue_member(name: &str) -> Option<Shape> {
    matches!(name, "macAddress" | "name" | "age" | "signalStrength").then_some(Shape::Scalar)
}

fn wifi_member(name: &str) -> Option<Shape> {
    matches!(
        name,
        "macAddress"
            | "ssid"
            | "age"
            | "channel"
            | "frequency"
            | "signalStrength"
            | "signalToNoiseRatio"
    )
    .then_some(Shape::Scalar)
}

fn cell_member(name: &str) -> Option<Shape> {
    matches!(
        name,
        "radioType"
            | "psc"
            | "mobileCountryCode"
            | "mobileNetworkCode"
            | "locationAreaCode"
            | "cellId"
            | "primaryScramblingCode"
            | "age"
            | "signalStrength"
            | "timingAdvance"
    )
    .then_some(Shape::Scalar)
}

/// The radio vocabulary of locate bodies, after coercion to a string.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum RadioName {
    /// A radio with station tables.
    Radio(Radio),
    /// `cdma`: accepted, but the entry is dropped.
    Cdma,
}

/// `gsm`, `cdma`, `wcdma`, `lte` (api §5.1) and `nr` (5G, this service's
/// extension), exact and lower-case; anything else is a type error.
fn radio(value: Option<&Value>, path: &str, errors: &mut Errors) -> Option<RadioName> {
    let text = string(value, path, errors)?;
    match text.as_str() {
        "cdma" => Some(RadioName::Cdma),
        name => match Radio::from_name(name) {
            Some(r) => Some(RadioName::Radio(r)),
            None => {
                errors.add(
                    path,
                    format!("{text:?} is not one of gsm, cdma, wcdma, lte, nr"),
                );
                None
            }
        },
    }
}

/// A parsed locate body: the raw entries and the resolved fallback flags.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocateBody {
    /// Entries and flags for [`ichnaea_core::locate::query::normalize`]; `has_ip`
    /// is left `false` for the caller to fill in.
    pub input: QueryInput,
    /// `"confidence"`: the percent of answers whose circle should hold the
    /// true position (50–99); `None` when absent (95 %, not echoed).
    pub confidence: Option<u8>,
}

/// `"confidence"`: a JSON integer from 50 to 99, anything else a type error.
fn confidence(value: Option<&Value>, errors: &mut Errors) -> Option<u8> {
    let v = value?;
    match v.as_u64().and_then(|n| u8::try_from(n).ok()) {
        Some(n) if (50..=99).contains(&n) => Some(n),
        _ => {
            errors.add("confidence", format!("{v} is not an integer from 50 to 99"));
            None
        }
    }
}

/// Parses a locate body; `Err` holds every type error by input path.
pub fn parse(value: &Value) -> Result<LocateBody, Errors> {
    let mut errors = Errors::default();
    let Some(top) = object(value, "", &mut errors) else {
        return Err(errors);
    };
    // Parsed for their type errors only: carrier and the home network are unused.
    string(top.get("carrier"), "carrier", &mut errors);
    int(
        top.get("homeMobileCountryCode"),
        "homeMobileCountryCode",
        &mut errors,
    );
    int(
        top.get("homeMobileNetworkCode"),
        "homeMobileNetworkCode",
        &mut errors,
    );
    let top_radio = radio(top.get("radioType"), "radioType", &mut errors);
    let confidence = confidence(top.get("confidence"), &mut errors);
    let consider_ip = top.get("considerIp").map(|v| boolean(Some(v), true));
    let fallbacks = match top.get("fallbacks") {
        None => None,
        Some(v) => object(v, "fallbacks", &mut errors).map(|f| FallbackMembers {
            lacf: f.get("lacf").map(|v| boolean(Some(v), true)),
            ipf: f.get("ipf").map(|v| boolean(Some(v), true)),
        }),
    };

    let blue = entries(top, "bluetoothBeacons", &mut errors, blue_entry);
    let wifi = entries(top, "wifiAccessPoints", &mut errors, wifi_entry);
    let cell = entries(top, "cellTowers", &mut errors, |e, p, errs| {
        cell_entry(e, p, errs, top_radio)
    });

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(LocateBody {
        input: QueryInput {
            wifi,
            blue,
            cell,
            fallbacks: Fallbacks::resolve(consider_ip, fallbacks),
            has_ip: false,
        },
        confidence,
    })
}

/// The elements of array member `name`, each of which must be an object; only
/// the first [`MAX_RAW_ENTRIES`] are read, the rest ignored.
fn entries<T>(
    top: &Map<String, Value>,
    name: &str,
    errors: &mut Errors,
    parse: impl Fn(&Map<String, Value>, &str, &mut Errors) -> T,
) -> Vec<T> {
    let items = array(top.get(name), name, errors);
    let items = &items[..items.len().min(MAX_RAW_ENTRIES)];
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = join(name, i);
        if let Some(entry) = object(item, &path, errors) {
            out.push(parse(entry, &path, errors));
        }
    }
    out
}

fn field_int(
    entry: &Map<String, Value>,
    path: &str,
    name: &str,
    errors: &mut Errors,
) -> Option<i64> {
    // The error path is built only for an error: most fields have none.
    errors.value(try_int(entry.get(name)), || join(path, name))
}

fn field_str(
    entry: &Map<String, Value>,
    path: &str,
    name: &str,
    errors: &mut Errors,
) -> Option<String> {
    errors.value(try_string(entry.get(name)), || join(path, name))
}

fn blue_entry(entry: &Map<String, Value>, path: &str, errors: &mut Errors) -> BlueQuery {
    BlueQuery {
        mac: field_str(entry, path, "macAddress", errors).unwrap_or_default(),
        name: field_str(entry, path, "name", errors),
        age: field_int(entry, path, "age", errors),
        signal_strength: field_int(entry, path, "signalStrength", errors),
    }
}

fn wifi_entry(entry: &Map<String, Value>, path: &str, errors: &mut Errors) -> WifiQuery {
    WifiQuery {
        mac: field_str(entry, path, "macAddress", errors).unwrap_or_default(),
        ssid: field_str(entry, path, "ssid", errors),
        age: field_int(entry, path, "age", errors),
        channel: field_int(entry, path, "channel", errors),
        frequency: field_int(entry, path, "frequency", errors),
        signal_strength: field_int(entry, path, "signalStrength", errors),
        signal_to_noise_ratio: field_int(entry, path, "signalToNoiseRatio", errors),
    }
}

fn cell_entry(
    entry: &Map<String, Value>,
    path: &str,
    errors: &mut Errors,
    top_radio: Option<RadioName>,
) -> CellQuery {
    let own = entry
        .get("radioType")
        .and_then(|value| radio(Some(value), &join(path, "radioType"), errors));
    // `psc` is type-checked, then overwritten by `primaryScramblingCode` (quirk).
    field_int(entry, path, "psc", errors);
    let radio = match own.or(top_radio) {
        Some(RadioName::Radio(r)) => Some(r),
        Some(RadioName::Cdma) | None => None,
    };
    CellQuery {
        radio,
        mcc: field_int(entry, path, "mobileCountryCode", errors),
        mnc: field_int(entry, path, "mobileNetworkCode", errors),
        lac: field_int(entry, path, "locationAreaCode", errors),
        cid: field_int(entry, path, "cellId", errors),
        psc: field_int(entry, path, "primaryScramblingCode", errors),
        age: field_int(entry, path, "age", errors),
        signal_strength: field_int(entry, path, "signalStrength", errors),
        timing_advance: field_int(entry, path, "timingAdvance", errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(v: Value) -> Vec<String> {
        parse(&v)
            .err()
            .map(|e| e.0.into_keys().collect())
            .unwrap_or_default()
    }

    #[test]
    fn top_level_must_be_an_object() {
        for v in [json!(null), json!([1]), json!("x"), json!(1)] {
            assert_eq!(paths(v.clone()), vec![String::new()], "{v}");
        }
        assert!(parse(&json!({})).is_ok());
        assert!(parse(&json!({"invalid": 0})).is_ok());
    }

    #[test]
    fn type_errors_name_their_paths() {
        assert_eq!(
            paths(json!({"wifiAccessPoints": [{"macAddress": 12}]})),
            vec!["wifiAccessPoints.0.macAddress"]
        );
        assert_eq!(
            paths(json!({"cellTowers": [{"radioType": "umts"}]})),
            vec!["cellTowers.0.radioType"]
        );
        assert_eq!(paths(json!({"radioType": "GSM"})), vec!["radioType"]);
        assert_eq!(paths(json!({"fallbacks": null})), vec!["fallbacks"]);
        assert_eq!(paths(json!({"fallbacks": 1})), vec!["fallbacks"]);
        assert_eq!(
            paths(json!({"wifiAccessPoints": null})),
            vec!["wifiAccessPoints"]
        );
        assert_eq!(
            paths(json!({"bluetoothBeacons": [null]})),
            vec!["bluetoothBeacons.0"]
        );
        assert_eq!(
            paths(json!({"cellTowers": [{"psc": "x", "cellId": "1.5"}], "carrier": 5})),
            vec!["carrier", "cellTowers.0.cellId", "cellTowers.0.psc"]
        );
    }

    #[test]
    fn fallback_flags() {
        let flags = |v: Value| parse(&v).map(|b| b.input.fallbacks).ok();
        let off = Some(Fallbacks {
            lacf: true,
            ipf: false,
        });
        assert_eq!(flags(json!({"considerIp": false})), off);
        assert_eq!(flags(json!({"considerIp": "false"})), off);
        assert_eq!(flags(json!({"considerIp": 0})), off);
        assert_eq!(
            flags(json!({"considerIp": "no"})),
            Some(Fallbacks::default())
        );
        assert_eq!(
            flags(json!({"considerIp": null})),
            Some(Fallbacks::default())
        );
        assert_eq!(
            flags(json!({"considerIp": false, "fallbacks": {}})),
            Some(Fallbacks::default())
        );
        assert_eq!(flags(json!({"fallbacks": {"ipf": false}})), off);
        assert_eq!(
            flags(json!({"fallbacks": {"lacf": "0", "ipf": null}})),
            Some(Fallbacks {
                lacf: false,
                ipf: true
            })
        );
    }

    #[test]
    fn radios_are_inherited_and_cdma_dropped() {
        let body = parse(&json!({
            "radioType": "gsm",
            "cellTowers": [
                {"cellId": 1},
                {"radioType": "lte", "cellId": 2},
                {"radioType": "cdma", "cellId": 3},
                {"radioType": "nr", "cellId": "4", "psc": 7},
                {"radioType": "", "cellId": 5, "primaryScramblingCode": 9.9}
            ]
        }))
        .unwrap();
        let radios: Vec<Option<Radio>> = body.input.cell.iter().map(|c| c.radio).collect();
        assert_eq!(
            radios,
            vec![
                Some(Radio::Gsm),
                Some(Radio::Lte),
                None,
                Some(Radio::Nr),
                Some(Radio::Gsm)
            ]
        );
        assert_eq!(body.input.cell[3].cid, Some(4));
        assert_eq!(body.input.cell[3].psc, None, "psc has no effect");
        assert_eq!(body.input.cell[4].psc, Some(9));
        let cdma_top = parse(&json!({"radioType": "cdma", "cellTowers": [{"cellId": 1}]})).unwrap();
        assert_eq!(cdma_top.input.cell[0].radio, None);
    }

    #[test]
    fn entries_are_coerced() {
        let body = parse(&json!({
            "wifiAccessPoints": [{"macAddress": "01:23:45:67:89:ab", "signalStrength": "-70",
                                  "channel": 6.9, "ssid": "x", "xtra": [1]}],
            "bluetoothBeacons": [{"macAddress": "", "name": "b", "age": true}]
        }))
        .unwrap();
        let w = &body.input.wifi[0];
        assert_eq!(w.mac, "01:23:45:67:89:ab");
        assert_eq!(w.signal_strength, Some(-70));
        assert_eq!(w.channel, Some(6));
        assert_eq!(w.ssid.as_deref(), Some("x"));
        let b = &body.input.blue[0];
        assert_eq!(b.mac, "");
        assert_eq!(b.age, Some(1));
    }

    #[test]
    fn entries_past_the_limit_are_ignored() {
        let mut wifi: Vec<Value> = (0..MAX_RAW_ENTRIES)
            .map(|n| json!({"macAddress": format!("02{n:010x}")}))
            .collect();
        // Past the limit: not read, so not even a type error.
        wifi.push(json!({"macAddress": "02ffffffffff", "signalStrength": "loud"}));
        wifi.push(json!("not an object"));
        let body = parse(&json!({ "wifiAccessPoints": wifi })).unwrap();
        assert_eq!(body.input.wifi.len(), MAX_RAW_ENTRIES);
        // Within the limit, errors still count.
        let bad = parse(&json!({"wifiAccessPoints": [{"signalStrength": "loud"}]}));
        assert!(bad.is_err());
    }
}
