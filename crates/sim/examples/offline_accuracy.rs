//! Offline accuracy of the locate models, without a server: the stumblers'
//! reports of a scenario are fed through the station updater of
//! `ichnaea-core` (as the pipeline does, in batches), then the probes of
//! `sim accuracy` are answered by the classic and the calibrated model, and
//! by the calibrated fix with the transmitters' true positions (the oracle).
//! For fast model iteration; the figures in docs/benchmarks.md come from the
//! real server (`sim traffic` + `drain` + `sim accuracy`).
//!
//! `cargo run -p ichnaea-sim --example offline_accuracy -- [SCENARIO] [REPORTS] [POSITIONS] [SEED]`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, NaiveDateTime};
use ichnaea_core::cell::CellKey;
use ichnaea_core::geocoder::Geocoder;
use ichnaea_core::locate::calibrated::{Estimates, search_internal_calibrated};
use ichnaea_core::locate::estimate::{Estimate, EstimateObs, next_estimate};
use ichnaea_core::locate::fix::{Anchor, AnchorKind, solve};
use ichnaea_core::locate::position::{StationRows, search_internal};
use ichnaea_core::locate::query::{BlueQuery, CellQuery, QueryInput, WifiQuery, normalize};
use ichnaea_core::locate::result::best_position;
use ichnaea_core::mac::Mac;
use ichnaea_core::observation::ObsPosition;
use ichnaea_core::radio::Radio;
use ichnaea_core::station::{BlueStation, CellStation, StationFields, WifiStation};
use ichnaea_core::updater::{StationType, WeightedObs, observation_weight, update_station};
use ichnaea_sim::accuracy::probes;
use ichnaea_sim::scenario::ScenarioFile;
use ichnaea_sim::track::Traffic;
use ichnaea_sim::wire::Query as WireQuery;
use ichnaea_sim::{World, WorldParams};

