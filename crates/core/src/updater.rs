//! The station updater's rules (pipeline §3): observation weights, the
//! blocked predicate, the summary of a group of observations, the state and
//! transition table, and the resulting row. Pure: the pipeline reads the stored
//! rows, calls [`update_station`] per station key and writes what it returns.
//!
//! Deliberate departure from the original: `block_count` saturates at 255 instead
//! of overflowing its column (pipeline §1.4, §7.3 item 8).
//!
//! Sections (§) refer to docs/reference/pipeline.md.

use chrono::{NaiveDate, NaiveDateTime};

use crate::geo::{circle_radius, distance};
use crate::geocoder::Geocoder;
use crate::observation::{BlueObservation, CellObservation, ObsPosition, WifiObservation};
use crate::radio::Radio;
use crate::source::ReportSource;
use crate::station::StationFields;

/// Largest `samples` value (the original's unsigned 32-bit column).
pub const MAX_SAMPLES: i64 = 4_294_967_295;
/// Largest `weight` value.
pub const MAX_WEIGHT: f64 = 1_000_000_000.0;
/// Cap of the old weight's influence when averaging positions.
pub const OLD_WEIGHT_CAP: f64 = 10_000.0;
/// Largest `block_count`.
pub const MAX_BLOCK_COUNT: i16 = 255;

/// Which kind of station a group of observations is about.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum StationType {
    /// Bluetooth beacon.
    Blue,
    /// Wi-Fi access point.
    Wifi,
    /// Cell of a radio.
    Cell(Radio),
}

impl StationType {
    /// D: the largest consistent spread and agreement distance, metres.
    ///
    /// Bluetooth: 500 m, not the original's 100 m. A phone hears a beacon
    /// from up to about 120 m, so sightings of a beacon that stays in its shop
    /// fill a box up to about 240 m wide, whose diagonal (what the spread rule
    /// measures) reaches about 340 m with GNSS error; with 100 m, whether such
    /// a beacon got blocked depended on how its sightings were split into
    /// batches (a quarter of the simulator's beacons, a different count every
    /// run). 500 m blocks only beacons that really moved.
    pub fn max_distance(self) -> f64 {
        match self {
            StationType::Blue => 500.0,
            StationType::Wifi => 5_000.0,
            StationType::Cell(_) => 100_000.0,
        }
    }

    /// MAXACC: observations less accurate than this weigh nothing, metres.
    pub fn max_accuracy(self) -> f64 {
        match self {
            StationType::Blue => 100.0,
            StationType::Wifi => 200.0,
            StationType::Cell(_) => 1_000.0,
        }
    }

    /// Name used in counters and metric tags: `blue`, `wifi` or `cell`.
    pub fn stat_name(self) -> &'static str {
        match self {
            StationType::Blue => "blue",
            StationType::Wifi => "wifi",
            StationType::Cell(_) => "cell",
        }
    }
}

/// The part of an observation the updater uses.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightedObs {
    /// Position of the report.
    pub lat: f64,
    /// Position of the report.
    pub lon: f64,
    /// Observation weight (§3.2), > 0.
    pub weight: f64,
    /// Source is `query` (a locate answer), not a position-backed report.
    pub query: bool,
    /// Cells: the scrambling code / PCI seen.
    pub psc: Option<i64>,
}

fn accuracy_factor(max: f64, accuracy: Option<f64>) -> f64 {
    let a = accuracy.map_or(10.0, |a| a.abs().max(10.0));
    if a > max { 0.0 } else { (10.0 / a).sqrt() }
}

fn age_factor(age: Option<i64>) -> f64 {
    let g = age.map_or(2000.0, |g| (g.unsigned_abs() as f64).max(2000.0));
    if g > 20_000.0 {
        0.0
    } else {
        (2000.0 / g).sqrt().min(1.0)
    }
}

fn speed_factor(speed: Option<f64>) -> f64 {
    let v = speed.map_or(1.0, |v| v.abs().max(1.0));
    if v > 50.0 {
        0.0
    } else {
        (5.0 / v).sqrt().min(1.0)
    }
}

