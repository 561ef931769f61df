//! Cell areas (pipeline §4.1): the aggregate of every positioned cell that
//! shares (radio, mcc, mnc, lac), used when a locate query knows only the area.

use chrono::NaiveDateTime;

use crate::cell::AreaKey;
use crate::geo::circle_radius;
use crate::geocoder::Geocoder;
use crate::station::{CellArea, CellStation};

/// Computes the area row from its positioned member cells; `None` when there are
/// none (the area row is then deleted). `existing` keeps `created`.
pub fn aggregate_area(
    key: AreaKey,
    cells: &[CellStation],
    existing: Option<&CellArea>,
    now: NaiveDateTime,
    geocoder: &dyn Geocoder,
) -> Option<CellArea> {
    let members: Vec<(&CellStation, f64, f64)> = cells
        .iter()
        .filter_map(|c| Some((c, c.fields.lat?, c.fields.lon?)))
        .collect();
    if members.is_empty() {
        return None;
    }
    let n = members.len() as f64;
    let lat = members.iter().map(|m| m.1).sum::<f64>() / n;
    let lon = members.iter().map(|m| m.2).sum::<f64>() / n;
    let fold = |f: fn(&CellStation) -> Option<f64>, init: f64, pick: fn(f64, f64) -> f64| {
        members.iter().filter_map(|m| f(m.0)).fold(init, pick)
    };
    let max_lat = fold(|c| c.fields.max_lat, f64::MIN, f64::max);
    let min_lat = fold(|c| c.fields.min_lat, f64::MAX, f64::min);
    let max_lon = fold(|c| c.fields.max_lon, f64::MIN, f64::max);
    let min_lon = fold(|c| c.fields.min_lon, f64::MAX, f64::min);
    let radius = if max_lat >= min_lat && max_lon >= min_lon {
        circle_radius(lat, lon, max_lat, max_lon, min_lat, min_lon)
    } else {
        0
    };
    let radii: Vec<f64> = members
        .iter()
        .filter_map(|m| m.0.fields.radius)
        .map(|r| r as f64)
        .collect();
    let avg_cell_radius = (!radii.is_empty())
        .then(|| (radii.iter().sum::<f64>() / radii.len() as f64).round_ties_even() as i64);
    let last_seen = members.iter().filter_map(|m| m.0.fields.last_seen).max();
    Some(CellArea {
        key,
        lat: Some(lat),
        lon: Some(lon),
        radius: Some(radius),
        region: majority_region(
            &members
                .iter()
                .map(|m| m.0.fields.region.clone())
                .collect::<Vec<_>>(),
            lat,
            lon,
            key.mcc,
            geocoder,
        ),
        avg_cell_radius,
        num_cells: Some(members.len() as i64),
        last_seen,
        created: existing.and_then(|a| a.created).or(Some(now)),
        modified: Some(now),
    })
}

/// The members' region: the only one, or the most frequent; on a tie the first of
/// the tied values (NULL first) unless the MCC-aware lookup at the centre says
/// otherwise.
fn majority_region(
    regions: &[Option<String>],
    lat: f64,
    lon: f64,
    mcc: u16,
    geocoder: &dyn Geocoder,
) -> Option<String> {
    let mut counts: Vec<(Option<String>, usize)> = Vec::new();
    for r in regions {
        match counts.iter_mut().find(|(v, _)| v == r) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.clone(), 1)),
        }
    }
    if counts.len() == 1 {
        return counts.pop().and_then(|(v, _)| v);
    }
    let best = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let mut tied: Vec<Option<String>> = counts
        .into_iter()
        .filter(|(_, n)| *n == best)
        .map(|(v, _)| v)
        .collect();
    if tied.len() == 1 {
        return tied.pop().flatten();
    }
    tied.sort();
    let first = tied.into_iter().next().flatten();
    geocoder.region_for_cell(lat, lon, mcc).or(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::CellKey;
    use crate::radio::Radio;
    use crate::station::StationFields;

    struct NoRegions;
    impl Geocoder for NoRegions {
        fn region(&self, _: f64, _: f64) -> Option<String> {
            None
        }
        fn in_region(&self, _: f64, _: f64, _: &str) -> bool {
            false
        }
        fn any_region(&self, _: f64, _: f64) -> bool {
            false
        }
        fn region_for_cell(&self, _: f64, _: f64, _: u16) -> Option<String> {
            None
        }
        fn valid_mcc(&self, _: i64) -> bool {
            true
        }
    }

    fn cell(cid: u64, lat: f64, lon: f64, radius: i64, region: Option<&str>) -> CellStation {
        CellStation {
            key: CellKey {
                radio: Radio::Gsm,
                mcc: 310,
                mnc: 1,
                lac: 1,
                cid,
            },
            psc: None,
            fields: StationFields {
                lat: Some(lat),
                lon: Some(lon),
                max_lat: Some(lat),
                min_lat: Some(lat),
                max_lon: Some(lon),
                min_lon: Some(lon),
                radius: Some(radius),
                region: region.map(String::from),
                ..StationFields::default()
            },
        }
    }

    fn now() -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2024, 1, 12)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
    }

    #[test]
    fn spec_examples() {
        let key = AreaKey {
            radio: Radio::Gsm,
            mcc: 310,
            mnc: 1,
            lac: 1,
        };
        let one = aggregate_area(
            key,
            &[cell(1, 1.0, 2.0, 300, Some("US"))],
            None,
            now(),
            &NoRegions,
        )
        .unwrap();
        assert_eq!(
            (
                one.lat,
                one.lon,
                one.radius,
                one.avg_cell_radius,
                one.num_cells
            ),
            (Some(1.0), Some(2.0), Some(0), Some(300), Some(1))
        );
        let two = aggregate_area(
            key,
            &[
                cell(1, 1.0, 2.0, 200, None),
                cell(2, 1.0, 2.0, 300, Some("NL")),
            ],
            None,
            now(),
            &NoRegions,
        )
        .unwrap();
        assert_eq!(two.avg_cell_radius, Some(250));
        assert_eq!(
            two.region, None,
            "tie, NULL sorts first, MCC lookup finds nothing"
        );
        let pr = aggregate_area(
            key,
            &[
                cell(1, 1.0, 2.0, 1, Some("PR")),
                cell(2, 1.0, 2.0, 1, Some("PR")),
                cell(3, 1.0, 2.0, 1, Some("US")),
            ],
            None,
            now(),
            &NoRegions,
        )
        .unwrap();
        assert_eq!(pr.region.as_deref(), Some("PR"));
        let mut blocked = cell(4, 0.0, 0.0, 1, None);
        blocked.fields.lat = None;
        assert_eq!(
            aggregate_area(key, &[blocked], None, now(), &NoRegions),
            None
        );
    }
}
