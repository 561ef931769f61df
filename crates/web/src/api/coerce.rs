//! The schema coercion rules shared by every API body (api §2.4): how a JSON
//! value of any type becomes an integer, float, string, boolean, array or object,
//! or "absent", or a type error that fails the whole request.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Stand-in for the literals `NaN`, `Infinity` and `-Infinity`, which the body
/// parser accepts and replaces with this string (no real client sends a NUL).
pub const NONFINITE: &str = "\u{0}nonfinite";

/// Type errors by dotted input path (`items.0.wifiAccessPoints.0.macAddress`).
#[derive(Debug, Default)]
pub struct Errors(pub BTreeMap<String, String>);

/// Most type errors one request reports: the first ones found, in body order.
/// A body of a million wrong values would otherwise cost (and answer) a map of a
/// million paths; no real client makes more than a few mistakes at once.
pub const MAX_ERRORS: usize = 100;

impl Errors {
    /// Records a type error at `path` (the first message per path, and only
    /// the first [`MAX_ERRORS`] paths).
    pub fn add(&mut self, path: &str, message: impl Into<String>) {
        if self.0.len() >= MAX_ERRORS && !self.0.contains_key(path) {
            return;
        }
        self.0
            .entry(path.to_string())
            .or_insert_with(|| message.into());
    }

    /// The coerced value of a `try_*` rule, or `None` after recording its type
    /// error at the path `path` builds: callers whose paths are built per member
    /// pay for the path only when there is an error.
    pub fn value<T>(
        &mut self,
        coerced: Result<Option<T>, String>,
        path: impl FnOnce() -> String,
    ) -> Option<T> {
        coerced.unwrap_or_else(|message| {
            self.add(&path(), message);
            None
        })
    }

    /// True when no error was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `parent.member` (or `member` at the top level).
pub fn join(parent: &str, member: impl std::fmt::Display) -> String {
    if parent.is_empty() {
        member.to_string()
    } else {
        format!("{parent}.{member}")
    }
}

fn is_nonfinite(v: &Value) -> bool {
    matches!(v, Value::String(s) if s == NONFINITE)
}

/// Missing, `null`, `""`, `[]` and `{}`: absent for integers and floats.
fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn describe(v: &Value) -> String {
    if is_nonfinite(v) {
        return "non-finite number".into();
    }
    let text = v.to_string();
    if text.len() > 40 {
        format!("{}…", &text[..text.floor_char_boundary(40)])
    } else {
        text
    }
}

/// Integer kind: integral numbers as they are, fractions truncated toward zero,
/// booleans 1/0, strings of base-10 digits with an optional sign.
pub fn int(value: Option<&Value>, path: &str, errors: &mut Errors) -> Option<i64> {
    errors.value(try_int(value), || path.to_string())
}

/// [`int`] without a path: `Err` carries the type error's message, so callers
/// build the error path only when there is an error.
pub fn try_int(value: Option<&Value>) -> Result<Option<i64>, String> {
    let Some(v) = value else { return Ok(None) };
    if is_empty_value(v) {
        return Ok(None);
    }
    let result = match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.trunc() as i64)
            }),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::String(s) if !is_nonfinite(v) => parse_int(s.trim()),
        _ => None,
    };
    match result {
        Some(i) => Ok(Some(i)),
        None => Err(format!("{} is not an integer", describe(v))),
    }
}

fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.strip_prefix('+').unwrap_or(s).parse().ok()
}

/// Float kind: numbers, booleans 1.0/0.0, decimal strings; non-finite values
/// (including `"nan"`, `"inf"`) become absent.
pub fn float(value: Option<&Value>, path: &str, errors: &mut Errors) -> Option<f64> {
    errors.value(try_float(value), || path.to_string())
}

/// [`float`] without a path; `Err` carries the type error's message.
pub fn try_float(value: Option<&Value>) -> Result<Option<f64>, String> {
    let Some(v) = value else { return Ok(None) };
    if is_empty_value(v) || is_nonfinite(v) {
        return Ok(None);
    }
    let parsed = match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match parsed {
        Some(f) if f.is_finite() => Ok(Some(f)),
        Some(_) => Ok(None),
        None => Err(format!("{} is not a number", describe(v))),
    }
}

/// String kind: non-empty strings as they are; falsy values absent; anything else
/// a type error.
pub fn string(value: Option<&Value>, path: &str, errors: &mut Errors) -> Option<String> {
    errors.value(try_string(value), || path.to_string())
}

/// [`string`] without a path; `Err` carries the type error's message.
pub fn try_string(value: Option<&Value>) -> Result<Option<String>, String> {
    let Some(v) = value else { return Ok(None) };
    match v {
        Value::String(_) if is_nonfinite(v) => Err(format!("{} is not a string", describe(v))),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Null | Value::Bool(false) => Ok(None),
        Value::Number(n) if n.as_f64() == Some(0.0) => Ok(None),
        Value::Array(a) if a.is_empty() => Ok(None),
        Value::Object(o) if o.is_empty() => Ok(None),
        other => Err(format!("{} is not a string", describe(other))),
    }
}

