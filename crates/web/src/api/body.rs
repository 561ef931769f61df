//! Request body decoding shared by the five API endpoints (api §2.3): optional
//! gzip with size limits, charset decoding, and JSON that tolerates the
//! non-standard literals `NaN`, `Infinity` and `-Infinity`.

use axum::http::{HeaderMap, header};
use flate2::{Crc, Decompress, FlushDecompress, Status};
use std::borrow::Cow;

use serde_json::Value;

use super::coerce::NONFINITE;
use super::error::{ApiError, ParseDetails};
use super::lean::Shape;

/// Size limits protecting the service from huge or expanding bodies.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// Largest body accepted on the wire (compressed, if gzip).
    pub max_body: usize,
    /// Largest body after gunzip; decompression stops one byte past it, so a gzip
    /// bomb costs at most this much memory and time.
    pub max_decoded: usize,
    /// Longest wait for the next part of a body; also the grace period before
    /// [`BodyLimits::min_rate`] applies.
    pub idle_timeout: std::time::Duration,
    /// Slowest average rate (bytes per second since the body began) a body
    /// may arrive at once `idle_timeout` has passed; 0: no minimum.
    pub min_rate: u64,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_body: 10 * 1024 * 1024,
            max_decoded: 10 * 1024 * 1024,
            idle_timeout: std::time::Duration::from_secs(10),
            min_rate: 1_024,
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
    let text = decode_text(headers, raw, limits)?;
    if text.is_empty() {
        return Ok(Decoded::Empty);
    }
    serde_json::from_str(&text)
        .map(Decoded::Json)
        .map_err(|e| decode_error(format!("invalid JSON: {e}")))
}

/// The JSON text of a body: gunzipped when `Content-Encoding` is exactly
/// `gzip`, decoded from the declared charset (default UTF-8), with the
/// literals `NaN`, `Infinity` and `-Infinity` replaced by the [`NONFINITE`]
/// marker string. Borrowed from `raw` when nothing needed changing; an empty
/// text means an empty body.
pub fn decode_text<'a>(
    headers: &HeaderMap,
    raw: &'a [u8],
    limits: BodyLimits,
) -> Result<Cow<'a, str>, ApiError> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let text = if gzip && !raw.is_empty() {
        let inflated = gunzip(raw, limits.max_decoded)?;
        Cow::Owned(decode_charset_owned(headers, inflated)?)
    } else {
        if raw.len() > limits.max_decoded {
            return Err(ApiError::PayloadTooLarge);
        }
        decode_charset(headers, raw)?
    };
    if text.contains("NaN") || text.contains("Infinity") {
        return Ok(Cow::Owned(replace_nonfinite(&text)));
    }
    Ok(text)
}

/// Parses a text from [`decode_text`] keeping only what `shape` says (see
/// [`super::lean`]); invalid JSON is a `parseError` with `details.decode`.
pub fn parse_lean(text: &str, shape: Shape) -> Result<Value, ApiError> {
    super::lean::parse(text, shape).map_err(|e| decode_error(format!("invalid JSON: {e}")))
}

/// Inflates a (multi-member) gzip stream, refusing output beyond `limit` bytes.
///
/// Bodies inflating to at most [`SINGLE_PASS_BYTES`] (every locate query, most
/// submissions) are inflated once: each member's header is read by
/// [`member_header_len`], its deflate data inflated into one buffer that never
/// grows past that size plus one byte, and its trailer (CRC-32, size) checked.
/// Larger bodies go through [`gunzip_large`], which counts before allocating.
/// The inflate state (with its 32 KiB window) is kept per thread and reset
/// between bodies, so a body allocates nothing but its output: creating the
/// state per body was a tenth of the CPU time of a small locate query. The
/// backend is zlib-rs, whose reset leaves the window as it is: a 131-byte
/// locate body inflates in about 1.7 µs, against 3.6 µs with miniz_oxide,
/// which zeroes its whole 43 KB state on every reset.
pub fn gunzip(raw: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    thread_local! {
        static INFLATE: std::cell::RefCell<Option<Decompress>> =
            const { std::cell::RefCell::new(None) };
    }
    let first = limit.min(SINGLE_PASS_BYTES);
    let single = INFLATE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            let inflate = slot.get_or_insert_with(|| Decompress::new(false));
            gunzip_with(inflate, raw, first)
        }
        // Not reachable (no re-entrance), but never worth a panic.
        Err(_) => gunzip_with(&mut Decompress::new(false), raw, first),
    });
    match single {
        Err(ApiError::PayloadTooLarge) if first < limit => gunzip_large(raw, limit),
        other => other,
    }
}

