//! Which stored rows locate may use (locate §2.2) and the trust score of
//! stations and cell areas at query time (§2.3).
//!
//! Sections (§) refer to docs/reference/locate.md.

use chrono::{NaiveDate, NaiveDateTime};

use crate::station::{CellArea, StationFields};

use super::TEMPORARY_BLOCKLIST_DAYS;

/// Whether a station row is blocked on `today` (§2.2): blocked today or
/// yesterday, or blocked at least once per 30 days of its life
/// (`block_count ≥ round_half_even(days since created / 30)`).
pub fn station_blocked(station: &StationFields, today: NaiveDate) -> bool {
    if let Some(last) = station.block_last
        && (today - last).num_days() < TEMPORARY_BLOCKLIST_DAYS
    {
        return true;
    }
    if let (Some(created), Some(count)) = (station.created, station.block_count)
        && count > 0
    {
        let days = (today - created.date()).num_days().abs() as f64;
        let threshold = (days / 30.0).round_ties_even();
        if f64::from(count) >= threshold {
            return true;
        }
    }
    false
}

/// Whether a station row may be used for locating: it has a position and is
/// not blocked (§2.2).
pub fn station_usable(station: &StationFields, today: NaiveDate) -> bool {
    station.lat.is_some() && station.lon.is_some() && !station_blocked(station, today)
}

/// Whether a cell-area row may be used: it has a position (areas are never
/// blocked).
pub fn area_usable(area: &CellArea) -> bool {
    area.lat.is_some() && area.lon.is_some()
}

/// Whole days of a time difference, floored like Python's `timedelta.days`.
fn floor_days(later: NaiveDateTime, earlier: NaiveDateTime) -> i64 {
    (later - earlier).num_seconds().div_euclid(86_400)
}

/// The common part of both scores: age weight × collection weight.
fn age_and_collection(
    now: NaiveDateTime,
    modified: NaiveDateTime,
    last_seen: Option<NaiveDate>,
    first: NaiveDate,
) -> f64 {
    let months = floor_days(now, modified).max(0) / 30;
    let age_weight = 1.0 / ((months + 1) as f64).sqrt();
    let mut last = modified.date();
    if let Some(seen) = last_seen {
        last = last.max(seen);
    }
    let span = (last - first).num_days().max(1);
    let collection_weight = (span as f64 / 10.0).min(1.0);
    age_weight * collection_weight
}

/// `samples`, or 1 when the network never moved (radius 0/NULL) [§2.3].
fn effective_samples(samples: Option<i64>, radius: Option<i64>) -> i64 {
    let samples = samples.unwrap_or(0);
    if samples > 1 && radius.unwrap_or(0) == 0 {
        1
    } else {
        samples
    }
}

/// Score of a station (WiFi, Bluetooth or cell) at `now` (§2.3). Rows missing
/// `modified` use `created`, then `now`.
pub fn station_score(station: &StationFields, now: NaiveDateTime) -> f64 {
    let modified = station.modified.or(station.created).unwrap_or(now);
    let created = station.created.unwrap_or(modified).date();
    let first = match station.block_last {
        Some(block) => created.max(block),
        None => created,
    };
    let samples = effective_samples(station.samples, station.radius).max(1) as f64;
    // Python's math.log(x, 2) is ln(x) / ln(2), which differs from log2 in the
    // last bit for some x.
    let sample_weight = (samples.ln() / 2f64.ln()).clamp(0.5, 10.0);
    age_and_collection(now, modified, station.last_seen, first) * sample_weight
}

