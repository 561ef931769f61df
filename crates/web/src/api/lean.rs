//! Bounded JSON parsing of API bodies: only the members the endpoints read are
//! kept, arrays keep at most a given number of elements, and a value of the
//! wrong kind is kept only as a small sample (enough for its type error).
//!
//! `serde_json::Value` costs tens to hundreds of bytes per object, so parsing a
//! hostile body such as a million `{}` entries into a `Value` tree cost 25–100
//! times the body's size. A [`Shape`] says what to keep; everything else is
//! skipped while parsing, without allocating.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// What to keep of a JSON value.
#[derive(Clone, Copy)]
pub enum Shape {
    /// A value read by the scalar coercion rules: scalars are kept as they
    /// are; an array or object is reduced to a [sample](SAMPLE_WIDTH).
    Scalar,
    /// An object: members for which the function gives a shape are kept with
    /// it, the others are skipped. Any other kind of value is sampled.
    Object(fn(&str) -> Option<Shape>),
    /// An array: the first `max` elements are kept with the shape, the rest are
    /// skipped. Any other kind of value is sampled.
    Array(&'static Shape, usize),
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Scalar => f.write_str("Scalar"),
            Shape::Object(_) => f.write_str("Object"),
            Shape::Array(shape, max) => write!(f, "Array({shape:?}, {max})"),
        }
    }
}

/// Members (or elements) a sampled array or object keeps at each level.
pub const SAMPLE_WIDTH: usize = 3;
/// Levels a sample keeps; deeper non-empty values become `[null]` / `{"": null}`.
const SAMPLE_DEPTH: u8 = 3;

/// Parses `text` keeping what `shape` says; syntax errors as serde_json's.
pub fn parse(text: &str, shape: Shape) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Lean(shape).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A [`DeserializeSeed`] keeping what its shape says.
#[derive(Clone, Copy, Debug)]
pub struct Lean(pub Shape);

/// A [`DeserializeSeed`] of a sample of any value, `depth` levels down.
#[derive(Clone, Copy, Debug)]
pub struct Sample(pub u8);

/// A visitor of values that are expected to be containers: `map` and `seq`
/// receive objects and arrays (by default sampled and handed to `other`),
/// `other` receives every other value.
pub trait Container<'de>: Sized {
    /// What the visit produces.
    type Out;

    /// An object.
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Out, A::Error> {
        let sampled = Sample(0).visit_map(map)?;
        Ok(self.other(sampled))
    }

    /// An array.
    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Out, A::Error> {
        let sampled = Sample(0).visit_seq(seq)?;
        Ok(self.other(sampled))
    }

    /// Any other value, or a sampled container.
    fn other(self, value: Value) -> Self::Out;
}

/// Adapts a [`Container`] into a serde [`Visitor`].
#[derive(Debug)]
pub struct Adapt<T>(pub T);