struct NoRegions;
impl Geocoder for NoRegions {
    fn region(&self, _: f64, _: f64) -> Option<String> {
        None
    }
    fn in_region(&self, _: f64, _: f64, _: &str) -> bool {
        false
    }
    fn any_region(&self, _: f64, _: f64) -> bool {
        true
    }
    fn region_for_cell(&self, _: f64, _: f64, _: u16) -> Option<String> {
        None
    }
    fn valid_mcc(&self, _: i64) -> bool {
        true
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Wifi(Mac),
    Blue(Mac),
    Cell(CellKey),
}

fn mac(text: &str) -> Mac {
    Mac::from_hex(&text.replace(':', "")).unwrap()
}

fn cell_key(radio: &str, mcc: u16, mnc: u16, lac: u32, cid: u64) -> CellKey {
    CellKey {
        radio: Radio::from_name(radio).unwrap(),
        mcc,
        mnc,
        lac,
        cid,
    }
}

fn input(q: &WireQuery) -> QueryInput {
    QueryInput {
        wifi: q
            .wifi_access_points
            .iter()
            .map(|w| WifiQuery {
                mac: w.mac_address.clone(),
                ssid: w.ssid.clone(),
                age: Some(w.age),
                channel: Some(i64::from(w.channel)),
                frequency: Some(i64::from(w.frequency)),
                signal_strength: Some(i64::from(w.signal_strength)),
                signal_to_noise_ratio: None,
            })
            .collect(),
        blue: q
            .bluetooth_beacons
            .iter()
            .map(|b| BlueQuery {
                mac: b.mac_address.clone(),
                name: None,
                age: Some(b.age),
                signal_strength: Some(i64::from(b.signal_strength)),
            })
            .collect(),
        cell: q
            .cell_towers
            .iter()
            .map(|c| CellQuery {
                radio: Radio::from_name(c.radio_type),
                mcc: Some(i64::from(c.mobile_country_code)),
                mnc: Some(i64::from(c.mobile_network_code)),
                lac: Some(i64::from(c.location_area_code)),
                cid: Some(c.cell_id as i64),
                psc: c.primary_scrambling_code.map(i64::from),
                age: Some(c.age),
                signal_strength: Some(i64::from(c.signal_strength)),
                timing_advance: c.timing_advance.map(i64::from),
            })
            .collect(),
        fallbacks: Default::default(),
        has_ip: false,
    }
}

#[derive(Default)]
struct Tally {
    errors: Vec<f64>,
    radii: Vec<f64>,
    inside: usize,
    inside68: usize,
    positions: usize,
}

impl Tally {
    fn add(&mut self, error: f64, radius: f64) {
        self.errors.push(error);
        self.radii.push(radius);
        self.inside += usize::from(error <= radius);
        self.inside68 += usize::from(error <= 0.6167 * radius);
    }
    fn row(&mut self, name: &str) {
        self.errors.sort_by(f64::total_cmp);
        self.radii.sort_by(f64::total_cmp);
        let n = self.errors.len();
        let p = |v: &[f64], q: f64| {
            if v.is_empty() {
                0.0
            } else {
                v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
            }
        };
        println!(
            "{name:<18} answered {:>5.1}%  median {:>7.1}  p90 {:>7.1}  in95 {:>5.1}%  in68 {:>5.1}%  circle {:>7.1}",
            100.0 * n as f64 / self.positions.max(1) as f64,
            p(&self.errors, 0.5),
            p(&self.errors, 0.9),
            100.0 * self.inside as f64 / n.max(1) as f64,
            100.0 * self.inside68 as f64 / n.max(1) as f64,
            p(&self.radii, 0.5),
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = match args.get(1).filter(|a| *a != "-") {
        Some(p) => ScenarioFile::read(Path::new(p)).unwrap(),
        None => ScenarioFile::default(),
    };
    let reports: u64 = args.get(2).map_or(50_000, |a| a.parse().unwrap());
    let positions: usize = args.get(3).map_or(1000, |a| a.parse().unwrap());
    let seed: u64 = args.get(4).map_or(1, |a| a.parse().unwrap());
    let mut params = WorldParams::berlin(seed);
    params.scenario = file.scenario().unwrap();
    if let Some(s) = file.city.size_km {
        params.size_km = s;
    }
    if let Some(s) = file.moves.share {
        params.move_share = s;
    }
    if let Some(s) = file.moves.at_s {
        params.move_at_s = s;
    }
    let world = World::generate(&params);
    let start_ms = 1_760_000_000_000i64;
    let now: NaiveDateTime = DateTime::from_timestamp_millis(start_ms + 86_400_000)
        .unwrap()
        .naive_utc();

    // Observations, batched as a pipeline would (every 2,000 reports).
    let mut rows: BTreeMap<Key, (StationFields, Option<i64>)> = BTreeMap::new();
    let mut pending: BTreeMap<Key, Vec<(WeightedObs, EstimateObs)>> = BTreeMap::new();
    let mut estimates: BTreeMap<Key, Estimate> = BTreeMap::new();
    let mut in_batch = 0;
    let flush = |pending: &mut BTreeMap<Key, Vec<(WeightedObs, EstimateObs)>>,
                 rows: &mut BTreeMap<Key, (StationFields, Option<i64>)>,
                 estimates: &mut BTreeMap<Key, Estimate>| {
        for (key, both) in std::mem::take(pending) {
            let (kind, default_signal) = match key {
                Key::Wifi(_) => (StationType::Wifi, -80.0),
                Key::Blue(_) => (StationType::Blue, -90.0),
                Key::Cell(k) => (StationType::Cell(k.radio), -110.0),
            };
            let obs: Vec<WeightedObs> = both.iter().map(|b| b.0.clone()).collect();
            let eobs: Vec<EstimateObs> = both.iter().map(|b| b.1).collect();
            let existing = rows.get(&key).map(|(f, p)| (f, *p));
            let update = update_station(kind, existing, &obs, now, &NoRegions);
            let batch = Estimate::of(&eobs, default_signal);
            match next_estimate(update.action, estimates.get(&key).copied(), batch) {
                Some(e) => {
                    estimates.insert(key, e);
                }
                None => {
                    estimates.remove(&key);
                }
            }
            if let Some(row) = update.row {
                rows.insert(key, (row, update.psc));
            }
        }
    };
    for batch in Traffic::new(&world, 40, reports, start_ms) {
        for item in &batch.items {
            let p = &item.position;
            let pos = ObsPosition {
                lat: p.latitude,
                lon: p.longitude,
                accuracy: Some(p.accuracy),
                speed: Some(p.speed),
                ..ObsPosition::default()
            };
            let weigh = |kind, age: i64, signal: i32, psc: Option<i64>| {
                (
                    WeightedObs {
                        lat: pos.lat,
                        lon: pos.lon,
                        weight: observation_weight(
                            kind,
                            &ObsPosition { ..pos.clone() },
                            Some(age),
                            Some(i64::from(signal)),
                        ),
                        query: false,
                        psc,
                    },
                    EstimateObs {
                        lat: pos.lat,
                        lon: pos.lon,
                        accuracy: Some(p.accuracy),
                        signal: Some(f64::from(signal)),
                        age_ms: Some(age),
                    },
                )
            };
            for w in &item.wifi_access_points {
                let o = weigh(StationType::Wifi, w.age, w.signal_strength, None);
                if o.0.weight > 0.0 {
                    pending
                        .entry(Key::Wifi(mac(&w.mac_address)))
                        .or_default()
                        .push(o);
                }
            }
            for b in &item.bluetooth_beacons {
                let o = weigh(StationType::Blue, b.age, b.signal_strength, None);
                if o.0.weight > 0.0 {
                    pending
                        .entry(Key::Blue(mac(&b.mac_address)))
                        .or_default()
                        .push(o);
                }
            }
            for c in &item.cell_towers {
                let k = cell_key(
                    c.radio_type,
                    c.mobile_country_code,
                    c.mobile_network_code,
                    c.location_area_code,
                    c.cell_id,
                );
                let o = weigh(StationType::Cell(k.radio), c.age, c.signal_strength, None);
                if o.0.weight > 0.0 {
                    pending.entry(Key::Cell(k)).or_default().push(o);
                }
            }
            in_batch += 1;
            if in_batch >= 2000 {
                flush(&mut pending, &mut rows, &mut estimates);
                in_batch = 0;
            }
        }
    }
    flush(&mut pending, &mut rows, &mut estimates);
    let blocked = |f: &StationFields| f.lat.is_none();
    let count = |pred: fn(&Key) -> bool| {
        let all = rows.keys().filter(|k| pred(k)).count();
        let b = rows
            .iter()
            .filter(|(k, v)| pred(k) && blocked(&v.0))
            .count();
        (all, b)
    };
    println!(
        "scenario {}: {} reports; stations wifi {:?} blue {:?} cell {:?} (total, blocked)",
        params.scenario.name,
        reports,
        count(|k| matches!(k, Key::Wifi(_))),
        count(|k| matches!(k, Key::Blue(_))),
        count(|k| matches!(k, Key::Cell(_)))
    );

    // True positions for the oracle.
    let mut truth: BTreeMap<Key, (f64, f64)> = BTreeMap::new();
    for ap in &world.wifi {
        let (lat, lon) = match &ap.moved {
            Some(m) => (m.lat, m.lon),
            None => (ap.lat, ap.lon),
        };
        truth.insert(Key::Wifi(mac(&ap.mac)), (lat, lon));
    }
    for b in &world.blue {
        truth.insert(Key::Blue(mac(&b.mac)), (b.lat, b.lon));
    }
    for c in &world.cells {
        truth.insert(
            Key::Cell(cell_key(c.radio, c.mcc, c.mnc, c.lac, c.cid)),
            (c.lat, c.lon),
        );
    }

    for (name, pick) in [("wifi", 0u8), ("blue", 1), ("cell", 2)] {
        let mut errs: Vec<f64> = rows
            .iter()
            .filter(|(k, _)| match k {
                Key::Wifi(_) => pick == 0,
                Key::Blue(_) => pick == 1,
                Key::Cell(_) => pick == 2,
            })
            .filter_map(|(k, (f, _))| {
                let (tl, tn) = truth.get(k)?;
                Some(ichnaea_core::geo::distance(f.lat?, f.lon?, *tl, *tn))
            })
            .collect();
        let mut est: Vec<f64> = estimates
            .iter()
            .filter(|(k, _)| match k {
                Key::Wifi(_) => pick == 0,
                Key::Blue(_) => pick == 1,
                Key::Cell(_) => pick == 2,
            })
            .filter_map(|(k, e)| {
                let (tl, tn) = truth.get(k)?;
                Some(ichnaea_core::geo::distance(e.lat, e.lon, *tl, *tn))
            })
            .collect();
        est.sort_by(f64::total_cmp);
        if !est.is_empty() {
            let n = est.len();
            println!(
                "estimate error {name}: median {:.1} p90 {:.1} m",
                est[n / 2],
                est[n * 9 / 10]
            );
        }
        errs.sort_by(f64::total_cmp);
        if !errs.is_empty() {
            let n = errs.len();
            println!(
                "station error {name}: median {:.1} p90 {:.1} m ({n} positioned)",
                errs[n / 2],
                errs[n * 9 / 10]
            );
        }
    }
    let names = ["wifi", "cell", "blue", "mixed"];
    let mut classic: Vec<Tally> = (0..4).map(|_| Tally::default()).collect();
    let mut calibrated: Vec<Tally> = (0..4).map(|_| Tally::default()).collect();
    let mut oracle: Vec<Tally> = (0..4).map(|_| Tally::default()).collect();
    for probe in probes(&world, positions) {
        for (k, q) in probe.queries.iter().enumerate() {
            classic[k].positions += 1;
            calibrated[k].positions += 1;
            oracle[k].positions += 1;
            let Some(q) = q else { continue };
            let query = normalize(&input(q));
            let wifi: Vec<WifiStation> = query
                .wifi
                .iter()
                .filter_map(|l| {
                    let (f, _) = rows.get(&Key::Wifi(l.mac))?;
                    Some(WifiStation {
                        mac: l.mac,
                        fields: f.clone(),
                    })
                })
                .collect();
            let blue: Vec<BlueStation> = query
                .blue
                .iter()
                .filter_map(|l| {
                    let (f, _) = rows.get(&Key::Blue(l.mac))?;
                    Some(BlueStation {
                        mac: l.mac,
                        fields: f.clone(),
                    })
                })
                .collect();
            let cells: Vec<CellStation> = query
                .cell
                .iter()
                .filter_map(|l| {
                    let (f, psc) = rows.get(&Key::Cell(l.key))?;
                    Some(CellStation {
                        key: l.key,
                        psc: psc.map(|p| p as i16),
                        fields: f.clone(),
                    })
                })
                .collect();
            let sr = StationRows {
                wifi: &wifi,
                blue: &blue,
                cells: &cells,
                areas: &[],
            };
            let err =
                |lat: f64, lon: f64| ichnaea_core::geo::distance(lat, lon, probe.lat, probe.lon);
            let found = search_internal(&query, sr, now);
            if let Some(best) = best_position(&found) {
                classic[k].add(err(best.lat, best.lon), best.accuracy);
            }
            let ew: Vec<(Mac, Estimate)> = query
                .wifi
                .iter()
                .filter_map(|l| Some((l.mac, *estimates.get(&Key::Wifi(l.mac))?)))
                .collect();
            let eb: Vec<(Mac, Estimate)> = query
                .blue
                .iter()
                .filter_map(|l| Some((l.mac, *estimates.get(&Key::Blue(l.mac))?)))
                .collect();
            let ec: Vec<(CellKey, Estimate)> = query
                .cell
                .iter()
                .filter_map(|l| Some((l.key, *estimates.get(&Key::Cell(l.key))?)))
                .collect();
            let est = Estimates {
                wifi: &ew,
                blue: &eb,
                cells: &ec,
            };
            let found = search_internal_calibrated(&query, sr, est, now, 95);
            if let Some(best) = best_position(&found) {
                calibrated[k].add(err(best.lat, best.lon), best.accuracy);
                if k == 0 && std::env::var("DEBUG_WORST").is_ok() && err(best.lat, best.lon) > 150.0
                {
                    let mut lines = Vec::new();
                    for l in &query.wifi {
                        let key = Key::Wifi(l.mac);
                        let t = truth.get(&key);
                        let e = estimates.get(&key);
                        let r = rows.get(&key);
                        let d_true = t.map(|(a, b)| {
                            ichnaea_core::geo::distance(*a, *b, probe.lat, probe.lon)
                        });
                        let e_err = match (t, e) {
                            (Some((a, b)), Some(e)) => {
                                Some(ichnaea_core::geo::distance(*a, *b, e.lat, e.lon))
                            }
                            _ => None,
                        };
                        lines.push(format!(
                            "  sig {:?} d_true {:?} est_err {:?} n {:?} row {:?}",
                            l.signal_strength,
                            d_true.map(|d| d.round()),
                            e_err.map(|d| d.round()),
                            e.map(|e| e.n),
                            r.map(|r| (r.0.lat.is_some(), r.0.samples))
                        ));
                    }
                    println!(
                        "worst: err {:.0} acc {:.0}\n{}",
                        err(best.lat, best.lon),
                        best.accuracy,
                        lines.join("\n")
                    );
                }
            }
            // Oracle: the calibrated fix with true positions, exact stations.
            let mut anchors = Vec::new();
            for l in &query.wifi {
                if let Some(&(lat, lon)) = truth.get(&Key::Wifi(l.mac)) {
                    anchors.push(anchor(AnchorKind::Wifi, lat, lon, l.signal_strength));
                }
            }
            for l in &query.blue {
                if let Some(&(lat, lon)) = truth.get(&Key::Blue(l.mac)) {
                    anchors.push(anchor(AnchorKind::Blue, lat, lon, l.signal_strength));
                }
            }
            for l in &query.cell {
                if let Some(&(lat, lon)) = truth.get(&Key::Cell(l.key)) {
                    anchors.push(anchor(AnchorKind::Cell, lat, lon, l.signal_strength));
                }
            }
            if let Some(fix) = solve(&anchors) {
                oracle[k].add(err(fix.lat, fix.lon), f64::INFINITY);
            }
        }
    }
    for k in 0..4 {
        classic[k].row(&format!("{} classic", names[k]));
        calibrated[k].row(&format!("{} calibrated", names[k]));
        oracle[k].row(&format!("{} oracle", names[k]));
    }
}

fn anchor(kind: AnchorKind, lat: f64, lon: f64, signal: Option<i64>) -> Anchor {
    Anchor {
        kind,
        lat,
        lon,
        sigma_m: 1.0,
        signal: signal.map(|s| s as f64),
        trust: 1.0,
    }
}