/// Score of a cell area at `now` (§2.3).
pub fn area_score(area: &CellArea, now: NaiveDateTime) -> f64 {
    let modified = area.modified.or(area.created).unwrap_or(now);
    let created = area.created.unwrap_or(modified).date();
    let cells = effective_samples(area.num_cells, area.radius).max(1) as f64;
    let sample_weight = cells.sqrt().min(10.0);
    age_and_collection(now, modified, area.last_seen, created) * sample_weight
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::AreaKey;
    use crate::radio::Radio;
    use chrono::{Duration, NaiveDate};

    fn now() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2024, 6, 15)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .expect("valid time")
    }

    fn station(created_days: i64, modified_days: i64, samples: i64, radius: i64) -> StationFields {
        StationFields {
            lat: Some(1.0),
            lon: Some(1.0),
            created: Some(now() - Duration::days(created_days)),
            modified: Some(now() - Duration::days(modified_days)),
            samples: Some(samples),
            radius: Some(radius),
            ..Default::default()
        }
    }

    fn r2(x: f64) -> f64 {
        (x * 100.0).round() / 100.0
    }

    #[test]
    fn spec_reference_scores() {
        let s = |c, m, samples, radius| r2(station_score(&station(c, m, samples, radius), now()));
        assert_eq!(s(0, 0, 1, 0), 0.05);
        assert_eq!(s(1, 0, 2, 10), 0.10);
        assert_eq!(s(5, 0, 2, 10), 0.50);
        assert_eq!(s(10, 0, 2, 10), 1.00);
        assert_eq!(s(10, 0, 64, 10), 6.00);
        assert_eq!(s(10, 0, 1024, 10), 10.00);
        assert_eq!(s(10, 0, 1024, 0), 0.50);
        assert_eq!(s(70, 40, 1024, 10), 7.07);
        assert_eq!(s(190, 180, 1024, 10), 3.78);
        assert_eq!(s(190, 180, 64, 10), 2.27);
        let mut blocked = station(70, 60, 64, 10);
        blocked.block_last = Some((now() - Duration::days(65)).date());
        assert_eq!(r2(station_score(&blocked, now())), 1.73);
        blocked.last_seen = Some((now() - Duration::days(58)).date());
        assert_eq!(r2(station_score(&blocked, now())), 2.42);
    }

    #[test]
    fn area_reference_scores() {
        let area = |cells, radius| CellArea {
            key: AreaKey {
                radio: Radio::Gsm,
                mcc: 234,
                mnc: 1,
                lac: 1,
            },
            lat: Some(1.0),
            lon: Some(1.0),
            radius: Some(radius),
            region: None,
            avg_cell_radius: None,
            num_cells: Some(cells),
            last_seen: None,
            created: Some(now()),
            modified: Some(now()),
        };
        assert_eq!(r2(area_score(&area(4, 10), now())), 0.20);
        assert_eq!(r2(area_score(&area(100, 0), now())), 0.10);
        assert!(area_usable(&area(1, 1)));
    }

    #[test]
    fn blocking() {
        let today = now().date();
        let mut s = station(120, 0, 1, 0);
        assert!(station_usable(&s, today));
        // T-W10: blocked yesterday.
        s.block_last = Some(today - Duration::days(1));
        assert!(!station_usable(&s, today));
        s.block_last = Some(today - Duration::days(2));
        assert!(station_usable(&s, today));
        // T-W11: 4 ≥ round(120/30) blocks, 3 does not.
        s.block_last = Some(today - Duration::days(7));
        s.block_count = Some(4);
        assert!(station_blocked(&s, today));
        s.block_count = Some(3);
        assert!(!station_blocked(&s, today));
        // Half-even rounding: 15 days → 0, 45 → 2, 75 → 2, 105 → 4.
        for (days, count, blocked) in [
            (15, 1, true),
            (45, 1, false),
            (45, 2, true),
            (75, 1, false),
            (75, 2, true),
            (105, 3, false),
            (105, 4, true),
        ] {
            let s = StationFields {
                block_count: Some(count),
                ..station(days, 0, 1, 0)
            };
            assert_eq!(station_blocked(&s, today), blocked, "{days} days, {count}");
        }
        let s = StationFields {
            block_count: Some(0),
            ..station(0, 0, 1, 0)
        };
        assert!(!station_blocked(&s, today));
        let no_pos = StationFields {
            lat: None,
            ..station(0, 0, 1, 0)
        };
        assert!(!station_usable(&no_pos, today));
    }
}