fn signal_factor(kind: StationType, signal: Option<i64>) -> f64 {
    match kind {
        StationType::Blue => 1.0,
        StationType::Wifi => {
            let s = signal.unwrap_or(-80) as f64;
            1e8 / (s - 20.0).powi(4)
        }
        StationType::Cell(radio) => {
            let (median, offset) = match radio {
                Radio::Gsm => (-95, -5),
                Radio::Wcdma => (-100, 0),
                Radio::Lte | Radio::Nr => (-105, 5),
            };
            let s = signal.unwrap_or(median) as f64;
            1e8 / (s + offset as f64).powi(4)
        }
    }
}

/// Observation weight: accuracy × age × speed × signal factors (§3.2).
pub fn observation_weight(
    kind: StationType,
    pos: &ObsPosition,
    age: Option<i64>,
    signal: Option<i64>,
) -> f64 {
    accuracy_factor(kind.max_accuracy(), pos.accuracy.filter(|a| *a != 0.0))
        * age_factor(age.filter(|a| *a != 0))
        * speed_factor(pos.speed.filter(|s| *s != 0.0))
        * signal_factor(kind, signal)
}

fn weighted(
    kind: StationType,
    pos: &ObsPosition,
    age: Option<i64>,
    signal: Option<i64>,
    psc: Option<i64>,
) -> WeightedObs {
    WeightedObs {
        lat: pos.lat,
        lon: pos.lon,
        weight: observation_weight(kind, pos, age, signal),
        query: pos.source == Some(ReportSource::Query.code()),
        psc,
    }
}

/// Weighs a Bluetooth observation.
pub fn weigh_blue(o: &BlueObservation) -> WeightedObs {
    weighted(StationType::Blue, &o.pos, o.age, o.signal, None)
}

/// Weighs a Wi-Fi observation.
pub fn weigh_wifi(o: &WifiObservation) -> WeightedObs {
    weighted(StationType::Wifi, &o.pos, o.age, o.signal, None)
}

/// Weighs a cell observation.
pub fn weigh_cell(o: &CellObservation) -> Option<WeightedObs> {
    let radio = Radio::from_code(o.radio.into())?;
    Some(weighted(
        StationType::Cell(radio),
        &o.pos,
        o.age,
        o.signal,
        o.psc,
    ))
}

/// Whether a stored station is blocked on `today` (§3.4): blocked today or
/// yesterday, or blocked at least once per (half-even rounded) 30-day month of age.
pub fn is_blocked(row: &StationFields, today: NaiveDate) -> bool {
    if let Some(last) = row.block_last
        && (today - last).num_days() < 2
    {
        return true;
    }
    match (row.created, row.block_count) {
        (Some(created), Some(count)) if count > 0 => {
            let age_days = (today - created.date()).num_days().abs() as f64;
            f64::from(count) >= (age_days / 30.0).round_ties_even()
        }
        _ => false,
    }
}

/// What happened to a station (§3.7).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Created with a position.
    New,
    /// Created blocked (observations too spread out).
    NewBlock,
    /// Position merged with new observations.
    Change,
    /// Position replaced by new observations.
    Replace,
    /// Seen again where expected; only `last_seen` moves.
    Confirm,
    /// Moved or inconsistent: position dropped, block recorded.
    Block,
}

/// The updater's decision for one station key.
#[derive(Clone, Debug, PartialEq)]
pub struct StationUpdate {
    /// What happened; `None` when the station is blocked or nothing applies.
    pub action: Option<Action>,
    /// The row to write (whole), or `None` for no write.
    pub row: Option<StationFields>,
    /// Cells: the `psc` to write.
    pub psc: Option<i64>,
    /// Observations of the group, counted in `obs` even when ignored.
    pub observations: u64,
}

struct Summary {
    lat: f64,
    lon: f64,
    max_lat: f64,
    min_lat: f64,
    max_lon: f64,
    min_lon: f64,
    samples: i64,
    weight: f64,
}

