//! What a phone sees at a place and time of the world: the Wi-Fi access points,
//! cells (serving and neighbours of the phone's operator) and Bluetooth beacons
//! it detects, with measured signal strengths drawn from the radio model.
//! Traffic and accuracy queries both build their requests from scans.

use fastrand::Rng;

use crate::geo::Xy;
use crate::radio::{self, CELL_RADIOS};
use crate::rng::normal;
use crate::world::{MNCS, World};

/// Side of a bucket of the spatial index, metres.
const BUCKET_M: f64 = 100.0;
/// Neighbour cells a phone lists besides its serving cell.
const MAX_NEIGHBOURS: usize = 4;

/// A detected access point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeenWifi {
    /// Index into [`World::wifi`].
    pub ap: usize,
    /// Measured signal, dBm.
    pub signal: i32,
    /// True distance to the phone, metres.
    pub distance: f64,
}

/// A detected beacon.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeenBlue {
    /// Index into [`World::blue`].
    pub beacon: usize,
    /// Measured signal, dBm.
    pub signal: i32,
}

/// A listed cell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeenCell {
    /// Index into [`World::cells`].
    pub cell: usize,
    /// Measured signal, dBm (within the radio's API range).
    pub signal: i32,
    /// Whether it is the serving cell (first in the list).
    pub serving: bool,
    /// LTE timing advance of the serving cell (units of 78 m).
    pub timing_advance: Option<u32>,
}

/// One scan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scan {
    /// Access points, strongest first.
    pub wifi: Vec<SeenWifi>,
    /// Serving cell first, then neighbours, strongest first.
    pub cells: Vec<SeenCell>,
    /// Beacons, strongest first.
    pub blue: Vec<SeenBlue>,
}

/// A uniform grid of buckets over the city holding indices of transmitters.
#[derive(Clone, Debug)]
struct Grid {
    half: f64,
    n: usize,
    buckets: Vec<Vec<(u32, bool)>>,
}

impl Grid {
    fn new(size_m: f64) -> Grid {
        // A margin around the square for access points beside border streets.
        let half = size_m / 2.0 + 2.0 * BUCKET_M;
        let n = ((2.0 * half) / BUCKET_M).ceil() as usize;
        Grid {
            half,
            n,
            buckets: vec![Vec::new(); n * n],
        }
    }

    fn index(&self, v: f64) -> usize {
        (((v + self.half) / BUCKET_M).floor().max(0.0) as usize).min(self.n - 1)
    }

    fn insert(&mut self, p: Xy, item: (u32, bool)) {
        let (i, j) = (self.index(p.x), self.index(p.y));
        self.buckets[j * self.n + i].push(item);
    }

    /// Entries of every bucket touching the square of `r` around `p`, in a
    /// fixed order.
    fn near(&self, p: Xy, r: f64) -> impl Iterator<Item = (u32, bool)> + '_ {
        let (i0, i1) = (self.index(p.x - r), self.index(p.x + r));
        let (j0, j1) = (self.index(p.y - r), self.index(p.y + r));
        (j0..=j1).flat_map(move |j| {
            (i0..=i1).flat_map(move |i| self.buckets[j * self.n + i].iter().copied())
        })
    }
}

/// Scans the world: built once per world, then asked for many scans.
#[derive(Clone, Debug)]
pub struct Scanner<'w> {
    world: &'w World,
    /// Access points at their first place (`false`) and, for movers, at their
    /// second (`true`).
    wifi: Grid,
    blue: Grid,
    /// Cell indices per operator, in [`MNCS`] order.
    cells_by_mnc: Vec<Vec<usize>>,
}

impl<'w> Scanner<'w> {
    /// Indexes `world`.
    pub fn new(world: &'w World) -> Scanner<'w> {
        let mut wifi = Grid::new(world.size_m());
        for (i, ap) in world.wifi.iter().enumerate() {
            wifi.insert(ap.xy, (i as u32, false));
            if let Some(m) = &ap.moved {
                wifi.insert(m.xy, (i as u32, true));
            }
        }
        let mut blue = Grid::new(world.size_m());
        for (i, b) in world.blue.iter().enumerate() {
            blue.insert(b.xy, (i as u32, false));
        }
        let cells_by_mnc = MNCS
            .iter()
            .map(|&mnc| {
                (0..world.cells.len())
                    .filter(|&i| world.cells[i].mnc == mnc)
                    .collect()
            })
            .collect();
        Scanner {
            world,
            wifi,
            blue,
            cells_by_mnc,
        }
    }

    /// The world scanned.
    pub fn world(&self) -> &'w World {
        self.world
    }

