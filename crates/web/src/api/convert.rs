//! Submit bodies of all three versions (api §6.2–§6.5) converted into the
//! internal report format: type coercion, legacy renaming, vocabularies, and the
//! filtering of entries without a MAC and of reports without any network.
//!
//! The body is converted while it is parsed ([`convert_text`]): one report and
//! one network entry at a time are held as `serde_json` values, members the
//! conversion does not read are skipped, and each report is written out as
//! JSON text as soon as it is complete. A request therefore costs its body plus
//! its output, not a `Value` tree of the whole body (which cost up to a hundred
//! times the body's size for bodies of many tiny reports). Reports and entries
//! that cannot contribute anything are dropped before they cost memory: a cell
//! entry without any of `mobileCountryCode`, `mobileNetworkCode`,
//! `locationAreaCode` and `cellId` is dropped (the original kept it as `{}`),
//! so a report of only such cells is dropped too.

use chrono::NaiveDateTime;
use ichnaea_core::ReportSource;
use serde::de::{DeserializeSeed, Deserializer as _, Error as _, IgnoredAny, MapAccess, SeqAccess};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::coerce::{Errors, array, int, join, object, string, try_float, try_int, try_string};
use super::lean::{Adapt, Container, KeyIndex, Lean, Shape};

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

/// One report ready for the incoming queue, as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportJson {
    /// `position.source` if sent, else `gnss`.
    pub source: ReportSource,
    /// The internal report object, serialised.
    pub json: String,
}

/// Why a submit body was refused.
#[derive(Debug)]
pub enum ConvertError {
    /// Not JSON (`details.decode`).
    Json(serde_json::Error),
    /// Type errors (`details.validation`).
    Invalid(Errors),
    /// More than [`MAX_REPORTS`] reports survived filtering (413).
    TooManyReports,
}

/// Most reports one submission may queue. Every report costs its queue item
/// (about 150 bytes at least, with its envelope), so a body of 450,000 tiny
/// reports (`{"cell":[{"cid":1}]}`, 21 bytes each) cost 30 times its size;
/// real clients send at most 950 (NeoStumbler), 85 (Tower Collector) or one
/// (geoclue) per request. Reports that are dropped do not count.
pub const MAX_REPORTS: usize = 10_000;

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
    radio: &'static str,
    blue_fields: Fields,
    cell_fields: Fields,
    wifi_fields: Fields,
    /// `[blue, cell, wifi]`.
    arrays: &'static [&'static str],
    /// Report members (other than the arrays) the conversion reads.
    report: fn(&str) -> Option<Shape>,
    /// Members of a Bluetooth, cell and Wi-Fi entry the conversion reads.
    blue_shape: fn(&str) -> Option<Shape>,
    cell_shape: fn(&str) -> Option<Shape>,
    wifi_shape: fn(&str) -> Option<Shape>,
}

fn has(fields: Fields, name: &str) -> bool {
    fields.iter().any(|(from, _, _)| *from == name)
}

fn scalar_if(kept: bool) -> Option<Shape> {
    kept.then_some(Shape::Scalar)
}

fn position_member(name: &str) -> Option<Shape> {
    scalar_if(POSITION_FLOATS.contains(&name) || matches!(name, "age" | "source"))
}

fn report_v2(name: &str) -> Option<Shape> {
    match name {
        "position" => Some(Shape::Object(position_member)),
        "timestamp" | "radioType" => Some(Shape::Scalar),
        _ => scalar_if(has(REPORT_MEMBERS, name)),
    }
}

fn report_v1(name: &str) -> Option<Shape> {
    scalar_if(
        matches!(name, "timestamp" | "radioType")
            || has(REPORT_MEMBERS, name)
            || position_member(name).is_some(),
    )
}

fn report_v0(name: &str) -> Option<Shape> {
    scalar_if(
        matches!(name, "time" | "radio" | "age" | "source")
            || POSITION_V0.iter().any(|(from, _)| *from == name),
    )
}

