//! `sim world`: the synthetic city with its ground truth. Streets, Wi-Fi access
//! points beside them at urban densities (dense in the centre, sparser at the
//! edge), cell sites of three operators with sectors for every radio (gsm,
//! wcdma, lte, nr), Bluetooth beacons in shops, and a share of access points
//! that move several kilometres at a given simulated time, so the server's
//! blocklisting is exercised.
//!
//! The world is a pure function of its [`WorldParams`]: each part draws from its
//! own seeded stream ([`crate::rng::stream`]), nothing iterates a hash map, and
//! the JSON has a fixed field order, so the same seed gives byte-identical output.

use std::collections::BTreeSet;

use fastrand::Rng;
use serde::Serialize;

use crate::geo::{Plane, Xy, round7};
use crate::radio::{CELL_RADIOS, CellRadio};
use crate::rng::{stream, uniform};
use crate::scenario::Scenario;
use crate::streets::Streets;

/// Everything the world is generated from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorldParams {
    /// Seed of every random stream.
    pub seed: u64,
    /// Side of the square city, km.
    pub size_km: f64,
    /// Latitude of the centre (a real city, so region lookups work).
    pub lat: f64,
    /// Longitude of the centre.
    pub lon: f64,
    /// Mobile country code of the operators.
    pub mcc: u16,
    /// Share of access points that move during the simulation.
    pub move_share: f64,
    /// Simulated second at which they move.
    pub move_at_s: f64,
    /// Densities, radio models, GNSS noise and stumbler mix (`--scenario`);
    /// left out of the JSON when it is the default.
    #[serde(skip_serializing_if = "Scenario::is_default")]
    pub scenario: Scenario,
}

impl WorldParams {
    /// The default city: 8 × 8 km around the centre of Berlin (MCC 262), 2 % of
    /// the access points moving after 30 simulated minutes.
    pub fn berlin(seed: u64) -> WorldParams {
        WorldParams {
            seed,
            size_km: 8.0,
            lat: 52.52,
            lon: 13.405,
            mcc: 262,
            move_share: 0.02,
            move_at_s: 1800.0,
            scenario: Scenario::default(),
        }
    }
}

/// Operators (mobile network codes).
pub const MNCS: [u16; 3] = [1, 2, 3];
/// Side of a location/tracking area, metres.
const AREA_M: f64 = 2000.0;
/// A moved access point lands at least this far away (more than the 5 km a
/// Wi-Fi station may spread before the server blocks it), when the city is
/// large enough.
pub const MIN_MOVE_M: f64 = 5_500.0;

/// Wi-Fi access points of a few real vendors (AVM, TP-Link, Netgear, Huawei,
/// Ubiquiti, Sagemcom, Compal): unicast, globally administered.
const WIFI_OUIS: [[u8; 3]; 16] = [
    [0x3c, 0xa6, 0x2f],
    [0x2c, 0x91, 0xab],
    [0x44, 0x4e, 0x6d],
    [0x98, 0x9b, 0xcb],
    [0xc8, 0x0e, 0x14],
    [0xe0, 0x28, 0x6d],
    [0x38, 0x10, 0xd5],
    [0x7c, 0xff, 0x4d],
    [0x50, 0xc7, 0xbf],
    [0xec, 0x08, 0x6b],
    [0x98, 0xda, 0xc4],
    [0xa0, 0x04, 0x60],
    [0x48, 0x46, 0xfb],
    [0x24, 0x5a, 0x4c],
    [0xf4, 0xca, 0xe5],
    [0x38, 0x43, 0x7d],
];

/// Bluetooth beacon vendors (Minew, Kontakt-like public addresses).
const BLUE_OUIS: [[u8; 3]; 4] = [
    [0xac, 0x23, 0x3f],
    [0xdc, 0x0d, 0x30],
    [0xfc, 0x58, 0xfa],
    [0xd0, 0xf0, 0x18],
];

/// Where an access point went.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Move {
    /// Simulated second of the move.
    pub at_s: f64,
    /// New latitude.
    pub lat: f64,
    /// New longitude.
    pub lon: f64,
    /// Distance from the old place, metres.
    pub distance_m: f64,
    /// New map position.
    #[serde(skip)]
    pub xy: Xy,
}

