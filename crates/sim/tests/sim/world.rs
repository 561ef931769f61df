//! `sim world`: byte identity per seed and the invariants of the generated city.

use std::collections::BTreeSet;

use ichnaea_sim::radio::{BLUE, WIFI_5, WIFI_24};
use ichnaea_sim::rng::stream;
use ichnaea_sim::scan::Scanner;
use ichnaea_sim::world::MIN_MOVE_M;
use ichnaea_sim::{World, WorldParams};

fn small(seed: u64) -> WorldParams {
    WorldParams {
        size_km: 2.0,
        ..WorldParams::berlin(seed)
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = World::generate(&WorldParams::berlin(1)).to_json().unwrap();
    let b = World::generate(&WorldParams::berlin(1)).to_json().unwrap();
    let c = World::generate(&WorldParams::berlin(2)).to_json().unwrap();
    assert_eq!(a, b, "same seed, same bytes");
    assert_ne!(a, c, "another seed, another world");
    let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
    assert_eq!(v["params"]["seed"], 1);
    assert_eq!(
        v["wifi"].as_array().unwrap().len(),
        v["summary"]["wifi"].as_u64().unwrap() as usize
    );
    // Field order is the declared one, not alphabetical.
    let text = String::from_utf8(a).unwrap();
    assert!(
        text.starts_with("{\"params\":{\"seed\":1,\"size_km\":8.0,"),
        "{}",
        &text[..80]
    );
    assert!(text.ends_with("]}\n"));
}

#[test]
fn default_world_has_city_densities() {
    let w = World::generate(&WorldParams::berlin(1));
    let s = w.summary();
    // 8 × 8 km: ~33,000 access points, dense in the centre.
    assert!((25_000..45_000).contains(&s.wifi), "{}", s.wifi);
    let within = |r: f64| w.wifi.iter().filter(|a| a.xy.x.hypot(a.xy.y) < r).count() as f64;
    let centre_density = within(1000.0) / std::f64::consts::PI; // per km²
    let ring = (within(4000.0) - within(3000.0)) / (std::f64::consts::PI * 7.0);
    assert!(
        centre_density > 1000.0 && centre_density < 2500.0,
        "{centre_density}"
    );
    assert!(
        ring < centre_density / 3.0,
        "edge {ring} vs centre {centre_density}"
    );
    // Every radio, all three operators.
    assert!(s.cells.iter().all(|&n| n > 0), "{:?}", s.cells);
    let operators: BTreeSet<u16> = w.cells.iter().map(|c| c.mnc).collect();
    assert_eq!(operators.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(s.blue > 1000, "{}", s.blue);
}

#[test]
fn macs_look_real_and_are_unique() {
    let w = World::generate(&small(3));
    let mut seen = BTreeSet::new();
    let mut ouis = BTreeSet::new();
    for mac in w
        .wifi
        .iter()
        .map(|a| &a.mac)
        .chain(w.blue.iter().map(|b| &b.mac))
    {
        assert_eq!(mac.len(), 17, "{mac}");
        let first = u8::from_str_radix(&mac[..2], 16).unwrap();
        assert_eq!(first & 0b01, 0, "{mac} is multicast");
        assert_eq!(first & 0b10, 0, "{mac} is locally administered");
        assert!(seen.insert(mac.clone()), "{mac} twice");
        ouis.insert(mac[..8].to_string());
    }
    assert!(ouis.len() >= 12, "{} vendors", ouis.len());
    let hidden = w.wifi.iter().filter(|a| !a.submittable()).count();
    assert!(hidden > 0 && hidden < w.wifi.len() / 10, "{hidden}");
}

#[test]
fn cell_identities_fit_their_radio() {
    let w = World::generate(&WorldParams::berlin(1));
    let mut keys = BTreeSet::new();
    for c in &w.cells {
        assert_eq!(c.mcc, 262);
        let (lac_max, cid_max, psc_max) = match c.radio {
            "gsm" => (65_533, 65_535, None),
            "wcdma" => (65_533, (1 << 28) - 1, Some(511)),
            "lte" => (65_533, (1 << 28) - 1, Some(503)),
            "nr" => ((1 << 24) - 2, (1 << 36) - 1, Some(1007)),
            other => panic!("radio {other}"),
        };
        assert!((1..=lac_max).contains(&c.lac), "{c:?}");
        assert!((1..=cid_max).contains(&c.cid), "{c:?}");
        assert_eq!(c.psc.is_some(), psc_max.is_some());
        if let (Some(p), Some(max)) = (c.psc, psc_max) {
            assert!(p <= max);
        }
        assert!((300.0..=3000.0).contains(&c.radius_m), "{c:?}");
        assert!(keys.insert((c.radio, c.mnc, c.lac, c.cid)), "{c:?} twice");
    }
    // nr uses cell ids beyond 32 bits, the case of the 17-byte cellid.
    assert!(
        w.cells
            .iter()
            .any(|c| c.radio == "nr" && c.cid > u64::from(u32::MAX))
    );
}

#[test]
fn moved_access_points_really_move() {
    let w = World::generate(&WorldParams::berlin(1));
    let movers: Vec<_> = w.wifi.iter().filter(|a| a.moved.is_some()).collect();
    let share = movers.len() as f64 / w.wifi.len() as f64;
    assert!((0.019..=0.021).contains(&share), "{share}");
    for ap in &movers {
        let m = ap.moved.as_ref().unwrap();
        let d = ap.xy.dist(m.xy);
        assert!(d >= MIN_MOVE_M, "{} moved only {d} m", ap.mac);
        assert_eq!(m.at_s, 1800.0);
        assert_eq!(ap.position_at(1799.9), ap.xy);
        assert_eq!(ap.position_at(1800.0), m.xy);
        assert!(w.streets.distance_to_street(m.xy) <= 31.0);
    }
    // A phone at the new place sees the access point only after the move.
    let scanner = Scanner::new(&w);
    let mut rng = stream(9, "test", 0);
    let (mut before, mut after) = (0, 0);
    for ap in movers.iter().take(40) {
        let i = w.wifi.iter().position(|a| a.mac == ap.mac).unwrap();
        let at = ap.moved.as_ref().unwrap().xy;
        for _ in 0..5 {
            before += usize::from(scanner.wifi(&mut rng, at, 0.0).iter().any(|s| s.ap == i));
            after += usize::from(scanner.wifi(&mut rng, at, 1800.0).iter().any(|s| s.ap == i));
        }
    }
    assert_eq!(before, 0, "seen at the new place before the move");
    assert!(
        after > 100,
        "seen {after} of 200 times at the new place after the move"
    );
}

#[test]
fn rssi_falls_with_distance() {
    for model in [WIFI_24, WIFI_5, BLUE] {
        let mut last = f64::INFINITY;
        for d in [1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 120.0] {
            let r = model.mean_rssi(d);
            assert!(r < last || d == 1.0, "{model:?} at {d} m");
            last = r;
        }
    }
    // With shadowing: the mean measured signal of detected access points falls
    // from one 20 m distance band to the next.
    let w = World::generate(&small(4));
    let scanner = Scanner::new(&w);
    let mut rng = stream(4, "test", 0);
    let mut bands = [(0.0f64, 0u32); 5];
    for _ in 0..400 {
        let (s, t) = w.street_point(&mut rng);
        for seen in scanner.wifi(&mut rng, w.streets.point(s, t), 0.0) {
            let band = (seen.distance / 20.0) as usize;
            if band < bands.len() {
                bands[band].0 += f64::from(seen.signal);
                bands[band].1 += 1;
            }
        }
    }
    let means: Vec<f64> = bands.iter().map(|(sum, n)| sum / f64::from(*n)).collect();
    assert!(bands.iter().all(|b| b.1 > 50), "{bands:?}");
    assert!(means.windows(2).all(|m| m[1] < m[0]), "{means:?}");
    // Detections thin out with distance too.
    assert!(bands[4].1 < bands[1].1, "{bands:?}");
}