fn blue_new(name: &str) -> Option<Shape> {
    scalar_if(has(BLUE_NEW, name))
}
fn blue_v0(name: &str) -> Option<Shape> {
    scalar_if(has(BLUE_V0, name))
}
fn wifi_new(name: &str) -> Option<Shape> {
    scalar_if(has(WIFI_NEW, name))
}
fn wifi_v0(name: &str) -> Option<Shape> {
    scalar_if(has(WIFI_V0, name))
}
fn cell_v2(name: &str) -> Option<Shape> {
    scalar_if(name == "radioType" || has(CELL_V2, name))
}
fn cell_v1(name: &str) -> Option<Shape> {
    scalar_if(name == "radioType" || has(CELL_V1, name))
}
fn cell_v0(name: &str) -> Option<Shape> {
    scalar_if(name == "radio" || has(CELL_V0, name))
}

fn names(version: SubmitVersion) -> Names {
    match version {
        SubmitVersion::V2 | SubmitVersion::V1 => Names {
            radio: "radioType",
            blue_fields: BLUE_NEW,
            cell_fields: if version == SubmitVersion::V2 {
                CELL_V2
            } else {
                CELL_V1
            },
            wifi_fields: WIFI_NEW,
            arrays: &["bluetoothBeacons", "cellTowers", "wifiAccessPoints"],
            report: if version == SubmitVersion::V2 {
                report_v2
            } else {
                report_v1
            },
            blue_shape: blue_new,
            cell_shape: if version == SubmitVersion::V2 {
                cell_v2
            } else {
                cell_v1
            },
            wifi_shape: wifi_new,
        },
        SubmitVersion::V0 => Names {
            radio: "radio",
            blue_fields: BLUE_V0,
            cell_fields: CELL_V0,
            wifi_fields: WIFI_V0,
            arrays: &["blue", "cell", "wifi"],
            report: report_v0,
            blue_shape: blue_v0,
            cell_shape: cell_v0,
            wifi_shape: wifi_v0,
        },
    }
}

/// Converts a decoded submit body held as a `Value` (tests and tools; the
/// endpoints use [`convert_text`]). `now_ms` replaces missing or implausible
/// timestamps.
pub fn convert(body: &Value, version: SubmitVersion, now_ms: i64) -> Converted {
    match convert_text(&body.to_string(), version, now_ms) {
        Ok(reports) => Ok(reports
            .into_iter()
            .map(|r| Report {
                source: r.source,
                report: serde_json::from_str(&r.json).unwrap_or_default(),
            })
            .collect()),
        Err(ConvertError::Invalid(errors)) => Err(errors),
        Err(ConvertError::Json(e)) => {
            let mut errors = Errors::default();
            errors.add("", e.to_string());
            Err(errors)
        }
        Err(ConvertError::TooManyReports) => {
            let mut errors = Errors::default();
            errors.add("items", format!("more than {MAX_REPORTS} reports"));
            Err(errors)
        }
    }
}

/// Converts a submit body's JSON text (from [`super::body::decode_text`])
/// while parsing it: the reports that survive filtering, in request order, or
/// why the body was refused. `now_ms` replaces missing or implausible
/// timestamps.
pub fn convert_text(
    text: &str,
    version: SubmitVersion,
    now_ms: i64,
) -> Result<Vec<ReportJson>, ConvertError> {
    let mut ctx = Ctx {
        version,
        now_ms,
        names: names(version),
        errors: Errors::default(),
        out: Vec::new(),
        too_many: false,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    (&mut de)
        .deserialize_any(Adapt(Root(&mut ctx)))
        .map_err(ConvertError::Json)?;
    de.end().map_err(ConvertError::Json)?;
    if !ctx.errors.is_empty() {
        Err(ConvertError::Invalid(ctx.errors))
    } else if ctx.too_many {
        Err(ConvertError::TooManyReports)
    } else {
        Ok(ctx.out)
    }
}

/// The state of one conversion.
struct Ctx {
    version: SubmitVersion,
    now_ms: i64,
    names: Names,
    errors: Errors,
    out: Vec<ReportJson>,
    /// A report past [`MAX_REPORTS`] survived: the rest is only checked
    /// for type errors, nothing more is kept.
    too_many: bool,
}

/// The body: an object whose `items` are the reports; without `items` (Tower
/// Collector's empty upload, `{}`) there are no reports. The original
/// answered 400 `{"items": "Required"}` there.
struct Root<'c>(&'c mut Ctx);

