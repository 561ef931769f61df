//! Request bodies shaped like real clients' (NeoStumbler's geosubmit uploads, a
//! phone's Wi-Fi geolocate query), generated deterministically from a seed and
//! serialised (and gzipped) once before the run, so the load generator spends its
//! CPU on sending rather than generating.

use std::io::Write;

use bytes::Bytes;
use fastrand::Rng;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Map, Value, json};

use crate::SimError;

/// Places the simulated stumblers walk around: (latitude, longitude, MCC).
const CITIES: [(f64, f64, i64); 6] = [
    (52.5200, 13.4050, 262),   // Berlin
    (48.8566, 2.3522, 208),    // Paris
    (51.5074, -0.1278, 234),   // London
    (40.4168, -3.7038, 214),   // Madrid
    (59.3293, 18.0686, 240),   // Stockholm
    (37.7749, -122.4194, 310), // San Francisco
];

/// Size of the pool of MAC addresses the geolocate queries draw from.
pub const MAC_POOL_SIZE: usize = 1024;

/// One pre-built request body.
#[derive(Clone, Debug)]
pub struct Body {
    /// The bytes sent on the wire (gzip-compressed when the pool was built so).
    pub bytes: Bytes,
    /// Reports in the body (geosubmit), 0 for a query.
    pub reports: u64,
    /// Length of the uncompressed JSON.
    pub json_len: usize,
}

/// The bodies of a run, sent in turn.
#[derive(Clone, Debug)]
pub struct BodyPool {
    bodies: Vec<Body>,
    /// Whether the bodies are gzip-compressed (send `Content-Encoding: gzip`).
    pub gzip: bool,
}

impl BodyPool {
    /// Serialises (and with `gzip` compresses) each JSON body once.
    /// Takes an iterator so that large bodies are never all held as JSON trees.
    pub fn new(
        values: impl IntoIterator<Item = (Value, u64)>,
        gzip: bool,
    ) -> Result<BodyPool, SimError> {
        let mut bodies = Vec::new();
        for (value, reports) in values {
            let json = serde_json::to_vec(&value)?;
            let json_len = json.len();
            let bytes = if gzip { gzip_bytes(&json)? } else { json };
            bodies.push(Body {
                bytes: Bytes::from(bytes),
                reports,
                json_len,
            });
        }
        Ok(BodyPool { bodies, gzip })
    }

    /// The `n`-th body, cycling through the pool; `None` only for an empty pool.
    pub fn get(&self, n: usize) -> Option<&Body> {
        self.bodies.get(n.checked_rem(self.bodies.len())?)
    }

    /// Number of distinct bodies.
    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    /// Whether the pool holds no body.
    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }

    /// Mean size on the wire of a body, in bytes.
    pub fn mean_wire_len(&self) -> f64 {
        mean(self.bodies.iter().map(|b| b.bytes.len()))
    }

    /// Mean size of a body's uncompressed JSON, in bytes.
    pub fn mean_json_len(&self) -> f64 {
        mean(self.bodies.iter().map(|b| b.json_len))
    }
}

fn mean(values: impl ExactSizeIterator<Item = usize>) -> f64 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    values.map(|v| v as f64).sum::<f64>() / n as f64
}

/// Gzip at the default level, as Java's `GZIPOutputStream` (NeoStumbler) does.
pub fn gzip_bytes(data: &[u8]) -> Result<Vec<u8>, SimError> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4), Compression::default());
    encoder.write_all(data).map_err(SimError::Compress)?;
    encoder.finish().map_err(SimError::Compress)
}