/// Inflated sizes up to this are decoded in a single pass into a growing buffer.
const SINGLE_PASS_BYTES: usize = 256 * 1024;

/// Bodies inflating past [`SINGLE_PASS_BYTES`]: a first pass only counts the
/// inflated bytes (stopping one past the limit), so a gzip bomb is refused
/// without allocating more than a copy buffer; the second pass fills a buffer of
/// exactly the right size.
fn gunzip_large(raw: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    use std::io::Read;
    let io_error = |e: std::io::Error| gzip_error(&e.to_string());
    let mut counter = flate2::read::MultiGzDecoder::new(raw).take(limit as u64 + 1);
    let size = std::io::copy(&mut counter, &mut std::io::sink()).map_err(io_error)?;
    if size > limit as u64 {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut out = Vec::with_capacity(size as usize);
    flate2::read::MultiGzDecoder::new(raw)
        .read_to_end(&mut out)
        .map_err(io_error)?;
    Ok(out)
}

fn gzip_error(message: &str) -> ApiError {
    decode_error(format!("gzip: {message}"))
}

/// The length of the gzip member header at the start of `data` (RFC 1952 §2.3).
fn member_header_len(data: &[u8]) -> Result<usize, ApiError> {
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    let truncated = || gzip_error("truncated header");
    let [0x1f, 0x8b, method, flags, ..] = *data else {
        return Err(if data.len() < 4 && [0x1f, 0x8b].starts_with(data) {
            truncated()
        } else {
            gzip_error("invalid gzip header")
        });
    };
    if method != 8 {
        return Err(gzip_error("unsupported compression method"));
    }
    if flags & 0xe0 != 0 {
        return Err(gzip_error("reserved header flags set"));
    }
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let len = data.get(at..at + 2).ok_or_else(truncated)?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let rest = data.get(at..).ok_or_else(truncated)?;
            at += rest.iter().position(|&b| b == 0).ok_or_else(truncated)? + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    if at > data.len() {
        return Err(truncated());
    }
    Ok(at)
}

fn gunzip_with(inflate: &mut Decompress, raw: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    // Room for one byte past the limit, which proves the body is too large.
    let cap = limit.saturating_add(1);
    let mut out: Vec<u8> = Vec::with_capacity(cap.min(raw.len().saturating_mul(4).max(1024)));
    let mut input = raw;
    loop {
        input = &input[member_header_len(input)?..];
        inflate.reset(false);
        let member_start = out.len();
        loop {
            if out.len() == out.capacity() {
                if out.len() >= cap {
                    return Err(ApiError::PayloadTooLarge);
                }
                let grow = out.capacity().max(1024).min(cap - out.len());
                out.reserve_exact(grow);
            }
            let (before, produced_before) = (inflate.total_in(), out.len());
            let status = inflate
                .decompress_vec(input, &mut out, FlushDecompress::None)
                .map_err(|e| gzip_error(&e.to_string()))?;
            let used = usize::try_from(inflate.total_in() - before).unwrap_or(input.len());
            input = &input[used.min(input.len())..];
            if out.len() > limit {
                return Err(ApiError::PayloadTooLarge);
            }
            match status {
                Status::StreamEnd => break,
                // No progress with input left and room in the buffer: the
                // deflate data ends early.
                Status::Ok | Status::BufError
                    if used == 0 && out.len() == produced_before && out.len() < out.capacity() =>
                {
                    return Err(gzip_error("truncated deflate data"));
                }
                Status::Ok | Status::BufError => {}
            }
        }
        let [c0, c1, c2, c3, s0, s1, s2, s3, ..] = *input else {
            return Err(gzip_error("truncated trailer"));
        };
        let mut crc = Crc::new();
        crc.update(&out[member_start..]);
        if crc.sum() != u32::from_le_bytes([c0, c1, c2, c3]) {
            return Err(gzip_error("CRC-32 mismatch"));
        }
        // ISIZE is the member's size modulo 2^32.
        if (out.len() - member_start) as u32 != u32::from_le_bytes([s0, s1, s2, s3]) {
            return Err(gzip_error("size mismatch"));
        }
        input = &input[8..];
        if input.is_empty() {
            return Ok(out);
        }
    }
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

/// [`decode_charset`] of an owned buffer, which UTF-8 text keeps without a copy.
fn decode_charset_owned(headers: &HeaderMap, bytes: Vec<u8>) -> Result<String, ApiError> {
    if resolve_charset(headers)? == encoding_rs::UTF_8 {
        return String::from_utf8(bytes)
            .map_err(|e| decode_error(format!("invalid utf-8: {}", e.utf8_error())));
    }
    decode_charset(headers, &bytes).map(Cow::into_owned)
}

/// The body's encoding: the `charset` of `Content-Type`, UTF-8 without one.
fn resolve_charset(headers: &HeaderMap) -> Result<&'static encoding_rs::Encoding, ApiError> {
    let label = charset(headers);
    match label.as_deref() {
        None => Ok(encoding_rs::UTF_8),
        // WHATWG labels, plus Python-style spellings such as `latin-1` / `utf_8`.
        Some(label) => encoding_rs::Encoding::for_label(label.as_bytes())
            .or_else(|| encoding_rs::Encoding::for_label(label.replace(['-', '_'], "").as_bytes()))
            .ok_or_else(|| decode_error(format!("unknown charset {label:?}"))),
    }
}

fn decode_charset<'a>(headers: &HeaderMap, bytes: &'a [u8]) -> Result<Cow<'a, str>, ApiError> {
    let encoding = resolve_charset(headers)?;
    if encoding == encoding_rs::UTF_8 {
        return std::str::from_utf8(bytes)
            .map(Cow::Borrowed)
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
    fn gunzip_limits_small_and_large() {
        let small = vec![b'x'; 1000];
        assert_eq!(gunzip(&gz(&small), 1000).unwrap(), small);
        assert_eq!(gunzip(&gz(&small), 999), Err(ApiError::PayloadTooLarge));
        let big: Vec<u8> = (0..300_000).map(|i| (i % 251) as u8).collect();
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
    fn gzip_headers_trailers_and_reuse() {
        use flate2::GzBuilder;
        let body = br#"{"a": 1}"#;
        // Optional header fields (RFC 1952 FEXTRA, FNAME, FCOMMENT) are skipped.
        let mut e = GzBuilder::new()
            .extra(vec![1, 2, 3])
            .filename("body.json")
            .comment("c")
            .write(Vec::new(), flate2::Compression::fast());
        e.write_all(body).unwrap();
        let named = e.finish().unwrap();
        assert_eq!(gunzip(&named, 100).unwrap(), body);
        // Two members, the first with header fields: both inflated, in order.
        let mut two = named.clone();
        two.extend(gz(b"xyz"));
        assert_eq!(gunzip(&two, 100).unwrap(), br#"{"a": 1}xyz"#);
        // A header CRC (FHCRC) is skipped as well.
        let mut hcrc = gz(body);
        hcrc[3] |= 0x02;
        hcrc.splice(10..10, [0xaa, 0xbb]);
        assert_eq!(gunzip(&hcrc, 100).unwrap(), body);
        // Corrupt CRC, corrupt size, trailing garbage, truncation anywhere.
        let good = gz(body);
        let n = good.len();
        let mut bad_crc = good.clone();
        bad_crc[n - 8] ^= 1;
        let mut bad_size = good.clone();
        bad_size[n - 4] ^= 1;
        let mut garbage = good.clone();
        garbage.extend(b"junk");
        let mut method = good.clone();
        method[2] = 7;
        for broken in [&bad_crc, &bad_size, &garbage, &method] {
            assert!(matches!(gunzip(broken, 100), Err(ApiError::Parse(_))));
        }
        for cut in 1..n {
            assert!(
                matches!(gunzip(&good[..cut], 100), Err(ApiError::Parse(_))),
                "cut at {cut}"
            );
        }
        // The per-thread state is reset between bodies, also after an error.
        assert_eq!(gunzip(&good, 100).unwrap(), body);
        assert_eq!(gunzip(&gz(b"second"), 100).unwrap(), b"second");
        // A limit of zero refuses anything but an empty body.
        assert_eq!(gunzip(&gz(b""), 0).unwrap(), b"");
        assert_eq!(gunzip(&gz(b"x"), 0), Err(ApiError::PayloadTooLarge));
    }

    #[test]
    fn expansion_is_bounded() {
        let limits = BodyLimits {
            max_body: 1 << 20,
            max_decoded: 1000,
            ..BodyLimits::default()
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
