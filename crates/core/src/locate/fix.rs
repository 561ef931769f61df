//! The fix of the calibrated locate model: a robust, uncertainty-weighted
//! position from anchors (known stations with the signal the phone measured),
//! and the one-axis standard deviation of its error, from which
//! [`super::calibrated`] draws a circle of any confidence.
//!
//! Each anchor weighs `exp((signal − strongest) / τ) / (σ² + ρ²)`: the
//! strongest networks are the nearest ones whatever the path-loss exponent
//! (only signal *differences* enter, so no radio model is assumed), and a
//! station whose position is uncertain (σ) weighs less. Outliers (a moved
//! station not yet blocked, a wrong cell) are down-weighted by a Cauchy
//! iteration and dropped beyond a gate. Several kinds fuse in one solve: their
//! weights already carry their scales (metres for Wi-Fi, kilometres for cells).
//!
//! The error estimate combines the weighted spread of the anchors around the
//! fix (how far the phone is from what it hears) and the anchors' own
//! uncertainty, each divided by the effective number of independent anchors.

use crate::geo::distance;

/// What an anchor is, for its scales.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnchorKind {
    /// Wi-Fi access point.
    Wifi,
    /// Bluetooth beacon.
    Blue,
    /// Cell.
    Cell,
}

impl AnchorKind {
    /// τ: signal difference (dB) over which an anchor's weight falls by e.
    fn tau_db(self) -> f64 {
        match self {
            AnchorKind::Wifi | AnchorKind::Blue => 6.0,
            AnchorKind::Cell => 8.0,
        }
    }

    /// ρ: a typical distance from a phone to a station it hears, metres:
    /// the floor of the weight's denominator.
    pub fn reach_m(self) -> f64 {
        match self {
            AnchorKind::Wifi => 30.0,
            AnchorKind::Blue => 10.0,
            AnchorKind::Cell => 500.0,
        }
    }
}

/// A known station heard by the phone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Anchor {
    /// Kind.
    pub kind: AnchorKind,
    /// Estimated latitude of the station.
    pub lat: f64,
    /// Estimated longitude.
    pub lon: f64,
    /// One-axis standard deviation of the station's position, metres.
    pub sigma_m: f64,
    /// Signal the phone measured, dBm (`None`: unknown).
    pub signal: Option<f64>,
    /// Trust in the station (its score, age of the observation), 0–1+.
    pub trust: f64,
}

/// A solved position.
#[derive(Clone, Debug, PartialEq)]
pub struct Fix {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// One-axis standard deviation of the position error, metres (before
    /// the per-kind calibration).
    pub sigma_m: f64,
    /// Indices of the anchors that entered the fix (outliers left out).
    pub used: Vec<usize>,
}

/// Iterations of the Cauchy reweighting.
const ITERATIONS: usize = 6;