/// A Wi-Fi access point.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WifiAp {
    /// BSSID, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Network name; empty for a hidden network.
    pub ssid: String,
    /// Channel.
    pub channel: u16,
    /// Frequency, MHz.
    pub frequency: u16,
    /// How much stronger than typical this one transmits, dB.
    pub tx_offset_db: f64,
    /// Latitude at the start.
    pub lat: f64,
    /// Longitude at the start.
    pub lon: f64,
    /// Set for the access points that move.
    pub moved: Option<Move>,
    /// Map position at the start.
    #[serde(skip)]
    pub xy: Xy,
}

impl WifiAp {
    /// Where the access point is at simulated second `t_s`.
    pub fn position_at(&self, t_s: f64) -> Xy {
        match &self.moved {
            Some(m) if t_s >= m.at_s => m.xy,
            _ => self.xy,
        }
    }

    /// Whether stumblers submit it: clients must leave out hidden networks and
    /// those whose SSID ends in `_nomap`.
    pub fn submittable(&self) -> bool {
        !self.ssid.is_empty() && !self.ssid.ends_with("_nomap")
    }

    /// Whether it is a 5 GHz network.
    pub fn is_5ghz(&self) -> bool {
        self.frequency > 5000
    }
}

/// One sector of a cell site.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cell {
    /// `gsm`, `wcdma`, `lte` or `nr`.
    pub radio: &'static str,
    /// Mobile country code.
    pub mcc: u16,
    /// Mobile network code.
    pub mnc: u16,
    /// Location / tracking area code.
    pub lac: u32,
    /// Cell identity (GSM CI, UTRAN CID with RNC, LTE ECI, NR NCI).
    pub cid: u64,
    /// PSC / PCI (none for GSM).
    pub psc: Option<u16>,
    /// Antenna azimuth, degrees from north.
    pub azimuth: f64,
    /// Nominal coverage radius on the antenna's axis, metres.
    pub radius_m: f64,
    /// Latitude of the mast.
    pub lat: f64,
    /// Longitude of the mast.
    pub lon: f64,
    /// Map position of the mast.
    #[serde(skip)]
    pub xy: Xy,
    /// Index into [`CELL_RADIOS`].
    #[serde(skip)]
    pub radio_index: usize,
}

impl Cell {
    /// The radio's model parameters.
    pub fn model(&self) -> CellRadio {
        CELL_RADIOS[self.radio_index]
    }
}

/// A Bluetooth LE beacon.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Beacon {
    /// Address.
    pub mac: String,
    /// How much stronger than typical it transmits, dB.
    pub tx_offset_db: f64,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Map position.
    #[serde(skip)]
    pub xy: Xy,
}

/// Counts, for people reading the output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorldSummary {
    /// Intersections.
    pub nodes: usize,
    /// Street segments.
    pub segments: usize,
    /// Total street length, km.
    pub street_km: f64,
    /// Access points.
    pub wifi: usize,
    /// Access points that move.
    pub wifi_moving: usize,
    /// Hidden or `_nomap` access points (never submitted).
    pub wifi_not_submitted: usize,
    /// Cells per radio, in the order gsm, wcdma, lte, nr.
    pub cells: [usize; 4],
    /// Beacons.
    pub blue: usize,
}

/// The whole synthetic world.
#[derive(Clone, Debug, PartialEq)]
pub struct World {
    /// What it was generated from.
    pub params: WorldParams,
    /// Map projection around the centre.
    pub plane: Plane,
    /// The street graph.
    pub streets: Streets,
    /// Access points.
    pub wifi: Vec<WifiAp>,
    /// Cells of every operator and radio.
    pub cells: Vec<Cell>,
    /// Beacons.
    pub blue: Vec<Beacon>,
    /// Cumulative street length per segment, for uniform street points.
    cumulative: Vec<f64>,
}

/// The JSON form of the world (field order fixed by declaration).
#[derive(Serialize)]
struct WorldJson<'a> {
    params: &'a WorldParams,
    summary: WorldSummary,
    streets: StreetsJson,
    wifi: &'a [WifiAp],
    cells: &'a [Cell],
    blue: &'a [Beacon],
}

#[derive(Serialize)]
struct StreetsJson {
    nodes: Vec<[f64; 2]>,
    segments: Vec<[usize; 2]>,
}