impl<'de> Container<'de> for Root<'_> {
    type Out = ();

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key_seed(KeyIndex(&["items"]))? {
            if key.is_none() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            // A repeated member replaces the earlier one, as in a JSON object.
            if seen {
                self.0.out.clear();
                self.0.errors = Errors::default();
                self.0.too_many = false;
            }
            seen = true;
            map.next_value_seed(Items(&mut *self.0))?;
        }
        Ok(())
    }

    fn other(self, value: Value) {
        object(&value, "", &mut self.0.errors);
    }
}

/// The `items` array, converted report by report.
struct Items<'c>(&'c mut Ctx);

impl<'de> DeserializeSeed<'de> for Items<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Adapt(self))
    }
}

impl<'de> Container<'de> for Items<'_> {
    type Out = ();

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq
            .next_element_seed(Item {
                ctx: &mut *self.0,
                index,
            })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }

    fn other(self, value: Value) {
        array(Some(&value), "items", &mut self.0.errors);
    }
}

/// One report: its members the conversion reads are kept as values, its
/// network arrays as JSON text, converted entry by entry once the report's
/// radio is known.
struct Item<'c> {
    ctx: &'c mut Ctx,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for Item<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Adapt(self))
    }
}

impl<'de> Container<'de> for Item<'_> {
    type Out = ();

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let names = &self.ctx.names;
        let mut members = Map::new();
        let mut arrays: [Option<&'de RawValue>; 3] = [None; 3];
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if let Some(slot) = names.arrays.iter().position(|a| *a == name) {
                arrays[slot] = Some(map.next_value()?);
            } else if let Some(shape) = (names.report)(&name) {
                let value = map.next_value_seed(Lean(shape))?;
                members.insert(name.into_owned(), value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        self.ctx
            .report(self.index, &members, arrays)
            .map_err(A::Error::custom)
    }

    fn other(self, value: Value) {
        object(&value, &join("items", self.index), &mut self.ctx.errors);
    }
}

impl Ctx {
    /// Converts one report and keeps it when it has a network entry left
    /// (and the request no type error so far).
    fn report(
        &mut self,
        index: usize,
        item: &Map<String, Value>,
        arrays: [Option<&RawValue>; 3],
    ) -> Result<(), serde_json::Error> {
        let path = join("items", index);
        let (version, errors) = (self.version, &mut self.errors);
        let mut out = Map::new();
        let timestamp = report_timestamp(item, &path, version, errors).unwrap_or(self.now_ms);
        out.insert("timestamp".into(), Value::from(timestamp));
        if version != SubmitVersion::V0 {
            let report_path = || path.clone();
            for (from, to, kind) in REPORT_MEMBERS {
                copy(item, &mut out, &report_path, from, to, *kind, errors);
            }
        }
        let position = report_position(item, &path, version, errors);
        let source = position
            .as_ref()
            .and_then(|p| p.get("source"))
            .and_then(Value::as_str)
            .and_then(ReportSource::from_name)
            .unwrap_or(ReportSource::Gnss);
        if let Some(position) = position {
            out.insert("position".into(), position);
        }
        let n = &self.names;
        let report_radio = radio(string(item.get(n.radio), &join(&path, n.radio), errors));
        let kinds = [
            (n.blue_fields, n.blue_shape, EntryKind::Blue),
            (n.cell_fields, n.cell_shape, EntryKind::Cell(report_radio)),
            (n.wifi_fields, n.wifi_shape, EntryKind::Wifi),
        ];
        let mut lists = [String::new(), String::new(), String::new()];
        for (slot, (fields, shape, kind)) in kinds.into_iter().enumerate() {
            let Some(raw) = arrays[slot] else { continue };
            let mut entries = Entries {
                list_path: join(&path, n.arrays[slot]),
                radio_name: n.radio,
                fields,
                shape,
                kind,
                errors: &mut *errors,
                out: &mut lists[slot],
            };
            let mut de = serde_json::Deserializer::from_str(raw.get());
            (&mut de).deserialize_any(Adapt(&mut entries))?;
        }
        if lists.iter().all(String::is_empty) || !errors.is_empty() {
            return Ok(());
        }
        if self.too_many {
            return Ok(());
        }
        let mut json = String::with_capacity(lists.iter().map(String::len).sum::<usize>() + 160);
        for (name, list) in ["bluetoothBeacons", "cellTowers", "wifiAccessPoints"]
            .into_iter()
            .zip(&lists)
        {
            json.push_str(if json.is_empty() { "{\"" } else { ",\"" });
            json.push_str(name);
            json.push_str("\":[");
            json.push_str(list);
            json.push(']');
        }
        for (name, value) in &out {
            json.push(',');
            json.push_str(&Value::String(name.clone()).to_string());
            json.push(':');
            json.push_str(&value.to_string());
        }
        json.push('}');
        if self.out.len() >= MAX_REPORTS {
            self.too_many = true;
            self.out = Vec::new();
        }
        if !self.too_many {
            self.out.push(ReportJson { source, json });
        }
        Ok(())
    }
}

/// Which network array is being converted.
#[derive(Clone, Copy)]
enum EntryKind {
    Blue,
    Wifi,
    /// Cells, with the report's radio they inherit.
    Cell(Option<&'static str>),
}

/// One network array of a report, converted entry by entry into `out` (the
/// JSON text of the kept entries, separated by commas).
struct Entries<'e> {
    list_path: String,
    radio_name: &'static str,
    fields: Fields,
    shape: fn(&str) -> Option<Shape>,
    kind: EntryKind,
    errors: &'e mut Errors,
    out: &'e mut String,
}

impl<'de> Container<'de> for &mut Entries<'_> {
    type Out = ();

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(entry) = seq.next_element_seed(Lean(Shape::Object(self.shape)))? {
            self.entry(index, &entry);
            index += 1;
        }
        Ok(())
    }

    fn other(self, value: Value) {
        array(Some(&value), &self.list_path, self.errors);
    }
}