/// Solves the position of a phone from its anchors; `None` without anchors.
pub fn solve(anchors: &[Anchor]) -> Option<Fix> {
    if anchors.is_empty() {
        return None;
    }
    // Strongest signal per kind: weights compare signals within a kind only.
    let strongest = |kind: AnchorKind| {
        anchors
            .iter()
            .filter(|a| a.kind == kind)
            .filter_map(|a| a.signal)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let top = [
        strongest(AnchorKind::Wifi),
        strongest(AnchorKind::Blue),
        strongest(AnchorKind::Cell),
    ];
    let base: Vec<f64> = anchors
        .iter()
        .map(|a| {
            let best = top[a.kind as usize];
            let s = match a.signal {
                Some(s) if best.is_finite() => ((s - best) / a.kind.tau_db()).max(-20.0).exp(),
                _ => 0.3,
            };
            let r = a.kind.reach_m();
            a.trust.max(1e-3) * s / (a.sigma_m.powi(2) + r * r)
        })
        .collect();

    // Local plane around the best anchor (metres).
    let lat0 = anchors[0].lat;
    let k_lon = lat0.to_radians().cos() * 111_320.0;
    let k_lat = 110_574.0;
    let xy: Vec<(f64, f64)> = anchors
        .iter()
        .map(|a| ((a.lon - anchors[0].lon) * k_lon, (a.lat - lat0) * k_lat))
        .collect();

    let mean = |w: &[f64]| {
        let total: f64 = w.iter().sum();
        let x = xy.iter().zip(w).map(|(p, w)| p.0 * w).sum::<f64>() / total;
        let y = xy.iter().zip(w).map(|(p, w)| p.1 * w).sum::<f64>() / total;
        (x, y)
    };
    // Start from the weighted median-like point: the weighted mean of the
    // anchors closest in weight to the strongest ones.
    let mut w = base.clone();
    let mut at = mean(&w);
    for _ in 0..ITERATIONS {
        // Cauchy scale: the anchor's own uncertainty and reach, at least.
        for (i, a) in anchors.iter().enumerate() {
            let d = (xy[i].0 - at.0).hypot(xy[i].1 - at.1);
            let c = 2.0 * (a.sigma_m.hypot(a.kind.reach_m()));
            w[i] = base[i] / (1.0 + (d / c).powi(2));
        }
        at = mean(&w);
    }
    // Gate: anchors far beyond their scale are outliers.
    let used: Vec<usize> = (0..anchors.len())
        .filter(|&i| {
            let a = &anchors[i];
            let d = (xy[i].0 - at.0).hypot(xy[i].1 - at.1);
            d <= 4.0 * a.sigma_m.hypot(a.kind.reach_m()) * 2.0
        })
        .collect();
    let used = if used.is_empty() {
        (0..anchors.len()).collect()
    } else {
        used
    };
    let wu: Vec<f64> = (0..anchors.len())
        .map(|i| if used.contains(&i) { w[i] } else { 0.0 })
        .collect();
    at = mean(&wu);

    let total: f64 = wu.iter().sum();
    let total2: f64 = wu.iter().map(|w| w * w).sum();
    let n_eff = if total2 > 0.0 {
        (total * total / total2).max(1.0)
    } else {
        1.0
    };
    let (mut spread, mut own) = (0.0, 0.0);
    for &i in &used {
        let a = &anchors[i];
        let d2 = (xy[i].0 - at.0).powi(2) + (xy[i].1 - at.1).powi(2);
        spread += wu[i] * d2 / 2.0;
        let r = a.kind.reach_m();
        own += wu[i] * (a.sigma_m.powi(2) + r * r / 2.0);
    }
    spread /= total;
    own /= total;
    // Averaging n_eff anchors shrinks their independent errors, not all:
    // neighbouring stations share the streets they were learnt from, so
    // only the square root of the effective count is credited.
    let sigma = ((spread + own) / n_eff.sqrt()).sqrt();
    let lat = lat0 + at.1 / k_lat;
    let lon = anchors[0].lon + at.0 / k_lon;
    Some(Fix {
        lat,
        lon,
        sigma_m: sigma,
        used,
    })
}

/// Distance in metres between a fix and a point (for tests and reports).
pub fn fix_distance(fix: &Fix, lat: f64, lon: f64) -> f64 {
    distance(fix.lat, fix.lon, lat, lon)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{latitude_add, longitude_add};

    const LAT: f64 = 52.52;
    const LON: f64 = 13.405;

    fn at(east: f64, north: f64) -> (f64, f64) {
        (latitude_add(LAT, LON, north), longitude_add(LAT, LON, east))
    }

    fn wifi(east: f64, north: f64, signal: f64) -> Anchor {
        let (lat, lon) = at(east, north);
        Anchor {
            kind: AnchorKind::Wifi,
            lat,
            lon,
            sigma_m: 15.0,
            signal: Some(signal),
            trust: 1.0,
        }
    }

    #[test]
    fn the_strongest_networks_pull_the_fix() {
        // Phone at the origin: a strong network 10 m east, weak ones 80 m
        // west. The plain mean would be 40 m west of the phone.
        let anchors = [
            wifi(10.0, 0.0, -50.0),
            wifi(-80.0, 5.0, -80.0),
            wifi(-80.0, -5.0, -80.0),
            wifi(-85.0, 0.0, -82.0),
        ];
        let fix = solve(&anchors).unwrap();
        let (lat, lon) = at(0.0, 0.0);
        assert!(fix_distance(&fix, lat, lon) < 15.0, "{fix:?}");
    }

    #[test]
    fn one_far_outlier_is_left_out() {
        // Five networks around the phone and one (moved, not yet blocked)
        // 3 km away with a good signal.
        let mut anchors = vec![
            wifi(20.0, 0.0, -60.0),
            wifi(-20.0, 0.0, -60.0),
            wifi(0.0, 20.0, -62.0),
            wifi(0.0, -20.0, -62.0),
            wifi(5.0, 5.0, -58.0),
        ];
        anchors.push(wifi(3000.0, 0.0, -58.0));
        let fix = solve(&anchors).unwrap();
        let (lat, lon) = at(0.0, 0.0);
        assert!(fix_distance(&fix, lat, lon) < 10.0, "{fix:?}");
        assert!(!fix.used.contains(&5), "{:?}", fix.used);
        assert!(fix.sigma_m < 40.0, "{fix:?}");
    }

    #[test]
    fn uncertainty_grows_with_spread_and_station_doubt() {
        let tight = solve(&[wifi(10.0, 0.0, -60.0), wifi(-10.0, 0.0, -60.0)]).unwrap();
        let wide = solve(&[wifi(100.0, 0.0, -60.0), wifi(-100.0, 0.0, -60.0)]).unwrap();
        assert!(wide.sigma_m > 2.0 * tight.sigma_m, "{tight:?} {wide:?}");
        let mut doubtful = [wifi(10.0, 0.0, -60.0), wifi(-10.0, 0.0, -60.0)];
        doubtful[0].sigma_m = 150.0;
        doubtful[1].sigma_m = 150.0;
        let doubtful = solve(&doubtful).unwrap();
        assert!(doubtful.sigma_m > 3.0 * tight.sigma_m, "{doubtful:?}");
    }

    #[test]
    fn cells_and_wifi_fuse_with_wifi_dominating() {
        let (clat, clon) = at(1500.0, 0.0);
        let cell = Anchor {
            kind: AnchorKind::Cell,
            lat: clat,
            lon: clon,
            sigma_m: 800.0,
            signal: Some(-90.0),
            trust: 1.0,
        };
        let fix = solve(&[cell, wifi(10.0, 0.0, -60.0), wifi(-10.0, 0.0, -60.0)]).unwrap();
        let (lat, lon) = at(0.0, 0.0);
        assert!(fix_distance(&fix, lat, lon) < 10.0, "{fix:?}");
    }
}