fn summarize(obs: &[&WeightedObs], max_distance: f64) -> Option<Summary> {
    let (mut max_lat, mut min_lat, mut max_lon, mut min_lon) =
        (f64::MIN, f64::MAX, f64::MIN, f64::MAX);
    let (mut wsum, mut lat_sum, mut lon_sum) = (0.0, 0.0, 0.0);
    for o in obs {
        max_lat = max_lat.max(o.lat);
        min_lat = min_lat.min(o.lat);
        max_lon = max_lon.max(o.lon);
        min_lon = min_lon.min(o.lon);
        wsum += o.weight;
        lat_sum += o.weight * o.lat;
        lon_sum += o.weight * o.lon;
    }
    if obs.is_empty() || wsum <= 0.0 || distance(min_lat, min_lon, max_lat, max_lon) > max_distance
    {
        return None;
    }
    Some(Summary {
        lat: lat_sum / wsum,
        lon: lon_sum / wsum,
        max_lat,
        min_lat,
        max_lon,
        min_lon,
        samples: (obs.len() as i64).min(MAX_SAMPLES),
        weight: wsum.min(MAX_WEIGHT),
    })
}

fn source_of(query: bool) -> ReportSource {
    if query {
        ReportSource::Query
    } else {
        ReportSource::Gnss
    }
}

/// How the stored row relates to the chosen observations.
enum Relation {
    /// No stored row.
    Unknown,
    /// A stored row without a position (blocked earlier, block expired).
    NoPosition,
    /// Every observation within the spread limit of a GNSS-based position.
    AgreeGnss,
    /// Every observation within the spread limit of a query-based position.
    AgreeQuery,
    /// An observation too far from the stored position.
    Disagree,
    /// Too far, and the stored position unchanged for over a year.
    DisagreeOld,
}

fn relation(
    existing: Option<&StationFields>,
    chosen: &[&WeightedObs],
    max_distance: f64,
    today: NaiveDate,
) -> Relation {
    let Some(row) = existing else {
        return Relation::Unknown;
    };
    let (Some(lat), Some(lon)) = (row.lat, row.lon) else {
        return Relation::NoPosition;
    };
    if chosen
        .iter()
        .all(|o| distance(lat, lon, o.lat, o.lon) <= max_distance)
    {
        if row.source == Some(ReportSource::Query) {
            Relation::AgreeQuery
        } else {
            Relation::AgreeGnss
        }
    } else if row
        .modified
        .is_some_and(|m| (today - m.date()).num_days() > 365)
    {
        Relation::DisagreeOld
    } else {
        Relation::Disagree
    }
}

/// The decision for one station, carrying what its write needs: an action
/// that writes a position holds the summary it is computed from, so no
/// combination can write a row it has no data for.
enum Decision {
    /// Nothing to write (and no action counted).
    Nothing,
    New(Summary),
    NewBlock,
    Change(Summary),
    Replace(Summary),
    Confirm,
    Block,
}

/// The action table of §3.7: the relation to the stored row, the batch's
/// summary (absent when the observations spread beyond the limit) and whether
/// the observations are query-based.
fn decide(relation: Relation, summary: Option<Summary>, query: bool) -> Decision {
    match (relation, summary) {
        (Relation::Unknown, Some(s)) => Decision::New(s),
        (Relation::Unknown, None) => Decision::NewBlock,
        (Relation::NoPosition, Some(s)) => Decision::Change(s),
        (Relation::NoPosition, None) => Decision::Nothing,
        (Relation::AgreeGnss, Some(s)) if !query => Decision::Change(s),
        (Relation::AgreeGnss, Some(_)) => Decision::Confirm,
        (Relation::AgreeQuery, Some(s)) if !query => Decision::Replace(s),
        (Relation::AgreeQuery, Some(s)) => Decision::Change(s),
        (Relation::DisagreeOld, Some(s)) => Decision::Replace(s),
        (Relation::Disagree, _)
        | (Relation::AgreeGnss | Relation::AgreeQuery | Relation::DisagreeOld, None) => {
            Decision::Block
        }
    }
}

