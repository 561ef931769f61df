//! `sim accuracy`: how well the server positions phones in the synthetic world.
//! K true positions on the streets (deterministic from the seed); at each, the
//! phone's scan at the end of the simulation (moved access points at their new
//! place) becomes four `/v1/geolocate` queries — Wi-Fi only, cells only,
//! Bluetooth only, and everything — sent with `"considerIp": false` and
//! `"fallbacks": {"ipf": false}` so GeoIP never answers. Per data type the
//! report gives the share answered, the median/p90/p95 error in metres, and the
//! calibration: the share of answers whose accuracy circle holds the true
//! position (the API promises about 95 %).

use std::io::Write;
use std::sync::Arc;

use reqwest::{Client, Url};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::geo::haversine_m;
use crate::rng::stream;
use crate::scan::Scanner;
use crate::wire::{Fallbacks, Query, blue_entries, cell_entries, wifi_entries};
use crate::world::{MNCS, World};
use crate::{AccuracyArgs, Endpoint, SimError, target};

/// The data types measured, in report order.
pub const KINDS: [&str; 4] = ["wifi", "cell", "blue", "mixed"];

/// A true position and the queries a phone there sends.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// True latitude.
    pub lat: f64,
    /// True longitude.
    pub lon: f64,
    /// The query per data type (`None` when the phone saw nothing of it).
    pub queries: [Option<Query>; 4],
}

/// The probes of a world: `count` street positions, each with its own random
/// stream, so the set does not depend on how many are sent at once.
pub fn probes(world: &World, count: usize) -> Vec<Probe> {
    let scanner = Scanner::new(world);
    let mut place = stream(world.params.seed, "accuracy", 0);
    (0..count)
        .map(|i| {
            let (s, t) = world.street_point(&mut place);
            let xy = world.streets.point(s, t);
            let (lat, lon) = world.plane.to_latlon(xy);
            let mut rng = stream(world.params.seed, "accuracy-scan", i as u64);
            let scan = scanner.scan(&mut rng, xy, f64::INFINITY, i % MNCS.len());
            let ages: Vec<i64> = scan.wifi.iter().map(|_| rng.i64(0..2000)).collect();
            let wifi = wifi_entries(world, &scan.wifi, &ages, false);
            let cells = cell_entries(world, &scan.cells, rng.i64(0..3000), false);
            let blue = blue_entries(world, &scan.blue, rng.i64(0..3000));
            let query = |w: bool, c: bool, b: bool| {
                let q = Query {
                    consider_ip: false,
                    fallbacks: Fallbacks { ipf: false },
                    wifi_access_points: if w { wifi.clone() } else { Vec::new() },
                    cell_towers: if c { cells.clone() } else { Vec::new() },
                    bluetooth_beacons: if b { blue.clone() } else { Vec::new() },
                };
                let empty = q.wifi_access_points.is_empty()
                    && q.cell_towers.is_empty()
                    && q.bluetooth_beacons.is_empty();
                (!empty).then_some(q)
            };
            Probe {
                lat,
                lon,
                queries: [
                    query(true, false, false),
                    query(false, true, false),
                    query(false, false, true),
                    query(true, true, true),
                ],
            }
        })
        .collect()
}

/// How one query ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Nothing of that type was visible: no query sent.
    NotSent,
    /// 200 with a position.
    Answered {
        /// Error, metres.
        error_m: f64,
        /// The returned accuracy, metres.
        accuracy_m: f64,
        /// The `fallback` member, if any.
        fallback: Option<String>,
    },
    /// 404: no position.
    NotFound,
    /// Anything else (other status, transport error, unreadable answer).
    Failed(String),
}

/// Error percentiles, metres.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Errors {
    /// Median.
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
}

/// The figures of one data type.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KindReport {
    /// `wifi`, `cell`, `blue` or `mixed`.
    pub kind: &'static str,
    /// Positions probed.
    pub positions: usize,
    /// Queries sent (the phone saw something of this type).
    pub sent: usize,
    /// Answered with a position.
    pub answered: usize,
    /// `answered / positions`.
    pub answered_share: f64,
    /// `ok` (some answers), `no answer` (nothing sent, or every query 404)
    /// or `failed` (queries sent, none answered, some failed): the figures
    /// below are `null` unless `ok`.
    pub status: &'static str,
    /// Error percentiles of the answers, metres.
    pub error_m: Option<Errors>,
    /// Share of answers with error ≤ returned accuracy (the 95 % circle).
    pub calibration: Option<f64>,
    /// Share of answers with error ≤ 0.617 × the returned accuracy: the 68 %
    /// circle if errors are two-dimensional normal (r68 / r95 =
    /// √(−2 ln 0.32) / √(−2 ln 0.05)), so the shape of the error
    /// distribution is checked too, not only one quantile.
    pub calibration_68: Option<f64>,
    /// Median returned accuracy (circle radius), metres.
    pub accuracy_median_m: Option<f64>,
    /// Answers from a cell area (`"fallback": "lacf"`).
    pub lacf: usize,
    /// Queries that failed (not 200/404).
    pub failed: usize,
}

