//! Request body decoding shared by the five API endpoints (spec api §2.3): optional
//! gzip with size limits, charset decoding, and JSON that tolerates the
//! non-standard literals `NaN`, `Infinity` and `-Infinity`.

use std::io::Read;

use axum::http::{HeaderMap, header};
use serde_json::Value;

use super::coerce::NONFINITE;
use super::error::{ApiError, ParseDetails};

/// Size limits protecting the service from huge or expanding bodies.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// Largest body accepted on the wire (compressed, if gzip).
    pub max_body: usize,
    /// Largest body after gunzip; decompression stops one byte past it, so a gzip
    /// bomb costs at most this much memory and time.
    pub max_decoded: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_body: 10 * 1024 * 1024,
            max_decoded: 10 * 1024 * 1024,
        }
    }
}

/// A decoded body: nothing at all, or a JSON value.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// Zero bytes after decoding (a GET, Firefox's empty POST).
    Empty,
    /// Parsed JSON.
    Json(Value),
}

fn decode_error(message: impl Into<String>) -> ApiError {
    ApiError::Parse(Some(ParseDetails::Decode(message.into())))
}

/// Gunzips when `Content-Encoding` is exactly `gzip`, decodes the declared
/// charset (default UTF-8), and parses JSON.
pub fn decode(headers: &HeaderMap, raw: &[u8], limits: BodyLimits) -> Result<Decoded, ApiError> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let inflated;
    let bytes: &[u8] = if gzip && !raw.is_empty() {
        inflated = gunzip(raw, limits.max_decoded)?;
        &inflated
    } else {
        if raw.len() > limits.max_decoded {
            return Err(ApiError::PayloadTooLarge);
        }
        raw
    };
    let text = decode_charset(headers, bytes)?;
    if text.is_empty() {
        return Ok(Decoded::Empty);
    }
    parse_json(&text).map(Decoded::Json)
}

/// Inflated sizes up to this are decoded in a single pass into a growing buffer.
const SINGLE_PASS_BYTES: usize = 256 * 1024;

/// Inflates a (multi-member) gzip stream, refusing output beyond `limit` bytes.
///
/// Bodies that inflate to at most [`SINGLE_PASS_BYTES`] (every locate query and
/// most submissions) are decoded once. Larger ones get a first pass that only
/// counts the inflated bytes (stopping one past the limit), so a gzip bomb is
/// refused without allocating more than that first buffer; the second pass fills
/// a buffer of exactly the right size.
pub fn gunzip(raw: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let gzip_error = |e: std::io::Error| decode_error(format!("gzip: {e}"));
    let first = limit.min(SINGLE_PASS_BYTES);
    let mut out = Vec::new();
    let read = flate2::read::MultiGzDecoder::new(raw)
        .take(first as u64 + 1)
        .read_to_end(&mut out)
        .map_err(gzip_error)?;
    if read <= first {
        return Ok(out);
    }
    if first == limit {
        return Err(ApiError::PayloadTooLarge);
    }
    drop(out);
    let mut counter = flate2::read::MultiGzDecoder::new(raw).take(limit as u64 + 1);
    let size = std::io::copy(&mut counter, &mut std::io::sink()).map_err(gzip_error)?;
    if size > limit as u64 {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut out = Vec::with_capacity(size as usize);
    flate2::read::MultiGzDecoder::new(raw)
        .read_to_end(&mut out)
        .map_err(gzip_error)?;
    Ok(out)
}

fn charset(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    value.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

fn decode_charset<'a>(
    headers: &HeaderMap,
    bytes: &'a [u8],
) -> Result<std::borrow::Cow<'a, str>, ApiError> {
    let label = charset(headers);
    let encoding = match label.as_deref() {
        None => encoding_rs::UTF_8,
        // WHATWG labels, plus Python-style spellings such as `latin-1` / `utf_8`.
        Some(label) => encoding_rs::Encoding::for_label(label.as_bytes())
            .or_else(|| encoding_rs::Encoding::for_label(label.replace(['-', '_'], "").as_bytes()))
            .ok_or_else(|| decode_error(format!("unknown charset {label:?}")))?,
    };
    if encoding == encoding_rs::UTF_8 {
        return std::str::from_utf8(bytes)
            .map(std::borrow::Cow::Borrowed)
            .map_err(|e| decode_error(format!("invalid utf-8: {e}")));
    }
    encoding
        .decode_without_bom_handling_and_without_replacement(bytes)
        .ok_or_else(|| decode_error(format!("invalid {} text", encoding.name())))
}

/// Parses JSON, accepting `NaN`, `Infinity` and `-Infinity` outside strings as
/// the original's parser did; they become the [`NONFINITE`] marker string, which
/// the coercion rules treat as a non-finite number.
pub fn parse_json(text: &str) -> Result<Value, ApiError> {
    let result = if text.contains("NaN") || text.contains("Infinity") {
        serde_json::from_str(&replace_nonfinite(text))
    } else {
        serde_json::from_str(text)
    };
    result.map_err(|e| decode_error(format!("invalid JSON: {e}")))
}

