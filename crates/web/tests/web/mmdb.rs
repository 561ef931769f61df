//! A tiny MaxMind DB writer for the tests (format: MaxMind DB File Format
//! Specification 2.0): an IPv6 binary search tree with 32-bit records, IPv4
//! networks in the `::/96` subtree, a data section of maps, strings, doubles and
//! unsigned integers, and the metadata map after the `\xAB\xCD\xEFMaxMind.com`
//! marker. Nothing is downloaded: the test database is built in memory.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// A value of the data section.
#[derive(Clone, Debug)]
pub enum Data {
    Str(String),
    Double(f64),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(BTreeMap<String, Data>),
    Array(Vec<Data>),
}

impl Data {
    pub fn map<const N: usize>(pairs: [(&str, Data); N]) -> Data {
        Data::Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    pub fn str(s: &str) -> Data {
        Data::Str(s.to_string())
    }
}

/// Control byte(s) of a value of `type_num` with payload size `size`.
fn control(out: &mut Vec<u8>, type_num: u8, size: usize) {
    let (size_bits, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 29 + 256 {
        (29, vec![(size - 29) as u8])
    } else if size < 285 + 65_536 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else {
        let v = (size - 65_821) as u32;
        (31, v.to_be_bytes()[1..].to_vec())
    };
    if type_num <= 7 {
        out.push((type_num << 5) | size_bits);
    } else {
        out.push(size_bits);
        out.push(type_num - 7);
    }
    out.extend(extra);
}

fn uint_bytes(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(8);
    bytes[first..].to_vec()
}

/// Encodes `data` (no pointers).
pub fn encode(out: &mut Vec<u8>, data: &Data) {
    match data {
        Data::Str(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Data::Double(f) => {
            control(out, 3, 8);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Data::U16(v) => {
            let b = uint_bytes(u64::from(*v));
            control(out, 5, b.len());
            out.extend(b);
        }
        Data::U32(v) => {
            let b = uint_bytes(u64::from(*v));
            control(out, 6, b.len());
            out.extend(b);
        }
        Data::U64(v) => {
            let b = uint_bytes(*v);
            control(out, 9, b.len());
            out.extend(b);
        }
        Data::Map(m) => {
            control(out, 7, m.len());
            for (k, v) in m {
                encode(out, &Data::Str(k.clone()));
                encode(out, v);
            }
        }
        Data::Array(items) => {
            control(out, 11, items.len());
            for item in items {
                encode(out, item);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Record {
    Empty,
    Node(usize),
    Data(usize),
}

/// Builds a database from `(network, prefix length, record)`; IPv4 networks are
/// placed at `::a.b.c.d/(96 + len)`. Networks may nest (a longer prefix inserted
/// later splits a shorter one).
pub fn build(database_type: &str, build_epoch: u64, networks: &[(&str, u8, Data)]) -> Vec<u8> {
    let mut data_section = Vec::new();
    let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
    for (net, len, record) in networks {
        let offset = data_section.len();
        encode(&mut data_section, record);
        let (bits, len): (u128, u8) = match net.parse::<IpAddr>().expect("network address") {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 96 + len),
            IpAddr::V6(v6) => (u128::from(v6), *len),
        };
        let mut node = 0;
        for depth in 0..len {
            let bit = ((bits >> (127 - depth)) & 1) as usize;
            if depth + 1 == len {
                nodes[node][bit] = Record::Data(offset);
                break;
            }
            node = match nodes[node][bit] {
                Record::Node(next) => next,
                other => {
                    // Empty, or a shorter network to push down into both halves.
                    nodes.push([other; 2]);
                    let next = nodes.len() - 1;
                    nodes[node][bit] = Record::Node(next);
                    next
                }
            };
        }
    }
    let node_count = nodes.len();
    let mut out = Vec::new();
    for n in &nodes {
        for r in n {
            let value = match *r {
                Record::Empty => node_count,
                Record::Node(i) => i,
                Record::Data(offset) => node_count + 16 + offset,
            };
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data_section);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let metadata = Data::map([
        ("binary_format_major_version", Data::U16(2)),
        ("binary_format_minor_version", Data::U16(0)),
        ("build_epoch", Data::U64(build_epoch)),
        ("database_type", Data::str(database_type)),
        (
            "description",
            Data::map([("en", Data::str("ichnaea test database"))]),
        ),
        ("ip_version", Data::U16(6)),
        ("languages", Data::Array(vec![Data::str("en")])),
        ("node_count", Data::U32(node_count as u32)),
        ("record_size", Data::U16(32)),
    ]);
    encode(&mut out, &metadata);
    out
}

/// A City record.
pub fn city_record(
    country: Option<&str>,
    location: Option<(f64, f64, u16)>,
    city: Option<(u32, &str)>,
    subdivisions: &[&str],
) -> Data {
    let mut m = BTreeMap::new();
    if let Some(code) = country {
        let name = match code {
            "GB" => "United Kingdom",
            "BT" => "Bhutan",
            "GI" => "Gibraltar",
            "US" => "United States",
            other => other,
        };
        m.insert(
            "country".to_string(),
            Data::map([
                ("iso_code", Data::str(code)),
                ("names", Data::map([("en", Data::str(name))])),
            ]),
        );
    }
    if let Some((lat, lon, radius)) = location {
        m.insert(
            "location".to_string(),
            Data::map([
                ("latitude", Data::Double(lat)),
                ("longitude", Data::Double(lon)),
                ("accuracy_radius", Data::U16(radius)),
                ("time_zone", Data::str("Europe/London")),
            ]),
        );
    }
    if let Some((id, name)) = city {
        m.insert(
            "city".to_string(),
            Data::map([
                ("geoname_id", Data::U32(id)),
                ("names", Data::map([("en", Data::str(name))])),
            ]),
        );
    }
    if !subdivisions.is_empty() {
        m.insert(
            "subdivisions".to_string(),
            Data::Array(
                subdivisions
                    .iter()
                    .map(|s| Data::map([("iso_code", Data::str(s))]))
                    .collect(),
            ),
        );
    }
    Data::Map(m)
}

/// Build time of the test database: 2022-01-06T16:20:21Z.
pub const BUILD_EPOCH: u64 = 1_641_486_021;

/// The test database: the blocks of locate §4.3 that the tests use.
pub fn test_city_db() -> Vec<u8> {
    let london = (51.5142, -0.0931);
    build(
        "GeoIP2-City",
        BUILD_EPOCH,
        &[
            (
                "81.2.69.192",
                28,
                city_record(
                    Some("GB"),
                    Some((london.0, london.1, 100)),
                    Some((2_643_743, "London")),
                    &["ENG"],
                ),
            ),
            (
                "81.2.69.144",
                28,
                city_record(
                    Some("GB"),
                    Some((london.0, london.1, 3)),
                    Some((2_643_743, "London")),
                    &["ENG"],
                ),
            ),
            (
                "81.2.69.160",
                27,
                city_record(
                    Some("GB"),
                    Some((london.0, london.1, 100)),
                    Some((2_643_743, "London")),
                    &["ENG"],
                ),
            ),
            (
                "67.43.156.0",
                24,
                city_record(Some("BT"), Some((27.5, 90.5, 534)), None, &[]),
            ),
            (
                "216.160.83.56",
                29,
                city_record(
                    Some("US"),
                    Some((47.2513, -122.3149, 22)),
                    Some((5_803_556, "Milton")),
                    &["WA"],
                ),
            ),
            (
                "2a02:ffc0::",
                29,
                city_record(Some("GI"), Some((36.13333, -5.35, 100)), None, &[]),
            ),
            ("2.2.3.0", 24, city_record(None, None, None, &[])),
        ],
    )
}