/// The whole accuracy report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AccuracyReport {
    /// Where the queries went.
    pub url: String,
    /// World seed.
    pub seed: u64,
    /// City side, km.
    pub size_km: f64,
    /// Positions probed.
    pub positions: usize,
    /// One row per data type.
    pub kinds: Vec<KindReport>,
    /// The same queries solved locally by the fix with the transmitters' true
    /// positions (the simulator knows them), kinds named `oracle-wifi` …: what
    /// the fix alone costs, so the rest of the error is the station estimates'.
    /// Empty when not computed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub oracle: Vec<KindReport>,
    /// The first failure, for diagnosis.
    pub first_failure: Option<String>,
}

impl AccuracyReport {
    /// Whether queries were sent and every one failed (no 200, no 404).
    pub fn nothing_succeeded(&self) -> bool {
        let sent: usize = self.kinds.iter().map(|k| k.sent).sum();
        let failed: usize = self.kinds.iter().map(|k| k.failed).sum();
        sent > 0 && failed == sent
    }
}

/// Radius of the 68 % circle over that of the 95 % circle for a circular
/// two-dimensional normal error: √(−2 ln 0.32) / √(−2 ln 0.05).
pub const R68_OF_R95: f64 = 0.6167;

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

/// Summarises the outcomes of one data type.
pub fn summarise(kind: &'static str, outcomes: &[Outcome]) -> KindReport {
    let mut errors = Vec::new();
    let mut accuracies = Vec::new();
    let (mut inside, mut inside_68, mut lacf, mut failed, mut sent) = (0, 0, 0, 0, 0);
    for o in outcomes {
        if !matches!(o, Outcome::NotSent) {
            sent += 1;
        }
        match o {
            Outcome::Answered {
                error_m,
                accuracy_m,
                fallback,
            } => {
                errors.push(*error_m);
                accuracies.push(*accuracy_m);
                inside += usize::from(error_m <= accuracy_m);
                inside_68 += usize::from(*error_m <= R68_OF_R95 * accuracy_m);
                lacf += usize::from(fallback.as_deref() == Some("lacf"));
            }
            Outcome::Failed(_) => failed += 1,
            Outcome::NotSent | Outcome::NotFound => {}
        }
    }
    errors.sort_by(f64::total_cmp);
    accuracies.sort_by(f64::total_cmp);
    let n = errors.len();
    let share = |a: usize, b: usize| {
        if b == 0 {
            0.0
        } else {
            round4(a as f64 / b as f64)
        }
    };
    let ok = n > 0;
    KindReport {
        kind,
        positions: outcomes.len(),
        sent,
        answered: n,
        answered_share: share(n, outcomes.len()),
        status: if ok {
            "ok"
        } else if failed > 0 {
            "failed"
        } else {
            "no answer"
        },
        error_m: ok.then(|| Errors {
            median: round1(percentile(&errors, 0.5)),
            p90: round1(percentile(&errors, 0.9)),
            p95: round1(percentile(&errors, 0.95)),
        }),
        calibration: ok.then(|| share(inside, n)),
        calibration_68: ok.then(|| share(inside_68, n)),
        accuracy_median_m: ok.then(|| round1(percentile(&accuracies, 0.5))),
        lacf,
        failed,
    }
}

impl AccuracyReport {
    /// The report as a table for people.
    pub fn table(&self) -> String {
        let mut out = format!(
            "POST {}: {} positions in the {} km world of seed {}\n\n",
            self.url, self.positions, self.size_km, self.seed
        );
        out.push_str(&format!(
            "{:<6} {:>6} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>6}\n",
            "type",
            "sent",
            "answered",
            "median m",
            "p90 m",
            "p95 m",
            "in circle",
            "in 68 %",
            "median acc",
            "lacf",
            "failed"
        ));
        for k in self.kinds.iter().chain(&self.oracle) {
            let figures = match (
                &k.error_m,
                k.calibration,
                k.calibration_68,
                k.accuracy_median_m,
            ) {
                (Some(e), Some(c), Some(c68), Some(acc)) => format!(
                    "{:>10.1} {:>9.1} {:>9.1} {:>8.1}% {:>8.1}% {:>10.1}",
                    e.median,
                    e.p90,
                    e.p95,
                    c * 100.0,
                    c68 * 100.0,
                    acc
                ),
                _ => format!(
                    "{:>10} {:>9} {:>9} {:>9} {:>9} {:>10}",
                    k.status.to_uppercase(),
                    "-",
                    "-",
                    "-",
                    "-",
                    "-"
                ),
            };
            out.push_str(&format!(
                "{:<6} {:>6} {:>8.1}% {figures} {:>8} {:>6}\n",
                k.kind,
                k.sent,
                k.answered_share * 100.0,
                k.lacf,
                k.failed
            ));
        }
        if let Some(f) = &self.first_failure {
            out.push_str(&format!("\nfirst failure: {f}\n"));
        }
        out
    }