/// A MAC address as clients send it (`01:23:45:67:89:ab`): unicast and globally
/// administered, so validation that rejects multicast or local MACs keeps it.
pub fn random_mac(rng: &mut Rng) -> String {
    let mut b = [0u8; 6];
    for byte in &mut b {
        *byte = rng.u8(..);
    }
    b[0] &= 0b1111_1100;
    if b == [0; 6] {
        b[5] = 1;
    }
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

fn round(value: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (value * f).round() / f
}

/// A Wi-Fi network near the track.
struct Wifi {
    mac: String,
    channel: i64,
    frequency: i64,
    radio: &'static str,
    ssid: Option<String>,
}

fn wifi(rng: &mut Rng) -> Wifi {
    let (channel, frequency) = if rng.bool() {
        let ch = rng.i64(1..=13);
        (ch, 2407 + 5 * ch)
    } else {
        let ch = [
            36, 40, 44, 48, 52, 56, 60, 64, 100, 104, 108, 112, 116, 149, 153, 157,
        ][rng.usize(..16)];
        (ch, 5000 + 5 * ch)
    };
    Wifi {
        mac: random_mac(rng),
        channel,
        frequency,
        radio: ["802.11n", "802.11ac", "802.11ax"][rng.usize(..3)],
        // A few networks have their SSID filtered out by the client.
        ssid: (rng.u8(..10) != 0).then(|| format!("net-{:04x}", rng.u16(..))),
    }
}

/// A cell tower near the track.
struct Cell {
    radio: &'static str,
    mnc: i64,
    area: i64,
    cell_id: i64,
    pci: i64,
}

fn cell(rng: &mut Rng) -> Cell {
    if rng.u8(..4) == 0 {
        Cell {
            radio: "nr",
            mnc: rng.i64(1..=3),
            area: rng.i64(1..=16_777_215),
            // 36-bit NR cell identity, the case that needs the 17-byte cellid.
            cell_id: rng.i64(0..(1 << 36)),
            pci: rng.i64(0..1008),
        }
    } else {
        Cell {
            radio: "lte",
            mnc: rng.i64(1..=3),
            area: rng.i64(1..=65_533),
            cell_id: rng.i64(0..(1 << 28)),
            pci: rng.i64(0..504),
        }
    }
}

/// The geosubmit bodies of a run: `count` bodies of `reports` reports each, all
/// determined by `seed` and `now_ms` (reports are stamped within the hour before
/// `now_ms`, as an upload of recent stumbling would be).
pub fn geosubmit_bodies(
    seed: u64,
    count: usize,
    reports: usize,
    now_ms: i64,
) -> impl Iterator<Item = (Value, u64)> {
    let mut rng = Rng::with_seed(seed);
    (0..count).map(move |_| (geosubmit_body(&mut rng, reports, now_ms), reports as u64))
}

/// One upload `{"items": [...]}`: a walk through a city, each report seeing about
/// five of the Wi-Fi networks along the way, one or two cells and now and then a
/// Bluetooth beacon.
fn geosubmit_body(rng: &mut Rng, reports: usize, now_ms: i64) -> Value {
    let (city_lat, city_lon, mcc) = CITIES[rng.usize(..CITIES.len())];
    // Start within about 5 km of the centre; walk or cycle from there.
    let mut lat = city_lat + (rng.f64() - 0.5) * 0.09;
    let mut lon = city_lon + (rng.f64() - 0.5) * 0.14;
    let networks: Vec<Wifi> = (0..reports + 8).map(|_| wifi(rng)).collect();
    let cells: Vec<Cell> = (0..3 + reports / 20).map(|_| cell(rng)).collect();
    let mut timestamp = now_ms - 3_600_000 + rng.i64(0..600_000);
    let speed = 1.0 + rng.f64() * 6.0;
    let mut heading = rng.f64() * 360.0;
    let mut items = Vec::with_capacity(reports);
    for i in 0..reports {
        let mut position = Map::new();
        position.insert("latitude".into(), json!(round(lat, 7)));
        position.insert("longitude".into(), json!(round(lon, 7)));
        position.insert("accuracy".into(), json!(round(3.0 + rng.f64() * 20.0, 1)));
        position.insert("age".into(), json!(rng.i64(0..2000)));
        position.insert("altitude".into(), json!(round(20.0 + rng.f64() * 80.0, 1)));
        position.insert(
            "altitudeAccuracy".into(),
            json!(round(2.0 + rng.f64() * 10.0, 1)),
        );
        position.insert("heading".into(), json!(round(heading, 1)));
        position.insert("speed".into(), json!(round(speed + rng.f64() - 0.5, 2)));
        if rng.bool() {
            position.insert(
                "pressure".into(),
                json!(round(1000.0 + rng.f64() * 25.0, 2)),
            );
        }
        position.insert("source".into(), json!("gnss"));

        // About five networks from a window that slides along the walk.
        let seen = 4 + rng.usize(..3);
        let wifi: Vec<Value> = (0..seen)
            .map(|k| {
                let w = &networks[(i + k * 2) % networks.len()];
                let mut ap = Map::new();
                ap.insert("macAddress".into(), json!(w.mac));
                ap.insert("radioType".into(), json!(w.radio));
                ap.insert("age".into(), json!(rng.i64(0..3000)));
                ap.insert("channel".into(), json!(w.channel));
                ap.insert("frequency".into(), json!(w.frequency));
                ap.insert("signalStrength".into(), json!(rng.i64(-95..=-35)));
                if let Some(ssid) = &w.ssid {
                    ap.insert("ssid".into(), json!(ssid));
                }
                Value::Object(ap)
            })
            .collect();

        let towers = 1 + rng.usize(..2);
        let first = i / 20;
        let cell_towers: Vec<Value> = (0..towers)
            .map(|k| {
                let c = &cells[(first + k) % cells.len()];
                let signal = if c.radio == "nr" {
                    rng.i64(-120..=-70)
                } else {
                    rng.i64(-115..=-65)
                };
                json!({
                    "radioType": c.radio,
                    "mobileCountryCode": mcc,
                    "mobileNetworkCode": c.mnc,
                    "locationAreaCode": c.area,
                    "cellId": c.cell_id,
                    "age": rng.i64(0..5000),
                    "asu": (signal + 140).clamp(0, 97),
                    "primaryScramblingCode": c.pci,
                    "serving": i64::from(k == 0),
                    "signalStrength": signal,
                })
            })
            .collect();

        let mut item = Map::new();
        item.insert("timestamp".into(), json!(timestamp));
        item.insert("position".into(), Value::Object(position));
        item.insert("wifiAccessPoints".into(), Value::Array(wifi));
        item.insert("cellTowers".into(), Value::Array(cell_towers));
        if rng.u8(..10) == 0 {
            item.insert(
                "bluetoothBeacons".into(),
                json!([{
                    "macAddress": random_mac(rng),
                    "age": rng.i64(0..5000),
                    "signalStrength": rng.i64(-100..=-50),
                }]),
            );
        }
        items.push(Value::Object(item));

        // Next report: a few seconds and metres further.
        let step_s = 2.0 + rng.f64() * 4.0;
        let metres = speed * step_s;
        heading = (heading + (rng.f64() - 0.5) * 30.0).rem_euclid(360.0);
        let (sin, cos) = heading.to_radians().sin_cos();
        lat += metres * cos / 111_320.0;
        lon += metres * sin / (111_320.0 * lat.to_radians().cos().max(0.01));
        timestamp += (step_s * 1000.0) as i64;
    }
    json!({ "items": items })
}

/// The pool of MAC addresses geolocate queries are built from, determined by
/// `mac_pool_seed` (so query and submit runs can share networks by seed).
pub fn mac_pool(mac_pool_seed: u64) -> Vec<String> {
    let mut rng = Rng::with_seed(mac_pool_seed);
    (0..MAC_POOL_SIZE).map(|_| random_mac(&mut rng)).collect()
}

/// The geolocate bodies of a run: `count` queries, each with three distinct Wi-Fi
/// networks from `pool`, determined by `seed`.
pub fn geolocate_bodies(
    seed: u64,
    count: usize,
    pool: &[String],
) -> impl Iterator<Item = (Value, u64)> + '_ {
    let mut rng = Rng::with_seed(seed);
    (0..count).map(move |_| {
        let mut picked: Vec<usize> = Vec::with_capacity(3);
        while picked.len() < 3.min(pool.len()) {
            let i = rng.usize(..pool.len());
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        let wifi: Vec<Value> = picked
            .iter()
            .map(|&i| {
                json!({
                    "macAddress": pool[i],
                    "signalStrength": rng.i64(-90..=-40),
                    "age": rng.i64(0..2000),
                })
            })
            .collect();
        (json!({"considerIp": false, "wifiAccessPoints": wifi}), 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_760_000_000_000;

    #[test]
    fn geosubmit_bodies_are_deterministic_per_seed() {
        let a: Vec<_> = geosubmit_bodies(7, 4, 10, NOW).collect();
        let b: Vec<_> = geosubmit_bodies(7, 4, 10, NOW).collect();
        let c: Vec<_> = geosubmit_bodies(8, 4, 10, NOW).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let wire = |v: &[(Value, u64)]| {
            BodyPool::new(v.iter().cloned(), true)
                .map(|p| {
                    (0..p.len())
                        .filter_map(|i| p.get(i))
                        .map(|b| b.bytes.clone())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        assert_eq!(wire(&a), wire(&b), "the gzip bytes too");
    }

    #[test]
    fn geosubmit_bodies_have_the_stumbler_shape() {
        let bodies: Vec<_> = geosubmit_bodies(1, 8, 50, NOW).collect();
        assert_eq!(bodies.len(), 8);
        let mut beacons = 0;
        for (body, reports) in &bodies {
            assert_eq!(*reports, 50);
            let items = body["items"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            assert_eq!(items.len(), 50);
            for item in items {
                let t = item["timestamp"].as_i64().unwrap_or_default();
                assert!(t > NOW - 3_700_000 && t < NOW + 600_000, "{t}");
                let p = &item["position"];
                assert_eq!(p["source"], "gnss");
                assert!(p["latitude"].as_f64().is_some_and(|l| l.abs() < 90.0));
                assert!(p["longitude"].as_f64().is_some_and(|l| l.abs() < 180.0));
                assert!(p["accuracy"].as_f64().is_some_and(|a| a > 0.0));
                let wifi = item["wifiAccessPoints"].as_array().map_or(0, Vec::len);
                assert!((4..=6).contains(&wifi), "{wifi} wifi");
                let cells = item["cellTowers"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                assert!((1..=2).contains(&cells.len()));
                for c in cells {
                    assert!(matches!(c["radioType"].as_str(), Some("lte" | "nr")));
                }
                beacons += usize::from(item.get("bluetoothBeacons").is_some());
            }
        }
        assert!(
            beacons > 0 && beacons < 100,
            "occasional beacons: {beacons}"
        );
    }

    #[test]
    fn macs_are_unicast_and_global() {
        let mut rng = Rng::with_seed(3);
        for _ in 0..1000 {
            let mac = random_mac(&mut rng);
            assert_eq!(mac.len(), 17);
            let first = u8::from_str_radix(&mac[..2], 16).unwrap_or(0xff);
            assert_eq!(first & 0b11, 0, "{mac}");
        }
    }

    #[test]
    fn geolocate_bodies_draw_three_distinct_macs_from_the_pool() {
        let pool = mac_pool(5);
        assert_eq!(pool, mac_pool(5));
        assert_ne!(pool, mac_pool(6));
        let bodies: Vec<_> = geolocate_bodies(1, 16, &pool).collect();
        assert_eq!(bodies, geolocate_bodies(1, 16, &pool).collect::<Vec<_>>());
        for (body, reports) in &bodies {
            assert_eq!(*reports, 0);
            let wifi = body["wifiAccessPoints"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            assert_eq!(wifi.len(), 3);
            let macs: Vec<&str> = wifi
                .iter()
                .filter_map(|w| w["macAddress"].as_str())
                .collect();
            assert_eq!(macs.len(), 3);
            assert!(macs.iter().all(|m| pool.iter().any(|p| p == m)));
            assert!(macs[0] != macs[1] && macs[1] != macs[2] && macs[0] != macs[2]);
        }
    }

    #[test]
    fn the_pool_cycles() {
        let pool = BodyPool::new(geolocate_bodies(1, 3, &mac_pool(1)), false);
        let pool = pool.ok();
        let pool = pool.as_ref();
        assert_eq!(pool.map(BodyPool::len), Some(3));
        let nth = |n| pool.and_then(|p| p.get(n)).map(|b| b.bytes.clone());
        assert_eq!(nth(0), nth(3));
        assert_ne!(nth(0), nth(1));
        let empty = BodyPool::new(std::iter::empty(), true).ok();
        assert!(empty.is_some_and(|p| p.get(0).is_none() && p.is_empty()));
    }
}