/// Decides the update of one station (§3.3–§3.9). `existing` is the stored
/// row (with its `psc` for cells); `obs` are the group's weighted observations
/// (weight > 0) in queue order.
pub fn update_station(
    kind: StationType,
    existing: Option<(&StationFields, Option<i64>)>,
    obs: &[WeightedObs],
    now: NaiveDateTime,
    geocoder: &dyn Geocoder,
) -> StationUpdate {
    let today = now.date();
    let stored_psc = existing.and_then(|(_, p)| p);
    let count = obs.len() as u64;
    let update =
        |action: Option<Action>, row: Option<StationFields>, psc: Option<i64>| StationUpdate {
            action,
            row,
            psc,
            observations: count,
        };
    if obs.is_empty() || existing.is_some_and(|(row, _)| is_blocked(row, today)) {
        return update(None, None, stored_psc);
    }
    // GNSS-based observations win; query-based ones count only on their own.
    let gnss: Vec<&WeightedObs> = obs.iter().filter(|o| !o.query).collect();
    let (chosen, query) = if gnss.is_empty() {
        (obs.iter().collect::<Vec<_>>(), true)
    } else {
        (gnss, false)
    };
    let d = kind.max_distance();
    let psc = chosen.iter().rev().find_map(|o| o.psc).or(stored_psc);
    let stored = existing.map(|(row, _)| row);
    let decision = decide(
        relation(stored, &chosen, d, today),
        summarize(&chosen, d),
        query,
    );
    let old = stored.cloned().unwrap_or_default();
    let source = Some(source_of(query));
    match decision {
        Decision::Nothing => update(None, None, stored_psc),
        Decision::New(s) => {
            let row = positioned(&s, source, now, geocoder, StationFields::default());
            update(Some(Action::New), Some(row), psc)
        }
        Decision::Replace(s) => {
            let row = positioned(&s, source, now, geocoder, old);
            update(Some(Action::Replace), Some(row), psc)
        }
        Decision::Change(s) => {
            let row = merge(&old, &s, &chosen, source, now, geocoder);
            update(Some(Action::Change), Some(row), psc)
        }
        Decision::Confirm => {
            // Only `last_seen` moves, and only once a day.
            let row = (old.last_seen != Some(today)).then_some(StationFields {
                last_seen: Some(today),
                ..old
            });
            update(Some(Action::Confirm), row, stored_psc)
        }
        Decision::NewBlock => {
            let row = StationFields {
                created: Some(now),
                modified: Some(now),
                block_first: Some(today),
                block_last: Some(today),
                block_count: Some(1),
                ..StationFields::default()
            };
            update(Some(Action::NewBlock), Some(row), psc)
        }
        Decision::Block => {
            let row = StationFields {
                region: old.region.clone(),
                created: old.created,
                modified: Some(now),
                block_first: old.block_first.or(Some(today)),
                block_last: Some(today),
                block_count: Some(
                    old.block_count
                        .unwrap_or(0)
                        .saturating_add(1)
                        .min(MAX_BLOCK_COUNT),
                ),
                ..StationFields::default()
            };
            update(Some(Action::Block), Some(row), psc)
        }
    }
}

/// The row of a *new* or *replace* action: the summary's position, box and
/// counts; `created` and the block history come from `old` (empty for a new
/// station, whose `created` is now).
fn positioned(
    s: &Summary,
    source: Option<ReportSource>,
    now: NaiveDateTime,
    geocoder: &dyn Geocoder,
    old: StationFields,
) -> StationFields {
    StationFields {
        lat: Some(s.lat),
        lon: Some(s.lon),
        max_lat: Some(s.max_lat),
        min_lat: Some(s.min_lat),
        max_lon: Some(s.max_lon),
        min_lon: Some(s.min_lon),
        radius: Some(circle_radius(
            s.lat, s.lon, s.max_lat, s.max_lon, s.min_lat, s.min_lon,
        )),
        region: geocoder.region(s.lat, s.lon),
        samples: Some(s.samples),
        source,
        weight: Some(s.weight),
        created: old.created.or(Some(now)),
        modified: Some(now),
        last_seen: Some(now.date()),
        block_first: old.block_first,
        block_last: old.block_last,
        block_count: old.block_count,
    }
}

