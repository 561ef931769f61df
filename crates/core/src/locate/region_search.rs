//! Internal results of the region searcher `/v1/country` (locate §2.7):
//! station regions for WiFi / Bluetooth, MCC regions (plus area scores for
//! ambiguous MCCs) for cells.
//!
//! Sections (§) refer to docs/reference/locate.md.

use chrono::NaiveDateTime;

use crate::cell::AreaKey;
use crate::region::{self, regions_for_mcc};
use crate::station::{BlueStation, CellArea, StationFields, WifiStation};

use super::query::Query;
use super::result::{RegionResult, ResultSource};
use super::score::{area_score, area_usable, station_score, station_usable};

/// Accumulates scores per region code in first-seen order.
#[derive(Default)]
struct Tally(Vec<(&'static str, f64)>);

impl Tally {
    fn add(&mut self, code: &'static str, score: f64) {
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some(entry) => entry.1 += score,
            None => self.0.push((code, score)),
        }
    }

    fn add_existing(&mut self, code: &str, score: f64) {
        if let Some(entry) = self.0.iter_mut().find(|(c, _)| *c == code) {
            entry.1 += score;
        }
    }

    fn into_results(self) -> Vec<RegionResult> {
        self.0
            .into_iter()
            .filter_map(|(code, score)| {
                let info = region::region_for_code(code)?;
                Some(RegionResult {
                    code: info.code,
                    name: info.name,
                    accuracy: info.radius,
                    score,
                    source: ResultSource::Internal,
                    fallback: None,
                })
            })
            .collect()
    }
}

/// Region results of station rows: the scores of usable rows summed per
/// stored `region`, one result per known region. No minimum count and no
/// clustering: one known station suffices.
fn station_regions<'a>(
    rows: impl Iterator<Item = &'a StationFields>,
    now: NaiveDateTime,
) -> Vec<RegionResult> {
    let today = now.date();
    let mut tally = Tally::default();
    for fields in rows {
        if !station_usable(fields, today) {
            continue;
        }
        let Some(code) = fields.region.as_deref().and_then(region::region_for_code) else {
            continue;
        };
        tally.add(code.code, station_score(fields, now));
    }
    tally.into_results()
}

/// Region results of the query's WiFi rows.
pub fn region_search_wifi(
    query: &Query,
    stations: &[WifiStation],
    now: NaiveDateTime,
) -> Vec<RegionResult> {
    station_regions(
        stations
            .iter()
            .filter(|s| query.wifi.iter().any(|l| l.mac == s.mac))
            .map(|s| &s.fields),
        now,
    )
}

/// Region results of the query's Bluetooth rows.
pub fn region_search_blue(
    query: &Query,
    stations: &[BlueStation],
    now: NaiveDateTime,
) -> Vec<RegionResult> {
    station_regions(
        stations
            .iter()
            .filter(|s| query.blue.iter().any(|l| l.mac == s.mac))
            .map(|s| &s.fields),
        now,
    )
}

/// MCCs of the cell lookups followed by the effective area lookups, with the
/// area id to read for each (a complete cell counts twice [quirk]).
fn cell_mccs(query: &Query) -> impl Iterator<Item = (u16, AreaKey)> + '_ {
    query
        .cell
        .iter()
        .map(|c| (c.key.mcc, c.key.area()))
        .chain(query.effective_areas().iter().map(|a| (a.key.mcc, a.key)))
}

/// The `cell_area` ids the region search needs: those of lookups whose MCC
/// maps to two or more regions (read them only if this is not empty).
pub fn ambiguous_area_keys(query: &Query) -> Vec<AreaKey> {
    let mut keys: Vec<AreaKey> = Vec::new();
    for (mcc, area) in cell_mccs(query) {
        if regions_for_mcc(i64::from(mcc)).len() > 1 && !keys.contains(&area) {
            keys.push(area);
        }
    }
    keys
}

