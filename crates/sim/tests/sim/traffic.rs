//! `sim traffic`: byte-identical uploads per seed, tracks on the streets, GNSS
//! noise consistent with the reported accuracy, and bodies the server accepts.

use axum::http::HeaderMap;
use ichnaea_sim::geo::haversine_m;
use ichnaea_sim::track::{BATCH, Traffic};
use ichnaea_sim::traffic::upload_json;
use ichnaea_sim::{World, WorldParams};
use ichnaea_web::api::body::{BodyLimits, Decoded, decode};
use ichnaea_web::api::convert::{SubmitVersion, convert};

const START: i64 = 1_760_000_000_000;

fn world(seed: u64) -> World {
    World::generate(&WorldParams {
        size_km: 2.0,
        move_at_s: 300.0,
        move_share: 0.05,
        ..WorldParams::berlin(seed)
    })
}

fn bodies(w: &World, stumblers: usize, reports: u64) -> Vec<Vec<u8>> {
    Traffic::new(w, stumblers, reports, START)
        .map(|b| upload_json(&b).unwrap())
        .collect()
}

#[test]
fn same_seed_same_reports() {
    let (a, b, c) = (world(1), world(1), world(2));
    let x = bodies(&a, 6, 700);
    assert_eq!(x, bodies(&b, 6, 700), "same seed, same bytes");
    assert_ne!(x, bodies(&c, 6, 700), "another seed, other reports");
    let reports: usize = x
        .iter()
        .map(|body| {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            v["items"].as_array().unwrap().len()
        })
        .sum();
    assert_eq!(reports, 700);
}

#[test]
fn uploads_are_client_like_batches_in_time_order() {
    let w = world(5);
    let batches: Vec<_> = Traffic::new(&w, 4, 1000, START).collect();
    let total: usize = batches.iter().map(|b| b.items.len()).sum();
    assert_eq!(total, 1000);
    // Full batches are 50–100 reports; only the final flush may be smaller.
    let full = batches.len() - 4.min(batches.len());
    for b in &batches[..full] {
        assert!(
            (BATCH.0..=BATCH.1).contains(&b.items.len()),
            "{}",
            b.items.len()
        );
    }
    for b in &batches {
        // One stumbler per upload, its reports in time order, every few seconds.
        assert!(b.truth.windows(2).all(|p| p[0].stumbler == p[1].stumbler));
        for p in b.items.windows(2) {
            let dt = p[1].timestamp - p[0].timestamp;
            assert!((2000..=6000).contains(&dt), "{dt} ms between reports");
        }
        for (item, truth) in b.items.iter().zip(&b.truth) {
            assert_eq!(item.timestamp, START + (truth.t_s * 1000.0).round() as i64);
        }
    }
}

#[test]
fn tracks_stay_on_the_streets() {
    let w = world(6);
    let mut points = 0;
    for batch in Traffic::new(&w, 8, 2000, START) {
        for p in &batch.truth {
            let (a, b) = w.streets.segments[p.segment];
            let d = ichnaea_sim::streets::point_segment_distance(
                p.xy,
                w.streets.nodes[a],
                w.streets.nodes[b],
            );
            assert!(d < 1e-6, "{d} m off its segment");
            assert!(w.streets.distance_to_street(p.xy) < 1e-6);
            points += 1;
        }
    }
    assert_eq!(points, 2000);
}

#[test]
fn gnss_error_matches_the_reported_accuracy() {
    let w = world(7);
    let (mut inside, mut n) = (0, 0);
    for batch in Traffic::new(&w, 8, 3000, START) {
        for (item, truth) in batch.items.iter().zip(&batch.truth) {
            let (lat, lon) = w.plane.to_latlon(truth.xy);
            let err = haversine_m(lat, lon, item.position.latitude, item.position.longitude);
            assert!((3.0..=15.0).contains(&item.position.accuracy));
            inside += usize::from(err <= item.position.accuracy);
            n += 1;
        }
    }
    // Android's accuracy is a 68 % radius.
    let share = inside as f64 / n as f64;
    assert!((0.64..=0.72).contains(&share), "{share}");
}

#[test]
fn reports_after_the_move_see_moved_access_points_elsewhere() {
    let w = world(8);
    let movers: Vec<usize> = (0..w.wifi.len())
        .filter(|&i| w.wifi[i].moved.is_some())
        .collect();
    assert!(!movers.is_empty());
    let (mut near_old_after, mut near_new_after) = (0, 0);
    for batch in Traffic::new(&w, 10, 4000, START) {
        for (item, truth) in batch.items.iter().zip(&batch.truth) {
            for e in &item.wifi_access_points {
                let Some(&i) = movers.iter().find(|&&i| w.wifi[i].mac == e.mac_address) else {
                    continue;
                };
                let ap = &w.wifi[i];
                let m = ap.moved.as_ref().unwrap();
                let (d_old, d_new) = (truth.xy.dist(ap.xy), truth.xy.dist(m.xy));
                if truth.t_s >= m.at_s {
                    assert!(d_new < 300.0, "seen {d_new} m from its new place");
                    near_new_after += 1;
                    near_old_after += usize::from(d_old < 300.0 && d_new >= 300.0);
                } else {
                    assert!(d_old < 300.0, "seen {d_old} m from its old place");
                }
            }
        }
    }
    assert_eq!(near_old_after, 0);
    assert!(near_new_after > 0);
}

#[test]
fn the_server_accepts_every_report() {
    let w = world(9);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert("content-encoding", "gzip".parse().unwrap());
    let (mut wifi, mut cells, mut nr) = (0, 0, 0);
    for batch in Traffic::new(&w, 4, 400, START) {
        let json = upload_json(&batch).unwrap();
        let gz = ichnaea_sim::bodies::gzip_bytes(&json).unwrap();
        let Ok(Decoded::Json(value)) = decode(&headers, &gz, BodyLimits::default()) else {
            panic!("refused");
        };
        let converted = convert(&value, SubmitVersion::V2, START).unwrap();
        assert_eq!(converted.len(), batch.items.len());
        for (r, item) in converted.iter().zip(&batch.items) {
            assert_eq!(r.report["timestamp"], item.timestamp);
            wifi += r.report["wifiAccessPoints"].as_array().unwrap().len();
            let towers = r.report["cellTowers"].as_array().unwrap();
            cells += towers.len();
            nr += towers.iter().filter(|t| t["radioType"] == "nr").count();
        }
    }
    assert!(wifi > 400 * 10, "{wifi} Wi-Fi entries in 400 reports");
    assert!(cells >= 400, "{cells} cells");
    assert!(nr > 0);
}
