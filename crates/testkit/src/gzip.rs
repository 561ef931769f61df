//! gzip, as clients send it and exporters write it.

use std::io::{Read, Write};

use serde_json::Value;

/// `data` gzip-compressed (one member, default level).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// The JSON document in gzip `data`; panics when it is neither.
pub fn gunzip_json(data: &[u8]) -> Value {
    let mut text = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut text)
        .expect("gzip of UTF-8 text");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