fn replace_nonfinite(text: &str) -> String {
    let marker = format!("\"{}\"", NONFINITE.replace('\u{0}', "\\u0000"));
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 32);
    let (mut i, mut start) = (0, 0);
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        let token = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| bytes[i..].starts_with(t.as_bytes()));
        match (b, token) {
            (b'"', _) => {
                in_string = true;
                i += 1;
            }
            (_, Some(t)) => {
                out.push_str(&text[start..i]);
                out.push_str(&marker);
                i += t.len();
                start = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn is_decode_error(r: Result<Decoded, ApiError>) -> bool {
        matches!(r, Err(ApiError::Parse(Some(ParseDetails::Decode(_)))))
    }

    #[test]
    fn plain_gzip_and_multi_member() {
        let limits = BodyLimits::default();
        let plain = decode(&HeaderMap::new(), br#"{"a": 1}"#, limits).unwrap();
        assert_eq!(plain, Decoded::Json(serde_json::json!({"a": 1})));
        let h = headers(&[(header::CONTENT_ENCODING, "gzip")]);
        assert_eq!(decode(&h, &gz(br#"{"a": 1}"#), limits).unwrap(), plain);
        let mut two = gz(br#"{"a":"#);
        two.extend(gz(b" 1}"));
        assert_eq!(decode(&h, &two, limits).unwrap(), plain);
        assert_eq!(decode(&h, b"", limits).unwrap(), Decoded::Empty);
        assert_eq!(decode(&h, &gz(b""), limits).unwrap(), Decoded::Empty);
    }

    #[test]
    fn broken_gzip_and_wrong_encoding_name() {
        let limits = BodyLimits::default();
        let body = gz(br#"{"a": 1}"#);
        let h = headers(&[(header::CONTENT_ENCODING, "gzip")]);
        assert!(is_decode_error(decode(&h, &body[..body.len() - 2], limits)));
        assert!(is_decode_error(decode(&h, b"not gzip", limits)));
        let upper = headers(&[(header::CONTENT_ENCODING, "GZIP")]);
        assert!(
            is_decode_error(decode(&upper, &body, limits)),
            "only exact gzip is recognised"
        );
    }

    #[test]
    fn gunzip_limits_on_both_paths() {
        // Single pass: small output, at and one past a small limit.
        let small = vec![b'x'; 1000];
        assert_eq!(gunzip(&gz(&small), 1000).unwrap(), small);
        assert_eq!(gunzip(&gz(&small), 999), Err(ApiError::PayloadTooLarge));
        // Two passes: output larger than the single-pass budget.
        let big: Vec<u8> = (0..SINGLE_PASS_BYTES + 5000)
            .map(|i| (i % 251) as u8)
            .collect();
        assert_eq!(gunzip(&gz(&big), big.len()).unwrap(), big);
        assert_eq!(
            gunzip(&gz(&big), big.len() - 1),
            Err(ApiError::PayloadTooLarge)
        );
        // A truncated stream is a decode error on either path.
        let body = gz(&big);
        assert!(matches!(
            gunzip(&body[..body.len() - 4], big.len()),
            Err(ApiError::Parse(_))
        ));
    }

    #[test]
    fn expansion_is_bounded() {
        let limits = BodyLimits {
            max_body: 1 << 20,
            max_decoded: 1000,
        };
        let h = headers(&[(header::CONTENT_ENCODING, "gzip")]);
        let bomb = gz(&vec![b' '; 100_000]);
        assert_eq!(decode(&h, &bomb, limits), Err(ApiError::PayloadTooLarge));
        assert_eq!(
            decode(&HeaderMap::new(), &[b' '; 1001], limits),
            Err(ApiError::PayloadTooLarge)
        );
    }

    #[test]
    fn charsets() {
        let limits = BodyLimits::default();
        let body = b"{\"comment\": \"R\xe9sum\xe9\", \"items\": []}";
        let utf8 = headers(&[(header::CONTENT_TYPE, "application/json; charset=utf-8")]);
        assert!(is_decode_error(decode(&utf8, body, limits)));
        let latin1 = headers(&[(header::CONTENT_TYPE, "application/json; charset=latin-1")]);
        let Decoded::Json(v) = decode(&latin1, body, limits).unwrap() else {
            panic!()
        };
        assert_eq!(v["comment"], "Résumé");
        let bogus = headers(&[(header::CONTENT_TYPE, "application/json; charset=klingon")]);
        assert!(is_decode_error(decode(&bogus, b"{}", limits)));
        assert!(
            is_decode_error(decode(&HeaderMap::new(), b"\xef\xbb\xbf{}", limits)),
            "BOM kept"
        );
        assert!(is_decode_error(decode(
            &HeaderMap::new(),
            b"\xc2\xae",
            limits
        )));
        assert!(
            is_decode_error(decode(&HeaderMap::new(), b" ", limits)),
            "whitespace is not empty"
        );
    }

    #[test]
    fn nonfinite_literals_outside_strings_only() {
        let v = parse_json(r#"{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN Infinity \" NaN"}"#)
            .unwrap();
        assert_eq!(v["a"], NONFINITE);
        assert_eq!(v["b"][0], NONFINITE);
        assert_eq!(v["b"][1], NONFINITE);
        assert_eq!(v["c"], "NaN Infinity \" NaN");
        assert!(parse_json("{\"a\": nan}").is_err());
        assert!(parse_json("[1]").is_ok());
    }
}