    /// Access points detected at `p` at simulated second `t_s`.
    pub fn wifi(&self, rng: &mut Rng, p: Xy, t_s: f64) -> Vec<SeenWifi> {
        let sc = &self.world.params.scenario;
        let mut seen = Vec::new();
        let range = sc.wifi_24.max_range.max(sc.wifi_5.max_range);
        for (i, second_place) in self.wifi.near(p, range) {
            let ap = &self.world.wifi[i as usize];
            let after_move = ap.moved.as_ref().is_some_and(|m| t_s >= m.at_s);
            if second_place != after_move {
                continue;
            }
            let d = ap.position_at(t_s).dist(p);
            let model = if ap.is_5ghz() { sc.wifi_5 } else { sc.wifi_24 };
            if let Some(rssi) = model.measure(rng, d, ap.tx_offset_db) {
                seen.push(SeenWifi {
                    ap: i as usize,
                    signal: (rssi.round() as i32).clamp(-100, -10),
                    distance: d,
                });
            }
        }
        seen.sort_by(|a, b| b.signal.cmp(&a.signal).then(a.ap.cmp(&b.ap)));
        seen
    }

    /// Beacons detected at `p`.
    pub fn blue(&self, rng: &mut Rng, p: Xy) -> Vec<SeenBlue> {
        let model = self.world.params.scenario.blue;
        let mut seen = Vec::new();
        for (i, _) in self.blue.near(p, model.max_range) {
            let b = &self.world.blue[i as usize];
            if let Some(rssi) = model.measure(rng, b.xy.dist(p), b.tx_offset_db) {
                seen.push(SeenBlue {
                    beacon: i as usize,
                    signal: (rssi.round() as i32).clamp(-127, 0),
                });
            }
        }
        seen.sort_by(|a, b| b.signal.cmp(&a.signal).then(a.beacon.cmp(&b.beacon)));
        seen
    }

    /// The cells a phone of operator `MNCS[operator]` lists at `p`: the
    /// strongest cell of the best radio with coverage (nr, then lte, wcdma,
    /// gsm) as serving cell, and up to four neighbours of the same radio.
    pub fn cells(&self, rng: &mut Rng, p: Xy, operator: usize) -> Vec<SeenCell> {
        let ids = &self.cells_by_mnc[operator % self.cells_by_mnc.len()];
        let cm = self.world.params.scenario.cell;
        let mut heard: Vec<(usize, f64, f64)> = Vec::with_capacity(ids.len());
        for &i in ids {
            let c = &self.world.cells[i];
            let model = c.model();
            let d = c.xy.dist(p);
            let bearing = (p.x - c.xy.x).atan2(p.y - c.xy.y).to_degrees();
            let off = ((bearing - c.azimuth + 540.0) % 360.0 - 180.0).abs();
            let dbm = radio::cell_mean_dbm(model.edge_dbm, cm.n, c.radius_m, d, off)
                + cm.sigma * normal(rng);
            // The miss draw only happens when the scenario asks for misses,
            // so the default world's random streams stay as they were.
            let missed = cm.miss > 0.0 && rng.f64() < cm.miss;
            if dbm >= model.floor_dbm + cm.floor_shift_db && !missed {
                heard.push((i, dbm, d));
            }
        }
        let best_radio = (0..CELL_RADIOS.len())
            .find(|&r| {
                heard.iter().any(|&(i, dbm, _)| {
                    let c = &self.world.cells[i];
                    c.radio_index == r && dbm >= c.model().edge_dbm
                })
            })
            .or_else(|| {
                heard
                    .iter()
                    .map(|&(i, _, _)| self.world.cells[i].radio_index)
                    .min()
            });
        let Some(radio_index) = best_radio else {
            return Vec::new();
        };
        let mut same: Vec<(usize, f64, f64)> = heard
            .into_iter()
            .filter(|&(i, _, _)| self.world.cells[i].radio_index == radio_index)
            .collect();
        same.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        same.truncate(1 + MAX_NEIGHBOURS);
        let (lo, hi) = CELL_RADIOS[radio_index].range;
        same.iter()
            .enumerate()
            .map(|(k, &(i, dbm, d))| SeenCell {
                cell: i,
                signal: dbm.clamp(lo, hi).round() as i32,
                serving: k == 0,
                timing_advance: (k == 0 && CELL_RADIOS[radio_index].name == "lte")
                    .then(|| ((d / 78.12).round() as u32).min(63)),
            })
            .collect()
    }

    /// Everything at once, for a phone of operator index `operator`.
    pub fn scan(&self, rng: &mut Rng, p: Xy, t_s: f64, operator: usize) -> Scan {
        Scan {
            wifi: self.wifi(rng, p, t_s),
            cells: self.cells(rng, p, operator),
            blue: self.blue(rng, p),
        }
    }
}