impl<'de, T: Container<'de>> Visitor<'de> for Adapt<T> {
    type Value = T::Out;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T::Out, E> {
        Ok(self.0.other(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T::Out, E> {
        Ok(self.0.other(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T::Out, E> {
        Ok(self.0.other(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T::Out, E> {
        Ok(self.0.other(Value::from(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T::Out, E> {
        Ok(self.0.other(Value::String(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<T::Out, E> {
        Ok(self.0.other(Value::String(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<T::Out, E> {
        Ok(self.0.other(Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<T::Out, E> {
        Ok(self.0.other(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<T::Out, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T::Out, A::Error> {
        self.0.map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T::Out, A::Error> {
        self.0.seq(seq)
    }
}

/// Passes scalars through.
struct Keep;

impl Container<'_> for Keep {
    type Out = Value;
    fn other(self, value: Value) -> Value {
        value
    }
}

impl<'de> DeserializeSeed<'de> for Sample {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Sample {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Adapt(Keep).visit_bool(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Adapt(Keep).visit_i64(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Adapt(Keep).visit_u64(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Adapt(Keep).visit_f64(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Adapt(Keep).visit_str(v)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Adapt(Keep).visit_string(v)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut kept = Vec::new();
        while let Some(()) = next_sampled(&mut seq, self.0, &mut kept)? {}
        Ok(Value::Array(kept))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if self.0 < SAMPLE_DEPTH && kept.len() < SAMPLE_WIDTH {
                let value = map.next_value_seed(Sample(self.0 + 1))?;
                kept.insert(key.into_owned(), value);
            } else {
                map.next_value::<IgnoredAny>()?;
                if self.0 >= SAMPLE_DEPTH && kept.is_empty() {
                    kept.insert(String::new(), Value::Null);
                }
            }
        }
        Ok(Value::Object(kept))
    }
}

/// One element of a sampled array: kept while the sample has room, else skipped
/// (a too-deep non-empty array keeps one `null` to stay non-empty).
fn next_sampled<'de, A: SeqAccess<'de>>(
    seq: &mut A,
    depth: u8,
    kept: &mut Vec<Value>,
) -> Result<Option<()>, A::Error> {
    if depth < SAMPLE_DEPTH && kept.len() < SAMPLE_WIDTH {
        Ok(seq
            .next_element_seed(Sample(depth + 1))?
            .map(|v| kept.push(v)))
    } else {
        let skipped = seq.next_element::<IgnoredAny>()?;
        if skipped.is_some() && depth >= SAMPLE_DEPTH && kept.is_empty() {
            kept.push(Value::Null);
        }
        Ok(skipped.map(|_| ()))
    }
}

impl<'de> DeserializeSeed<'de> for Lean {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(Adapt(self))
    }
}

impl<'de> Container<'de> for Lean {
    type Out = Value;

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Shape::Object(member) = self.0 else {
            return Sample(0).visit_map(map);
        };
        let mut kept = Map::new();
        while let Some(key) = map.next_key_seed(KeyShape(member))? {
            match key {
                Some((name, shape)) => {
                    let value = map.next_value_seed(Lean(shape))?;
                    kept.insert(name, value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let Shape::Array(element, max) = self.0 else {
            return Sample(0).visit_seq(seq);
        };
        let mut kept = Vec::new();
        while kept.len() < max {
            match seq.next_element_seed(Lean(*element))? {
                Some(value) => kept.push(value),
                None => return Ok(Value::Array(kept)),
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Array(kept))
    }

    fn other(self, value: Value) -> Value {
        value
    }
}

/// A member name, owned only when the member is kept.
struct KeyShape(fn(&str) -> Option<Shape>);

impl<'de> DeserializeSeed<'de> for KeyShape {
    type Value = Option<(String, Shape)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyShape {
    type Value = Option<(String, Shape)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok((self.0)(v).map(|shape| (v.to_owned(), shape)))
    }
}

/// A member name compared with a fixed list, never allocated: the index of the
/// name in the list, or `None`.
pub struct KeyIndex(pub &'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeyIndex {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIndex {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|name| *name == v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(name: &str) -> Option<Shape> {
        matches!(name, "a" | "b").then_some(Shape::Scalar)
    }
    static ENTRY: Shape = Shape::Object(entry);
    fn top(name: &str) -> Option<Shape> {
        match name {
            "list" => Some(Shape::Array(&ENTRY, 2)),
            "x" => Some(Shape::Scalar),
            _ => None,
        }
    }

    #[test]
    fn keeps_known_members_and_caps_arrays() {
        let v = parse(
            r#"{"x": 1, "y": [1, 2], "list": [{"a": 1, "c": 2}, {"b": "s"}, {"a": 3}], "x": "last"}"#,
            Shape::Object(top),
        )
        .unwrap();
        assert_eq!(v, json!({"x": "last", "list": [{"a": 1}, {"b": "s"}]}));
    }

    #[test]
    fn wrong_kinds_are_sampled() {
        let v = parse(
            r#"{"x": [1, 2, 3, 4, 5], "list": {"k": [[[[1]]]], "l": 2, "m": 3, "n": 4}}"#,
            Shape::Object(top),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"x": [1, 2, 3], "list": {"k": [[[null]]], "l": 2, "m": 3}})
        );
        assert_eq!(
            parse("[{}, [], {\"a\": {}}]", Shape::Object(top)).unwrap(),
            json!([{}, [], {"a": {}}])
        );
        assert_eq!(parse("null", Shape::Object(top)).unwrap(), json!(null));
        assert_eq!(
            parse("{\"x\": {\"a\": [[{\"b\": 1}]]}}", Shape::Object(top)).unwrap(),
            json!({"x": {"a": [[{"": null}]]}})
        );
    }

    #[test]
    fn syntax_errors_and_trailing_data() {
        assert!(parse("{\"x\": 1} x", Shape::Scalar).is_err());
        assert!(parse("{\"x\": ", Shape::Object(top)).is_err());
        // Nesting below a sample is skipped without recursion, at any depth.
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(parse(&deep, Shape::Scalar).unwrap(), json!([[[[null]]]]));
        assert_eq!(
            parse(&deep, Shape::Object(top)).unwrap(),
            json!([[[[null]]]])
        );
        assert!(parse(&deep[1..], Shape::Scalar).is_err(), "unbalanced");
        // Kept values nest at most as deep as the shape.
        let deep_member = format!("{{\"list\": [{{\"a\": {deep}}}]}}");
        assert_eq!(
            parse(&deep_member, Shape::Object(top)).unwrap(),
            json!({"list": [{"a": [[[[null]]]]}]})
        );
    }
}