/// Density at distance `r` from the centre: `edge + (centre − edge)·exp(−(r/r0)²)`.
fn density(levels: (f64, f64), r: f64, r0: f64) -> f64 {
    levels.1 + (levels.0 - levels.1) * (-(r / r0).powi(2)).exp()
}

/// Expected count over the square of side `size_m` for a density per km².
fn expected_count(levels: (f64, f64), size_m: f64) -> usize {
    let r0 = 0.3 * size_m;
    let tiles = (size_m / 100.0).ceil() as usize;
    let tile = size_m / tiles as f64;
    let mut total = 0.0;
    for j in 0..tiles {
        for i in 0..tiles {
            let x = -size_m / 2.0 + (i as f64 + 0.5) * tile;
            let y = -size_m / 2.0 + (j as f64 + 0.5) * tile;
            total += density(levels, x.hypot(y), r0) * (tile * tile) / 1e6;
        }
    }
    total.round() as usize
}

fn mac_text(b: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

/// A MAC address from one of `ouis`, distinct from every one in `used`.
fn unique_mac(rng: &mut Rng, ouis: &[[u8; 3]], used: &mut BTreeSet<[u8; 6]>) -> String {
    loop {
        let oui = ouis[rng.usize(..ouis.len())];
        let b = [oui[0], oui[1], oui[2], rng.u8(..), rng.u8(..), rng.u8(..)];
        if used.insert(b) {
            return mac_text(b);
        }
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn ssid(rng: &mut Rng) -> String {
    let roll = rng.u32(..100);
    let hex = rng.u16(..);
    match roll {
        0..3 => String::new(),
        3 => format!("home-{hex:04X}_nomap"),
        4..30 => format!(
            "FRITZ!Box 7590 {}{}",
            rng.alphabetic().to_ascii_uppercase(),
            rng.alphabetic().to_ascii_uppercase()
        ),
        30..45 => format!("Vodafone-{hex:04X}"),
        45..58 => format!("MagentaWLAN-{hex:04X}"),
        58..68 => format!("o2-WLAN{}", hex % 100),
        68..78 => format!("TP-Link_{hex:04X}"),
        78..84 => "Telekom_FON".to_string(),
        _ => format!("WLAN-{:06}", u32::from(hex) * 7 % 1_000_000),
    }
}

impl World {
    /// Generates the world of `params`.
    pub fn generate(params: &WorldParams) -> World {
        let seed = params.seed;
        let size_m = params.size_km * 1000.0;
        let plane = Plane {
            lat0: params.lat,
            lon0: params.lon,
        };
        let streets = Streets::generate(&mut stream(seed, "streets", 0), size_m);
        let mut cumulative = Vec::with_capacity(streets.segments.len());
        let mut acc = 0.0;
        for s in 0..streets.segments.len() {
            acc += streets.length(s);
            cumulative.push(acc);
        }
        let mut world = World {
            params: params.clone(),
            plane,
            streets,
            wifi: Vec::new(),
            cells: Vec::new(),
            blue: Vec::new(),
            cumulative,
        };
        world.wifi = world.generate_wifi();
        world.cells = world.generate_cells();
        world.blue = world.generate_blue();
        world
    }

    /// Side of the city, metres.
    pub fn size_m(&self) -> f64 {
        self.params.size_km * 1000.0
    }

    fn latlon(&self, p: Xy) -> (f64, f64) {
        let (lat, lon) = self.plane.to_latlon(p);
        (round7(lat), round7(lon))
    }

    /// A point uniformly distributed over the street length: (segment, t).
    pub fn street_point(&self, rng: &mut Rng) -> (usize, f64) {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let target = rng.f64() * total;
        let s = self
            .cumulative
            .partition_point(|&c| c < target)
            .min(self.cumulative.len().saturating_sub(1));
        (s, rng.f64())
    }

    /// A street point weighted by a density profile: rejection sampling
    /// against the centre density.
    fn dense_street_point(&self, rng: &mut Rng, levels: (f64, f64)) -> (usize, f64) {
        let r0 = 0.3 * self.size_m();
        loop {
            let (s, t) = self.street_point(rng);
            let p = self.streets.point(s, t);
            if rng.f64() * levels.0 <= density(levels, p.x.hypot(p.y), r0) {
                return (s, t);
            }
        }
    }

    fn generate_wifi(&self) -> Vec<WifiAp> {
        let mut rng = stream(self.params.seed, "wifi", 0);
        let n = expected_count(self.params.scenario.wifi_density, self.size_m());
        let mut used = BTreeSet::new();
        let mut aps = Vec::with_capacity(n);
        for _ in 0..n {
            let (s, t) = self.dense_street_point(&mut rng, self.params.scenario.wifi_density);
            let side = if rng.bool() { 1.0 } else { -1.0 };
            let xy = self
                .streets
                .beside(s, t, side * uniform(&mut rng, 4.0, 30.0));
            let (channel, frequency) = if rng.u8(..10) < 6 {
                let ch = [1u16, 6, 11, 1, 6, 11, 3, 9, 13][rng.usize(..9)];
                (ch, 2407 + 5 * ch)
            } else {
                let ch = [36u16, 40, 44, 48, 52, 56, 60, 64, 100, 104, 108, 112][rng.usize(..12)];
                (ch, 5000 + 5 * ch)
            };
            let (lat, lon) = self.latlon(xy);
            aps.push(WifiAp {
                mac: unique_mac(&mut rng, &WIFI_OUIS, &mut used),
                ssid: ssid(&mut rng),
                channel,
                frequency,
                tx_offset_db: round1(uniform(&mut rng, -3.0, 3.0)),
                lat,
                lon,
                moved: None,
                xy,
            });
        }
        // Movers: distinct access points, each landing far away on a street.
        let mut rng = stream(self.params.seed, "moves", 0);
        let movers = (self.params.move_share * n as f64).round() as usize;
        let min_move = MIN_MOVE_M.min(0.7 * self.size_m());
        let mut moved = 0;
        let mut attempts = 0;
        while moved < movers && attempts < movers * 50 && !aps.is_empty() {
            attempts += 1;
            let i = rng.usize(..aps.len());
            if aps[i].moved.is_some() {
                continue;
            }
            let from = aps[i].xy;
            let mut best: Option<(f64, Xy)> = None;
            for _ in 0..64 {
                let (s, t) = self.street_point(&mut rng);
                let side = if rng.bool() { 1.0 } else { -1.0 };
                let to = self
                    .streets
                    .beside(s, t, side * uniform(&mut rng, 4.0, 30.0));
                let d = from.dist(to);
                if d >= min_move {
                    best = Some((d, to));
                    break;
                }
            }
            let Some((d, to)) = best else { continue };
            let (lat, lon) = self.latlon(to);
            aps[i].moved = Some(Move {
                at_s: self.params.move_at_s,
                lat,
                lon,
                distance_m: d.round(),
                xy: to,
            });
            moved += 1;
        }
        aps
    }

    fn generate_cells(&self) -> Vec<Cell> {
        let size = self.size_m();
        let half = size / 2.0;
        let areas_x = (size / AREA_M).ceil() as u32;
        let mut cells = Vec::new();
        for (radio_index, radio) in CELL_RADIOS.iter().enumerate() {
            let spacing = match radio.name {
                "nr" => 700.0,
                "lte" => 1100.0,
                "wcdma" => 1500.0,
                _ => 2200.0,
            } * self.params.scenario.cell_spacing;
            for mnc in MNCS {
                let mut rng = stream(self.params.seed, radio.name, u64::from(mnc));
                let per_side = (size / spacing).ceil().max(1.0) as usize;
                let step = size / per_side as f64;
                let enb_base = rng.u64(10_000..500_000);
                let gnb_base = rng.u64((1 << 20)..(1 << 23));
                let mut site = 0u64;
                for j in 0..per_side {
                    for i in 0..per_side {
                        let xy = Xy {
                            x: -half
                                + (i as f64 + 0.5) * step
                                + uniform(&mut rng, -0.3, 0.3) * step,
                            y: -half
                                + (j as f64 + 0.5) * step
                                + uniform(&mut rng, -0.3, 0.3) * step,
                        };
                        let ax =
                            (((xy.x + half) / AREA_M).floor().max(0.0) as u32).min(areas_x - 1);
                        let ay =
                            (((xy.y + half) / AREA_M).floor().max(0.0) as u32).min(areas_x - 1);
                        let area = ay * areas_x + ax;
                        let m = u32::from(mnc);
                        let lac = match radio.name {
                            "gsm" => 10_000 + 1000 * m + area,
                            "wcdma" => 20_000 + 1000 * m + area,
                            "lte" => 30_000 + 1000 * m + area,
                            _ => 0x10_0000 + 1000 * m + area,
                        };
                        let radius = step * uniform(&mut rng, 0.7, 1.0);
                        let azimuth0 = uniform(&mut rng, 0.0, 120.0);
                        let (lat, lon) = self.latlon(xy);
                        for sector in 0..3u64 {
                            let (cid, psc) = match radio.name {
                                "gsm" => (1000 + site * 4 + sector + 1, None),
                                "wcdma" => (
                                    ((100 + u64::from(mnc)) << 16) | (site * 4 + sector + 1),
                                    Some(rng.u16(0..512)),
                                ),
                                "lte" => (
                                    ((enb_base + site) << 8) | (sector + 1),
                                    Some(rng.u16(0..504)),
                                ),
                                _ => (
                                    ((gnb_base + site) << 12) | (sector + 1),
                                    Some(rng.u16(0..1008)),
                                ),
                            };
                            cells.push(Cell {
                                radio: radio.name,
                                mcc: self.params.mcc,
                                mnc,
                                lac,
                                cid,
                                psc,
                                azimuth: round1((azimuth0 + 120.0 * sector as f64) % 360.0),
                                radius_m: radius.round(),
                                lat,
                                lon,
                                xy,
                                radio_index,
                            });
                        }
                        site += 1;
                    }
                }
            }
        }
        cells
    }

    fn generate_blue(&self) -> Vec<Beacon> {
        let mut rng = stream(self.params.seed, "blue", 0);
        let shops = expected_count(self.params.scenario.shop_density, self.size_m());
        let mut used = BTreeSet::new();
        let mut beacons = Vec::new();
        for _ in 0..shops {
            let (s, t) = self.dense_street_point(&mut rng, self.params.scenario.shop_density);
            let side = if rng.bool() { 1.0 } else { -1.0 };
            let shop = self
                .streets
                .beside(s, t, side * uniform(&mut rng, 3.0, 12.0));
            for _ in 0..rng.usize(1..=4) {
                let xy = Xy {
                    x: shop.x + uniform(&mut rng, -6.0, 6.0),
                    y: shop.y + uniform(&mut rng, -6.0, 6.0),
                };
                let (lat, lon) = self.latlon(xy);
                beacons.push(Beacon {
                    mac: unique_mac(&mut rng, &BLUE_OUIS, &mut used),
                    tx_offset_db: round1(uniform(&mut rng, -3.0, 3.0)),
                    lat,
                    lon,
                    xy,
                });
            }
        }
        beacons
    }

    /// Counts of what the world holds.
    pub fn summary(&self) -> WorldSummary {
        let mut cells = [0; 4];
        for c in &self.cells {
            let i = ["gsm", "wcdma", "lte", "nr"]
                .iter()
                .position(|r| *r == c.radio)
                .unwrap_or(0);
            cells[i] += 1;
        }
        WorldSummary {
            nodes: self.streets.nodes.len(),
            segments: self.streets.segments.len(),
            street_km: (self.streets.total_length() / 100.0).round() / 10.0,
            wifi: self.wifi.len(),
            wifi_moving: self.wifi.iter().filter(|a| a.moved.is_some()).count(),
            wifi_not_submitted: self.wifi.iter().filter(|a| !a.submittable()).count(),
            cells,
            blue: self.blue.len(),
        }
    }

    /// The world as one compact JSON document followed by a newline.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let doc = WorldJson {
            params: &self.params,
            summary: self.summary(),
            streets: StreetsJson {
                nodes: self
                    .streets
                    .nodes
                    .iter()
                    .map(|&p| {
                        let (lat, lon) = self.latlon(p);
                        [lat, lon]
                    })
                    .collect(),
                segments: self.streets.segments.iter().map(|&(a, b)| [a, b]).collect(),
            },
            wifi: &self.wifi,
            cells: &self.cells,
            blue: &self.blue,
        };
        let mut out = serde_json::to_vec(&doc)?;
        out.push(b'\n');
        Ok(out)
    }
}