/// The *change* action: weighted merge of the stored position and the summary
/// (§3.8.1).
fn merge(
    old: &StationFields,
    s: &Summary,
    chosen: &[&WeightedObs],
    source: Option<ReportSource>,
    now: NaiveDateTime,
    geocoder: &dyn Geocoder,
) -> StationFields {
    let mut lats: Vec<f64> = chosen.iter().map(|o| o.lat).collect();
    let mut lons: Vec<f64> = chosen.iter().map(|o| o.lon).collect();
    for (la, lo) in [
        (old.lat, old.lon),
        (old.max_lat, old.max_lon),
        (old.min_lat, old.min_lon),
    ] {
        if let Some(la) = la {
            lats.push(la);
        }
        if let Some(lo) = lo {
            lons.push(lo);
        }
    }
    let max_lat = lats.iter().copied().fold(f64::MIN, f64::max);
    let min_lat = lats.iter().copied().fold(f64::MAX, f64::min);
    let max_lon = lons.iter().copied().fold(f64::MIN, f64::max);
    let min_lon = lons.iter().copied().fold(f64::MAX, f64::min);
    let positioned = old.lat.is_some() && old.lon.is_some();
    let omega = if positioned {
        old.weight.unwrap_or(0.0).min(OLD_WEIGHT_CAP)
    } else {
        0.0
    };
    let lat = (s.lat * s.weight + old.lat.unwrap_or(0.0) * omega) / (s.weight + omega);
    let lon = (s.lon * s.weight + old.lon.unwrap_or(0.0) * omega) / (s.weight + omega);
    let region = match &old.region {
        Some(r) if !r.is_empty() && geocoder.in_region(lat, lon, r) => Some(r.clone()),
        _ => geocoder.region(lat, lon),
    };
    StationFields {
        lat: Some(lat),
        lon: Some(lon),
        max_lat: Some(max_lat),
        min_lat: Some(min_lat),
        max_lon: Some(max_lon),
        min_lon: Some(min_lon),
        radius: Some(circle_radius(lat, lon, max_lat, max_lon, min_lat, min_lon)),
        region,
        samples: Some((old.samples.unwrap_or(0) + s.samples).min(MAX_SAMPLES)),
        source,
        weight: Some((old.weight.unwrap_or(0.0) + s.weight).min(MAX_WEIGHT)),
        created: old.created,
        modified: Some(now),
        last_seen: Some(now.date()),
        block_first: old.block_first,
        block_last: old.block_last,
        block_count: old.block_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Everywhere;
    impl Geocoder for Everywhere {
        fn region(&self, _lat: f64, _lon: f64) -> Option<String> {
            Some("GB".into())
        }
        fn in_region(&self, _lat: f64, _lon: f64, code: &str) -> bool {
            code == "GB"
        }
        fn any_region(&self, _lat: f64, _lon: f64) -> bool {
            true
        }
        fn region_for_cell(&self, _lat: f64, _lon: f64, _mcc: u16) -> Option<String> {
            Some("GB".into())
        }
        fn valid_mcc(&self, _mcc: i64) -> bool {
            true
        }
    }

    fn r4(x: f64) -> f64 {
        (x * 1e4).round() / 1e4
    }

    fn pos(acc: Option<f64>, speed: Option<f64>) -> ObsPosition {
        ObsPosition {
            lat: 51.5,
            lon: -0.1,
            accuracy: acc,
            speed,
            ..ObsPosition::default()
        }
    }

    fn now() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2024, 1, 12)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
    }

    #[test]
    #[allow(
        clippy::approx_constant,
        reason = "the spec's reference values, rounded to 4 places"
    )]
    fn weight_reference_values() {
        let w = StationType::Wifi;
        for (acc, f) in [
            (10.0, 1.0),
            (20.0, 0.7071),
            (90.0, 0.3333),
            (200.0, 0.2236),
            (200.1, 0.0),
        ] {
            assert_eq!(
                r4(accuracy_factor(w.max_accuracy(), Some(acc))),
                f,
                "accuracy {acc}"
            );
        }
        assert_eq!(
            r4(accuracy_factor(
                StationType::Cell(Radio::Gsm).max_accuracy(),
                Some(1000.0)
            )),
            0.1
        );
        for (age, f) in [
            (2000, 1.0),
            (4000, 0.7071),
            (18000, 0.3333),
            (20000, 0.3162),
            (20001, 0.0),
        ] {
            assert_eq!(r4(age_factor(Some(age))), f, "age {age}");
        }
        for (speed, f) in [
            (5.0, 1.0),
            (10.0, 0.7071),
            (45.0, 0.3333),
            (50.0, 0.3162),
            (50.1, 0.0),
        ] {
            assert_eq!(r4(speed_factor(Some(speed))), f, "speed {speed}");
        }
        for (s, f) in [(-100, 0.4823), (-80, 1.0), (-50, 4.1649), (-10, 123.4568)] {
            assert_eq!(r4(signal_factor(w, Some(s))), f, "wifi {s}");
        }
        assert_eq!(
            r4(signal_factor(StationType::Cell(Radio::Gsm), Some(-51))),
            10.1683
        );
        assert_eq!(
            r4(signal_factor(StationType::Cell(Radio::Wcdma), Some(-25))),
            256.0
        );
        assert_eq!(
            r4(signal_factor(StationType::Cell(Radio::Lte), Some(-140))),
            0.3011
        );
        assert_eq!(
            observation_weight(w, &pos(Some(0.0), Some(0.0)), Some(0), None),
            1.0,
            "zero means unknown"
        );
    }

    #[test]
    fn blocked_predicate() {
        let today = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        let created = |days: i64| {
            Some(
                (today - chrono::Duration::days(days))
                    .and_hms_opt(0, 0, 0)
                    .unwrap(),
            )
        };
        let row = |days, count, last: Option<NaiveDate>| StationFields {
            created: created(days),
            block_count: count,
            block_last: last,
            ..StationFields::default()
        };
        assert!(is_blocked(
            &row(500, Some(1), Some(today - chrono::Duration::days(1))),
            today
        ));
        assert!(!is_blocked(
            &row(500, Some(1), Some(today - chrono::Duration::days(2))),
            today
        ));
        assert!(is_blocked(&row(44, Some(1), None), today));
        assert!(!is_blocked(&row(45, Some(1), None), today));
        assert!(
            is_blocked(&row(75, Some(2), None), today),
            "2.5 rounds half-even to 2"
        );
        assert!(!is_blocked(&row(10, None, None), today));
    }

    #[test]
    fn worked_example_change() {
        let stored = StationFields {
            lat: Some(51.5),
            lon: Some(-0.1),
            weight: Some(3.0),
            samples: Some(2),
            source: Some(ReportSource::Gnss),
            created: Some(now() - chrono::Duration::days(10)),
            modified: Some(now() - chrono::Duration::days(10)),
            last_seen: Some(now().date() - chrono::Duration::days(10)),
            ..StationFields::default()
        };
        let o = |dlon: f64,
                 acc: Option<f64>,
                 age: Option<i64>,
                 speed: Option<f64>,
                 signal: Option<i64>| {
            let p = ObsPosition {
                lat: 51.5,
                lon: -0.1 + dlon,
                accuracy: acc,
                speed,
                ..ObsPosition::default()
            };
            weighted(StationType::Wifi, &p, age, signal, None)
        };
        let obs: Vec<WeightedObs> = [
            o(-0.002, Some(20.0), None, None, Some(-30)),
            o(-0.004, Some(40.0), Some(-8000), None, Some(-60)),
            o(-0.006, Some(10.0), Some(1000), None, Some(-90)),
            o(-0.006, Some(10.0), None, Some(20.0), None),
            o(-0.008, None, Some(40_000), None, None),
            o(-0.008, None, None, Some(50.1), None),
            o(-0.010, Some(200.1), None, None, None),
        ]
        .into_iter()
        .filter(|o| o.weight > 0.0)
        .collect();
        assert_eq!(obs.len(), 4);
        let u = update_station(
            StationType::Wifi,
            Some((&stored, None)),
            &obs,
            now(),
            &Everywhere,
        );
        assert_eq!(u.action, Some(Action::Change));
        let row = u.row.unwrap();
        assert_eq!(((row.lon.unwrap() + 0.1) * 1e7).round() / 1e7, -0.0019971);
        assert!((row.lat.unwrap() - 51.5).abs() < 1e-9, "lat unchanged");
        assert_eq!(row.radius, Some(278));
        assert_eq!(row.samples, Some(6));
        assert_eq!((row.weight.unwrap() * 1e5).round() / 1e5, 16.10707);
        assert_eq!(row.last_seen, Some(now().date()));
        assert_eq!(row.created, stored.created);
    }

    fn obs_at(lat: f64, lon: f64, query: bool) -> WeightedObs {
        WeightedObs {
            lat,
            lon,
            weight: 1.0,
            query,
            psc: None,
        }
    }

    /// Station rows must not depend on how observations were split
    /// into batches or in which order the batches came. Sightings of a
    /// stationary beacon from all around its shop (up to 120 m away, GNSS
    /// noise on top) are applied at once, in batches of 7 in order, in
    /// batches of 50 in reverse, and in shuffled batches of 13: every row is
    /// the same (floats to rounding), and the beacon is never blocked. With
    /// the original's 100 m the single batch blocked it and small batches
    /// did not.
    #[test]
    fn bluetooth_rows_do_not_depend_on_batching_or_order() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        let (lat0, lon0) = (51.5, -0.1);
        let obs: Vec<WeightedObs> = (0..300)
            .map(|_| {
                let r = 120.0 * next().sqrt();
                let a = std::f64::consts::TAU * next();
                let (n, e) = (r * a.cos() + 8.0 * (next() - 0.5), r * a.sin());
                WeightedObs {
                    lat: crate::geo::latitude_add(lat0, lon0, n),
                    lon: crate::geo::longitude_add(lat0, lon0, e),
                    weight: 0.2 + next(),
                    query: false,
                    psc: None,
                }
            })
            .collect();
        let apply = |batches: Vec<Vec<WeightedObs>>| {
            let mut row: Option<StationFields> = None;
            for batch in batches {
                let u = update_station(
                    StationType::Blue,
                    row.as_ref().map(|r| (r, None)),
                    &batch,
                    now(),
                    &Everywhere,
                );
                if let Some(r) = u.row {
                    row = Some(r);
                }
            }
            row.unwrap()
        };
        let chunks = |v: &[WeightedObs], n: usize| -> Vec<Vec<WeightedObs>> {
            v.chunks(n).map(<[WeightedObs]>::to_vec).collect()
        };
        let mut reversed = obs.clone();
        reversed.reverse();
        let mut shuffled = chunks(&obs, 13);
        for i in (1..shuffled.len()).rev() {
            let j = (next() * (i + 1) as f64) as usize;
            shuffled.swap(i, j);
        }
        let rows = [
            apply(vec![obs.clone()]),
            apply(chunks(&obs, 7)),
            apply(chunks(&reversed, 50)),
            apply(shuffled),
        ];
        let close = |a: Option<f64>, b: Option<f64>, tol: f64| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= tol * a.abs().max(1.0),
            (a, b) => a == b,
        };
        let first = &rows[0];
        assert!(first.lat.is_some(), "a stationary beacon is not blocked");
        assert_eq!(first.block_count, None);
        for row in &rows[1..] {
            assert!(close(row.lat, first.lat, 1e-12), "{row:?} {first:?}");
            assert!(close(row.lon, first.lon, 1e-12), "{row:?} {first:?}");
            assert!(close(row.weight, first.weight, 1e-9));
            assert_eq!(
                (row.max_lat, row.min_lat, row.max_lon, row.min_lon),
                (first.max_lat, first.min_lat, first.max_lon, first.min_lon)
            );
            assert!((row.radius.unwrap() - first.radius.unwrap()).abs() <= 1);
            assert_eq!(
                (
                    &row.region,
                    row.samples,
                    row.source,
                    row.created,
                    row.modified,
                    row.last_seen
                ),
                (
                    &first.region,
                    first.samples,
                    first.source,
                    first.created,
                    first.modified,
                    first.last_seen
                )
            );
            assert_eq!(
                (row.block_first, row.block_last, row.block_count),
                (None, None, None)
            );
        }
    }

    #[test]
    fn transitions() {
        let t = StationType::Blue;
        // New station, consistent.
        let u = update_station(t, None, &[obs_at(51.5, -0.1, false)], now(), &Everywhere);
        assert_eq!(u.action, Some(Action::New));
        let row = u.row.unwrap();
        assert_eq!(
            (row.samples, row.radius, row.source, row.block_count),
            (Some(1), Some(0), Some(ReportSource::Gnss), None)
        );
        // New station, spread over more than 500 m: created blocked.
        let u = update_station(
            t,
            None,
            &[obs_at(51.5, -0.1, false), obs_at(51.51, -0.1, false)],
            now(),
            &Everywhere,
        );
        assert_eq!(u.action, Some(Action::NewBlock));
        let nb = u.row.unwrap();
        assert_eq!(
            (nb.lat, nb.block_count, nb.block_first, nb.region),
            (None, Some(1), Some(now().date()), None)
        );
        // A positioned station seen 1 km away: blocked, region kept.
        let stored = StationFields {
            lat: Some(51.5),
            lon: Some(-0.1),
            region: Some("GB".into()),
            block_count: Some(255),
            source: Some(ReportSource::Gnss),
            modified: Some(now() - chrono::Duration::days(3)),
            created: Some(now() - chrono::Duration::days(30_000)),
            ..StationFields::default()
        };
        let u = update_station(
            t,
            Some((&stored, None)),
            &[obs_at(51.51, -0.1, false)],
            now(),
            &Everywhere,
        );
        assert_eq!(u.action, Some(Action::Block));
        let b = u.row.unwrap();
        assert_eq!(
            (b.lat, b.region.as_deref(), b.block_count, b.block_last),
            (None, Some("GB"), Some(255), Some(now().date())),
            "count saturates"
        );
        // Blocked today: nothing happens.
        let u = update_station(
            t,
            Some((&b, None)),
            &[obs_at(51.5, -0.1, false)],
            now(),
            &Everywhere,
        );
        assert_eq!((u.action, u.row, u.observations), (None, None, 1));
        // Query data only confirms a satellite-based station.
        let gnss = StationFields {
            block_count: None,
            ..stored.clone()
        };
        let u = update_station(
            t,
            Some((&gnss, None)),
            &[obs_at(51.5, -0.1, true)],
            now(),
            &Everywhere,
        );
        assert_eq!(u.action, Some(Action::Confirm));
        assert_eq!(u.row.unwrap().last_seen, Some(now().date()));
        // Satellite data replaces a query-based station.
        let q = StationFields {
            source: Some(ReportSource::Query),
            ..gnss.clone()
        };
        let u = update_station(
            t,
            Some((&q, None)),
            &[obs_at(51.5, -0.1, false), obs_at(51.5, -0.1, true)],
            now(),
            &Everywhere,
        );
        assert_eq!(u.action, Some(Action::Replace));
        assert_eq!(
            u.row.unwrap().samples,
            Some(1),
            "only the gnss observation is used"
        );
        // An old position far away is simply replaced.
        let old = StationFields {
            modified: Some(now() - chrono::Duration::days(400)),
            ..gnss
        };
        let u = update_station(
            t,
            Some((&old, None)),
            &[obs_at(52.5, -0.1, false)],
            now(),
            &Everywhere,
        );
        assert_eq!(u.action, Some(Action::Replace));
    }

    #[test]
    fn cell_psc_is_the_last_seen() {
        let t = StationType::Cell(Radio::Lte);
        let o = |psc| WeightedObs {
            lat: 51.5,
            lon: -0.1,
            weight: 1.0,
            query: false,
            psc,
        };
        let u = update_station(
            t,
            None,
            &[o(Some(5)), o(Some(7)), o(None)],
            now(),
            &Everywhere,
        );
        assert_eq!(u.psc, Some(7));
        let stored = StationFields {
            lat: Some(51.5),
            lon: Some(-0.1),
            ..StationFields::default()
        };
        let u = update_station(t, Some((&stored, Some(3))), &[o(None)], now(), &Everywhere);
        assert_eq!(u.psc, Some(3));
    }
}
