//! The radio model: what signal a phone measures from a transmitter at a
//! distance, and whether it detects it at all. Log-distance path loss with
//! log-normal shadowing, `RSSI = P0 − 10·n·log10(d) + N(0, σ)`, and a detection
//! probability that falls smoothly around the receiver's sensitivity, plus a
//! flat share of missed detections (scans that end early, busy channels).

use fastrand::Rng;

use crate::rng::normal;

/// Path loss and detection parameters of one kind of transmitter.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct PathLoss {
    /// Mean received power at 1 m, dBm.
    pub p0: f64,
    /// Path-loss exponent (2 in free space, 2.7–4 in cities).
    pub n: f64,
    /// Standard deviation of the shadowing, dB.
    pub sigma: f64,
    /// Received power detected half of the time, dBm.
    pub sensitivity: f64,
    /// Width of the detection ramp around the sensitivity, dB.
    pub ramp: f64,
    /// Share of transmitters missed whatever their power.
    pub miss: f64,
    /// Beyond this distance the transmitter is never detected (search radius), m.
    pub max_range: f64,
}

/// Wi-Fi on 2.4 GHz, an access point indoors heard from the street.
pub const WIFI_24: PathLoss = PathLoss {
    p0: -38.0,
    n: 2.8,
    sigma: 6.0,
    sensitivity: -92.0,
    ramp: 2.0,
    miss: 0.1,
    max_range: 250.0,
};

/// Wi-Fi on 5 GHz: more loss through walls.
pub const WIFI_5: PathLoss = PathLoss {
    p0: -44.0,
    n: 3.0,
    sigma: 6.0,
    sensitivity: -92.0,
    ramp: 2.0,
    miss: 0.1,
    max_range: 200.0,
};

/// Bluetooth LE beacons (advertised power about −59 dBm at 1 m, behind a shop
/// window), detected up to 30–50 m (half of the time at 30 m).
pub const BLUE: PathLoss = PathLoss {
    p0: -62.0,
    n: 2.3,
    sigma: 4.0,
    sensitivity: -96.0,
    ramp: 2.0,
    miss: 0.2,
    max_range: 120.0,
};

impl PathLoss {
    /// Mean received power at `d` metres (distances under 1 m count as 1 m).
    pub fn mean_rssi(&self, d: f64) -> f64 {
        self.p0 - 10.0 * self.n * d.max(1.0).log10()
    }

    /// Probability of detecting a transmitter received at `rssi` dBm.
    pub fn detection_probability(&self, rssi: f64) -> f64 {
        (1.0 - self.miss) / (1.0 + ((self.sensitivity - rssi) / self.ramp).exp())
    }

    /// One measurement at `d` metres of a transmitter `offset_db` stronger than
    /// typical: the received power if detected. Draws exactly three uniforms
    /// within range (so streams stay aligned whatever the outcome).
    pub fn measure(&self, rng: &mut Rng, d: f64, offset_db: f64) -> Option<f64> {
        if d > self.max_range {
            return None;
        }
        let rssi = self.mean_rssi(d) + offset_db + self.sigma * normal(rng);
        (rng.f64() < self.detection_probability(rssi)).then_some(rssi)
    }
}

/// Cell radio parameters: signal at the edge of a cell's nominal coverage
/// radius, and the range the API accepts for the radio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellRadio {
    /// API name (`gsm`, `wcdma`, `lte`, `nr`).
    pub name: &'static str,
    /// Mean signal at the coverage radius on the antenna's axis, dBm.
    pub edge_dbm: f64,
    /// Weakest signal a phone still lists (as a neighbour), dBm.
    pub floor_dbm: f64,
    /// Strongest and weakest value the API accepts, dBm.
    pub range: (f64, f64),
}

/// Path-loss exponent of macro cells in a city.
pub const CELL_N: f64 = 3.5;
/// Shadowing of cell signals, dB.
pub const CELL_SIGMA: f64 = 6.0;

/// GSM (RSSI).
pub const GSM: CellRadio = CellRadio {
    name: "gsm",
    edge_dbm: -100.0,
    floor_dbm: -108.0,
    range: (-113.0, -51.0),
};
/// WCDMA (RSCP).
pub const WCDMA: CellRadio = CellRadio {
    name: "wcdma",
    edge_dbm: -105.0,
    floor_dbm: -115.0,
    range: (-121.0, -25.0),
};
/// LTE (RSRP).
pub const LTE: CellRadio = CellRadio {
    name: "lte",
    edge_dbm: -112.0,
    floor_dbm: -122.0,
    range: (-140.0, -43.0),
};
/// 5G NR (SS-RSRP).
pub const NR: CellRadio = CellRadio {
    name: "nr",
    edge_dbm: -112.0,
    floor_dbm: -122.0,
    range: (-156.0, -31.0),
};

/// The radios in the order a phone prefers them for its serving cell.
pub const CELL_RADIOS: [CellRadio; 4] = [NR, LTE, WCDMA, GSM];

/// Gain of a sector antenna `off_axis_deg` degrees off its azimuth (3GPP
/// TR 36.814 pattern: 65° beam width, 20 dB front-to-back), dB.
pub fn sector_gain(off_axis_deg: f64) -> f64 {
    -(12.0 * (off_axis_deg / 65.0).powi(2)).min(20.0)
}

/// Mean cell signal at `d` metres and `off_axis_deg` from the antenna's axis,
/// for a cell whose signal on the axis at `radius` metres is `edge_dbm`, with
/// path-loss exponent `n` ([`CELL_N`] by default).
pub fn cell_mean_dbm(edge_dbm: f64, n: f64, radius: f64, d: f64, off_axis_deg: f64) -> f64 {
    edge_dbm + 10.0 * n * (radius / d.max(10.0)).log10() + sector_gain(off_axis_deg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_falls_around_the_sensitivity() {
        let p = |r| WIFI_24.detection_probability(r);
        assert!(p(-60.0) > 0.89 && p(-60.0) <= 0.9);
        assert!((p(-92.0) - 0.45).abs() < 1e-9);
        assert!(p(-100.0) < 0.02);
    }

    #[test]
    fn sector_pattern() {
        assert_eq!(sector_gain(0.0), 0.0);
        assert!((sector_gain(65.0) + 12.0).abs() < 1e-9);
        assert_eq!(sector_gain(180.0), -20.0);
    }
}