/// Cell members without which a cell cannot contribute anything.
const CELL_IDENTITY: [&str; 4] = [
    "mobileCountryCode",
    "mobileNetworkCode",
    "locationAreaCode",
    "cellId",
];

impl Entries<'_> {
    /// Converts entry `index`; Bluetooth and Wi-Fi entries without a MAC and
    /// cells without any identity member are dropped.
    fn entry(&mut self, index: usize, entry: &Value) {
        let list_path = &self.list_path;
        let entry_path = || join(list_path, index);
        let Some(input) = entry.as_object() else {
            object(entry, &entry_path(), self.errors);
            return;
        };
        let mut converted = Map::new();
        if let EntryKind::Cell(report_radio) = self.kind {
            let own = radio(
                self.errors
                    .value(try_string(input.get(self.radio_name)), || {
                        join(&entry_path(), self.radio_name)
                    }),
            );
            if let Some(r) = own.or(report_radio) {
                converted.insert("radioType".into(), Value::from(r));
            }
        }
        for (from, to, kind) in self.fields {
            copy(
                input,
                &mut converted,
                &entry_path,
                from,
                to,
                *kind,
                self.errors,
            );
        }
        let usable = match self.kind {
            EntryKind::Blue | EntryKind::Wifi => converted.contains_key("macAddress"),
            EntryKind::Cell(_) => CELL_IDENTITY.iter().any(|k| converted.contains_key(*k)),
        };
        if !usable || !self.errors.is_empty() {
            return;
        }
        if !self.out.is_empty() {
            self.out.push(',');
        }
        self.out.push_str(&Value::Object(converted).to_string());
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
                json!({"items": [{"timestamp": 146000000000i64, "position": {"source": sent}, "cellTowers": [{"cellId": 1}]}]}),
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
            json!({"items": [{"timestamp": 1460000000000i64, "cellTowers": [{}, {"lac": 1}, {"cellId": 1}]}]}),
            SubmitVersion::V2,
        );
        assert_eq!(r[0].report["timestamp"], json!(1_460_000_000_000i64));
        assert_eq!(r[0].report["position"], Value::Null);
        assert_eq!(
            r[0].report["cellTowers"],
            json!([{"cellId": 1}]),
            "cells without an identity member are dropped"
        );
        for useless in [
            json!({"items": [{"cellTowers": [{}]}]}),
            json!({"items": [{"radioType": "gsm", "cellTowers": [{}, {"age": 1, "signalStrength": -60}]}]}),
            json!({"items": [{"cellTowers": [{"radioType": "lte", "serving": 1}]}]}),
        ] {
            assert!(
                ok(useless.clone(), SubmitVersion::V2).is_empty(),
                "{useless}: a report of cells that cannot contribute is dropped"
            );
        }
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
            json!({"items": [{"position": {"latitude": 1.0}, "cellTowers": [{"cellId": 1}]}]}),
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