/// Region results of the cell and cell-area lookups: each lookup adds
/// 1/|regions| to every region of its MCC; the positioned `areas` rows of
/// [`ambiguous_area_keys`] add their area score to their `region` if that
/// region is already a candidate.
pub fn region_search_cells(
    query: &Query,
    areas: &[CellArea],
    now: NaiveDateTime,
) -> Vec<RegionResult> {
    let mut tally = Tally::default();
    for (mcc, _) in cell_mccs(query) {
        let regions = regions_for_mcc(i64::from(mcc));
        if regions.is_empty() {
            continue;
        }
        let share = 1.0 / regions.len() as f64;
        for code in regions {
            tally.add(code, share);
        }
    }
    let wanted = ambiguous_area_keys(query);
    if !wanted.is_empty() {
        for area in areas {
            if !wanted.contains(&area.key) || !area_usable(area) {
                continue;
            }
            if let Some(code) = area.region.as_deref() {
                tally.add_existing(code, area_score(area, now));
            }
        }
    }
    tally.into_results()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locate::query::{CellQuery, QueryInput, normalize};
    use crate::locate::result::best_region;
    use crate::radio::Radio;
    use chrono::NaiveDate;

    fn now() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2024, 6, 15)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .expect("valid time")
    }

    fn cell(radio: Radio, mcc: i64, cid: Option<i64>) -> CellQuery {
        CellQuery {
            radio: Some(radio),
            mcc: Some(mcc),
            mnc: Some(1),
            lac: Some(2),
            cid,
            ..Default::default()
        }
    }

    fn query(cells: Vec<CellQuery>) -> Query {
        normalize(&QueryInput {
            cell: cells,
            ..Default::default()
        })
    }

    fn scores(results: &[RegionResult]) -> Vec<(&'static str, f64)> {
        results
            .iter()
            .map(|r| (r.code, (r.score * 1e4).round() / 1e4))
            .collect()
    }

    #[test]
    fn mcc_scores() {
        // §2.7: unknown cell MCC 262 → DE 1 + 1.
        let q = query(vec![cell(Radio::Gsm, 262, Some(1))]);
        let r = region_search_cells(&q, &[], now());
        assert_eq!(scores(&r), vec![("DE", 2.0)]);
        // T-R4: area lookup only for MCC 235 → GB 1.0.
        let q = query(vec![cell(Radio::Gsm, 235, None)]);
        assert_eq!(
            scores(&region_search_cells(&q, &[], now())),
            vec![("GB", 1.0)]
        );
        assert!(ambiguous_area_keys(&q).is_empty());
        // MCC 234, no area rows → GB/GG/IM/JE 0.5 each; GB by radius.
        let q = query(vec![cell(Radio::Gsm, 234, Some(1))]);
        let r = region_search_cells(&q, &[], now());
        assert_eq!(
            scores(&r),
            vec![("GB", 0.5), ("GG", 0.5), ("IM", 0.5), ("JE", 0.5)]
        );
        assert_eq!(best_region(&r).map(|r| r.code), Some("GB"));
        // gsm MCC 310 + lte MCC 311: US, GU, VI 2/6 + 2/4 each, an exact tie
        // that the largest radius (US) wins.
        let q = query(vec![
            cell(Radio::Gsm, 310, Some(1)),
            cell(Radio::Lte, 311, Some(1)),
        ]);
        let r = region_search_cells(&q, &[], now());
        let us = r.iter().find(|r| r.code == "US").map(|r| r.score);
        let gu = r.iter().find(|r| r.code == "GU").map(|r| r.score);
        assert_eq!(us, gu);
        assert_eq!(best_region(&r).map(|r| r.code), Some("US"));
    }

    #[test]
    fn ambiguous_areas_add_their_score() {
        // T-R4 second half: MCC 234 with a stored area (num_cells 10, GB),
        // area lookup only → 0.25 each, GB + the area's score.
        let q = query(vec![cell(Radio::Gsm, 234, None)]);
        let keys = ambiguous_area_keys(&q);
        assert_eq!(keys.len(), 1);
        let area = CellArea {
            key: keys[0],
            lat: Some(51.5),
            lon: Some(-0.1),
            radius: Some(10_000),
            region: Some("GB".into()),
            avg_cell_radius: None,
            num_cells: Some(10),
            last_seen: None,
            created: Some(now()),
            modified: Some(now()),
        };
        let score = area_score(&area, now());
        let r = region_search_cells(&q, std::slice::from_ref(&area), now());
        let gb = r.iter().find(|r| r.code == "GB").map(|r| r.score);
        assert_eq!(gb, Some(0.25 + score));
        assert_eq!(best_region(&r).map(|r| r.code), Some("GB"));
        // A region that is not a candidate gets nothing.
        let other = CellArea {
            region: Some("FR".into()),
            ..area
        };
        let r = region_search_cells(&q, &[other], now());
        assert!(r.iter().all(|r| r.code != "FR"));
    }

    #[test]
    fn station_regions_sum_scores() {
        // T-R3: two stored WiFi with region GB.
        let station = |mac: &str| WifiStation {
            mac: crate::mac::Mac::from_hex(mac).expect("mac"),
            fields: StationFields {
                lat: Some(51.5),
                lon: Some(-0.1),
                region: Some("GB".into()),
                samples: Some(1),
                radius: Some(5),
                created: Some(now()),
                modified: Some(now()),
                ..Default::default()
            },
        };
        let q = normalize(&QueryInput {
            wifi: vec![
                crate::locate::query::WifiQuery {
                    mac: "0123456789ab".into(),
                    ..Default::default()
                },
                crate::locate::query::WifiQuery {
                    mac: "0123456789ac".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let rows = [
            station("0123456789ab"),
            station("0123456789ac"),
            station("0123456789ad"),
        ];
        let r = region_search_wifi(&q, &rows, now());
        assert_eq!(scores(&r), vec![("GB", 0.1)]);
        assert_eq!(r[0].name, "United Kingdom");
        assert_eq!(r[0].accuracy, 543_000.0);
        assert!(region_search_blue(&q, &[], now()).is_empty());
    }
}