/// Boolean kind (`considerIp`, `fallbacks.lacf`, `fallbacks.ipf`): missing gives
/// `default`; `false`, integer `0`, `"false"` and `"0"` (any case) are false;
/// everything else, `null` and `0.0` included, is true.
pub fn boolean(value: Option<&Value>, default: bool) -> bool {
    match value {
        None => default,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => !(n.is_i64() || n.is_u64()) || n.as_i64() != Some(0),
        Some(Value::String(s)) => !(s.eq_ignore_ascii_case("false") || s == "0"),
        Some(_) => true,
    }
}

/// Array kind: missing gives an empty list; anything but an array (`null`
/// included) is a type error.
pub fn array<'a>(value: Option<&'a Value>, path: &str, errors: &mut Errors) -> &'a [Value] {
    match value {
        None => &[],
        Some(Value::Array(items)) => items,
        Some(other) => {
            errors.add(path, format!("{} is not iterable", describe(other)));
            &[]
        }
    }
}

/// Object kind: anything but an object (`null` included) is a type error.
pub fn object<'a>(
    value: &'a Value,
    path: &str,
    errors: &mut Errors,
) -> Option<&'a Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map),
        other => {
            errors.add(path, format!("{} is not a mapping type", describe(other)));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn i(v: Value) -> (Option<i64>, bool) {
        let mut e = Errors::default();
        let r = int(Some(&v), "x", &mut e);
        (r, !e.is_empty())
    }
    fn f(v: Value) -> (Option<f64>, bool) {
        let mut e = Errors::default();
        let r = float(Some(&v), "x", &mut e);
        (r, !e.is_empty())
    }
    fn s(v: Value) -> (Option<String>, bool) {
        let mut e = Errors::default();
        let r = string(Some(&v), "x", &mut e);
        (r, !e.is_empty())
    }

    #[test]
    fn integers() {
        for empty in [json!(null), json!(""), json!([]), json!({})] {
            assert_eq!(i(empty), (None, false));
        }
        assert_eq!(i(json!(68719476735i64)), (Some(68_719_476_735), false));
        assert_eq!(i(json!(-70.9)), (Some(-70), false));
        assert_eq!(i(json!(true)), (Some(1), false));
        assert_eq!(i(json!("01")), (Some(1), false));
        assert_eq!(i(json!(" 12 ")), (Some(12), false));
        assert_eq!(i(json!("-3")), (Some(-3), false));
        for bad in [
            json!("12.5"),
            json!("0x10"),
            json!("abc"),
            json!(" "),
            json!(NONFINITE),
            json!([1]),
            json!({"a": 1}),
        ] {
            assert_eq!(i(bad.clone()), (None, true), "{bad}");
        }
    }

    #[test]
    fn floats() {
        assert_eq!(f(json!(1.5)), (Some(1.5), false));
        assert_eq!(f(json!(false)), (Some(0.0), false));
        assert_eq!(f(json!(" 1e3 ")), (Some(1000.0), false));
        for absent in [
            json!(null),
            json!(""),
            json!(NONFINITE),
            json!("nan"),
            json!("-Infinity"),
            json!("INF"),
        ] {
            assert_eq!(f(absent.clone()), (None, false), "{absent}");
        }
        assert_eq!(f(json!("abc")), (None, true));
        assert_eq!(f(json!([1])), (None, true));
    }

    #[test]
    fn strings() {
        assert_eq!(s(json!("abc")), (Some("abc".into()), false));
        for absent in [
            json!(null),
            json!(""),
            json!(0),
            json!(0.0),
            json!(false),
            json!([]),
            json!({}),
        ] {
            assert_eq!(s(absent.clone()), (None, false), "{absent}");
        }
        for bad in [
            json!(5),
            json!(true),
            json!([1]),
            json!({"a": 1}),
            json!(NONFINITE),
        ] {
            assert_eq!(s(bad.clone()), (None, true), "{bad}");
        }
    }

    #[test]
    fn booleans() {
        assert!(boolean(None, true));
        for f in [
            json!(false),
            json!(0),
            json!(-0),
            json!("false"),
            json!("FALSE"),
            json!("0"),
        ] {
            assert!(!boolean(Some(&f), true), "{f}");
        }
        for t in [
            json!(null),
            json!(0.0),
            json!(""),
            json!("no"),
            json!([]),
            json!({}),
            json!(1),
        ] {
            assert!(boolean(Some(&t), true), "{t}");
        }
    }

    #[test]
    fn arrays_and_objects() {
        let mut e = Errors::default();
        assert!(array(None, "a", &mut e).is_empty());
        assert!(e.is_empty());
        assert!(array(Some(&json!(null)), "a", &mut e).is_empty());
        assert!(array(Some(&json!("x")), "b", &mut e).is_empty());
        assert!(object(&json!(null), "c", &mut e).is_none());
        assert_eq!(e.0.keys().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    }
}