    /// Writes the report to stdout: JSON with `json`, else the table.
    pub fn print(&self, json: bool) -> Result<(), SimError> {
        let text = if json {
            let mut t = serde_json::to_string_pretty(self)?;
            t.push('\n');
            t
        } else {
            self.table()
        };
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(SimError::Output)
    }
}

async fn locate(client: &Client, url: &Url, query: &Query, lat: f64, lon: f64) -> Outcome {
    let json = match serde_json::to_vec(query) {
        Ok(j) => j,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let request = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(json);
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(crate::error_chain(&e)),
    };
    let status = response.status().as_u16();
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(crate::error_chain(&e)),
    };
    match status {
        404 => Outcome::NotFound,
        200 => {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
                return Outcome::Failed("200 with an unreadable body".to_string());
            };
            let (Some(rlat), Some(rlon), Some(acc)) = (
                v["location"]["lat"].as_f64(),
                v["location"]["lng"].as_f64(),
                v["accuracy"].as_f64(),
            ) else {
                return Outcome::Failed(format!("200 without a position: {v}"));
            };
            Outcome::Answered {
                error_m: haversine_m(lat, lon, rlat, rlon),
                accuracy_m: acc,
                fallback: v["fallback"].as_str().map(str::to_string),
            }
        }
        other => Outcome::Failed(format!(
            "status {other}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        )),
    }
}

/// Runs `sim accuracy`.
pub async fn run_accuracy(args: &AccuracyArgs) -> Result<AccuracyReport, SimError> {
    let params = args.world.params()?;
    if !(1..=1_000_000).contains(&args.positions) {
        return Err(SimError::InvalidOption {
            flag: "--positions",
            reason: "must be 1 to 1000000".to_string(),
        });
    }
    if !(1..=1024).contains(&args.concurrency) {
        return Err(SimError::InvalidOption {
            flag: "--concurrency",
            reason: "must be 1 to 1024".to_string(),
        });
    }
    let url = target::endpoint_url(
        &args.url,
        Endpoint::Geolocate,
        args.key.as_deref(),
        args.allow_remote,
    )?;
    let world = World::generate(&params);
    let probes = Arc::new(probes(&world, args.positions));

    let client = crate::target::http_client(args.timeout, args.concurrency)?;
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let mut set = JoinSet::new();
    for (i, probe) in probes.iter().enumerate() {
        for (k, query) in probe.queries.iter().enumerate() {
            let Some(query) = query.clone() else { continue };
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                break;
            };
            let (client, url) = (client.clone(), url.clone());
            let (lat, lon) = (probe.lat, probe.lon);
            set.spawn(async move {
                let o = locate(&client, &url, &query, lat, lon).await;
                drop(slot);
                (i, k, o)
            });
        }
    }
    let mut outcomes = vec![vec![Outcome::NotSent; probes.len()]; KINDS.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, k, o)) = joined {
            outcomes[k][i] = o;
        }
    }
    let first_failure = outcomes.iter().flatten().find_map(|o| match o {
        Outcome::Failed(e) => Some(e.clone()),
        _ => None,
    });
    Ok(AccuracyReport {
        url: url.to_string(),
        seed: params.seed,
        size_km: params.size_km,
        positions: probes.len(),
        kinds: KINDS
            .iter()
            .zip(&outcomes)
            .map(|(kind, o)| summarise(kind, o))
            .collect(),
        oracle: Vec::new(),
        first_failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_outcomes() {
        let answered = |e: f64, a: f64| Outcome::Answered {
            error_m: e,
            accuracy_m: a,
            fallback: None,
        };
        let o = vec![
            answered(10.0, 20.0),
            answered(30.0, 20.0),
            answered(5.0, 50.0),
            Outcome::NotFound,
            Outcome::NotSent,
            Outcome::Failed("x".into()),
        ];
        let r = summarise("wifi", &o);
        assert_eq!(r.positions, 6);
        assert_eq!(r.sent, 5);
        assert_eq!(r.answered, 3);
        assert_eq!(r.answered_share, 0.5);
        let e = r.error_m.unwrap();
        assert_eq!(e.median, 10.0);
        assert_eq!(e.p95, 30.0);
        assert_eq!(r.calibration, Some(0.6667));
        assert_eq!(r.calibration_68, Some(0.6667));
        assert_eq!(r.accuracy_median_m, Some(20.0));
        assert_eq!(r.failed, 1);
        assert_eq!(r.status, "ok");
    }

    #[test]
    fn a_kind_where_every_query_failed_is_marked_failed() {
        let o = vec![Outcome::Failed("x".into()), Outcome::NotSent];
        let r = summarise("cell", &o);
        assert_eq!(r.status, "failed");
        assert_eq!(r.error_m, None);
        assert_eq!(r.calibration, None);
        let report = AccuracyReport {
            kinds: vec![r],
            ..AccuracyReport::default()
        };
        assert!(report.nothing_succeeded());
        let table = report.table();
        assert!(table.contains("FAILED"), "{table}");
        assert!(!table.contains(" 0.0 "), "{table}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.9), 90.0);
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
