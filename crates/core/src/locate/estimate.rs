//! The station estimator of the calibrated locate model: where a transmitter
//! is and how uncertain that is, learnt incrementally from the observations
//! (GNSS position, its accuracy, the signal measured, the scan's age).
//!
//! The classic station position is the mean of where a station was observed
//! with weights that hardly depend on the signal (×6 between −50 and
//! −90 dBm), so an access point is learnt where stumblers passed most. Here an
//! observation weighs `exp((signal + 50) / τ)` (τ = 6 dB: the weight of a
//! received power is about the inverse square of the distance for path-loss
//! exponents near 3, and only signal differences matter, so no radio model is
//! assumed) divided by the GNSS error variance, times the age factor. The
//! state is the weighted mean, the weighted scatter about it and the weight
//! sums — combined exactly across batches (Chan et al.'s parallel variance),
//! so the result does not depend on how observations were split into batches.
//!
//! State per station: [`Estimate::BYTES`] = 44 bytes, stored in the added
//! `estimate` column next to the original's columns.

/// τ of the signal weight, dB.
const TAU_DB: f64 = 6.0;
/// Reference signal of the weight, dBm (weight 1).
const REFERENCE_DBM: f64 = -50.0;

/// The fixed-size state of one station.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Σ w.
    pub w: f64,
    /// Σ w², for the effective number of observations.
    pub w2: f64,
    /// Weighted mean latitude.
    pub lat: f64,
    /// Weighted mean longitude.
    pub lon: f64,
    /// Σ w·d² about the mean, m² (d: distance of an observation).
    pub m2: f64,
    /// Observations merged (saturating).
    pub n: u32,
}

/// One observation as the estimator sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EstimateObs {
    /// Report latitude.
    pub lat: f64,
    /// Report longitude.
    pub lon: f64,
    /// GNSS accuracy, m (None: unknown).
    pub accuracy: Option<f64>,
    /// Signal, dBm (None: unknown).
    pub signal: Option<f64>,
    /// Age of the sighting relative to the fix, ms.
    pub age_ms: Option<i64>,
}

/// Pseudo-observations of the prior spread in [`Estimate::sigma_m`].
const PRIOR_WEIGHT: f64 = 3.0;

/// Metres per degree of latitude (local plane; errors of 0.3 % are harmless
/// for a variance).
const M_PER_DEG: f64 = 111_195.0;

fn plane_d2(lat0: f64, lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let dy = (lat1 - lat2) * M_PER_DEG;
    let dx = (lon1 - lon2) * M_PER_DEG * lat0.to_radians().cos();
    dx * dx + dy * dy
}

impl Estimate {
    /// Bytes of [`Estimate::to_bytes`].
    pub const BYTES: usize = 44;

    /// The weight of one observation; 0 for unusable ones.
    pub fn weight(o: &EstimateObs, default_signal: f64) -> f64 {
        let s = o.signal.unwrap_or(default_signal).clamp(-150.0, 0.0);
        let signal = ((s - REFERENCE_DBM) / TAU_DB).clamp(-30.0, 10.0).exp();
        let acc = o.accuracy.map_or(10.0, |a| a.abs().max(1.0));
        let gnss = 100.0 / (acc * acc + 25.0);
        let age = o
            .age_ms
            .map_or(2000.0, |a| (a.unsigned_abs() as f64).max(2000.0));
        let age = (2000.0 / age).sqrt();
        signal * gnss * age
    }

    /// The estimate of a group of observations; `None` when none weighs.
    pub fn of(obs: &[EstimateObs], default_signal: f64) -> Option<Estimate> {
        let mut acc: Option<Estimate> = None;
        for o in obs {
            let w = Estimate::weight(o, default_signal);
            if !(w > 0.0 && w.is_finite()) {
                continue;
            }
            let one = Estimate {
                w,
                w2: w * w,
                lat: o.lat,
                lon: o.lon,
                m2: 0.0,
                n: 1,
            };
            acc = Some(match acc {
                None => one,
                Some(a) => a.merge(&one),
            });
        }
        acc
    }

    /// Both estimates combined, as if their observations had been one group.
    pub fn merge(&self, other: &Estimate) -> Estimate {
        let w = self.w + other.w;
        if w <= 0.0 {
            return *self;
        }
        let lat = (self.lat * self.w + other.lat * other.w) / w;
        let lon = (self.lon * self.w + other.lon * other.w) / w;
        let d2 = plane_d2(self.lat, self.lat, self.lon, other.lat, other.lon);
        Estimate {
            w,
            w2: self.w2 + other.w2,
            lat,
            lon,
            m2: self.m2 + other.m2 + self.w * other.w / w * d2,
            n: self.n.saturating_add(other.n),
        }
    }

    /// Effective number of observations, `(Σw)² / Σw²`.
    pub fn n_eff(&self) -> f64 {
        if self.w2 > 0.0 {
            (self.w * self.w / self.w2).max(1.0)
        } else {
            1.0
        }
    }

    /// Weighted RMS distance of the observations from the estimate, m.
    pub fn spread_m(&self) -> f64 {
        if self.w > 0.0 {
            (self.m2 / self.w).max(0.0).sqrt()
        } else {
            0.0
        }
    }

    /// One-axis standard deviation of the station position, m.
    ///
    /// The spread of the observations over √n_eff, plus a share `bias` of
    /// the spread that averaging does not remove (observations come from the
    /// streets beside a station, not from all around it), at least `floor`.
    /// A station seen a few times has a spread that says little (one
    /// sighting has none, though it may have been made from afar): its spread
    /// is shrunk towards `prior_m`, the typical spread of well-observed
    /// stations of the same kind, as if `PRIOR_WEIGHT` observations had
    /// shown it. The prior comes from the data (the query's other stations),
    /// not from a radio model.
    pub fn sigma_m(&self, bias: f64, floor: f64, prior_m: f64) -> f64 {
        let n = self.n_eff();
        let s2 = self.spread_m().powi(2);
        let shrunk = ((n * s2 + PRIOR_WEIGHT * prior_m * prior_m) / (n + PRIOR_WEIGHT)).sqrt()
            / std::f64::consts::SQRT_2;
        (shrunk * (1.0 / n.sqrt()).hypot(bias)).max(floor)
    }

    /// The stored form: little-endian w, w2, lat, lon, m2 (f64) and n (u32).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::BYTES);
        for v in [self.w, self.w2, self.lat, self.lon, self.m2] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.n.to_le_bytes());
        out
    }

    /// Reads [`Estimate::to_bytes`]; `None` for anything else.
    pub fn from_bytes(b: &[u8]) -> Option<Estimate> {
        if b.len() != Self::BYTES {
            return None;
        }
        let f = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i * 8..i * 8 + 8]);
            f64::from_le_bytes(a)
        };
        let mut n = [0u8; 4];
        n.copy_from_slice(&b[40..44]);
        let e = Estimate {
            w: f(0),
            w2: f(1),
            lat: f(2),
            lon: f(3),
            m2: f(4),
            n: u32::from_le_bytes(n),
        };
        (e.w.is_finite() && e.lat.is_finite() && e.lon.is_finite() && e.m2.is_finite()).then_some(e)
    }
}

/// The estimate after the updater's decision on a station: reset to the
/// batch's on *new* and *replace*, merged on *change* and *confirm*, dropped on
/// a block (the original's columns decide whether a station moved; the
/// estimate follows them), kept when nothing applies.
pub fn next_estimate(
    action: Option<crate::updater::Action>,
    old: Option<Estimate>,
    batch: Option<Estimate>,
) -> Option<Estimate> {
    use crate::updater::Action;
    match action {
        Some(Action::New | Action::Replace) => batch,
        Some(Action::Change | Action::Confirm) => match (old, batch) {
            (Some(o), Some(b)) => Some(o.merge(&b)),
            (o, b) => o.or(b),
        },
        Some(Action::Block | Action::NewBlock) => None,
        None => old,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{distance, latitude_add, longitude_add};

    const LAT: f64 = 52.52;
    const LON: f64 = 13.405;

    fn obs(east: f64, north: f64, signal: f64) -> EstimateObs {
        EstimateObs {
            lat: latitude_add(LAT, LON, north),
            lon: longitude_add(LAT, LON, east),
            accuracy: Some(5.0),
            signal: Some(signal),
            age_ms: None,
        }
    }

    /// A log-distance signal (exponent 3) of a transmitter at (tx, ty).
    fn heard(x: f64, y: f64, tx: f64, ty: f64) -> f64 {
        -40.0 - 30.0 * ((x - tx).hypot(y - ty).max(1.0)).log10()
    }

    #[test]
    fn a_transmitter_between_two_streets_is_found_between_them() {
        // Streets along y = 0 and y = 60; the transmitter at (0, 20), seen
        // from both streets over ±150 m. Stumblers pass the first street
        // three times as often: the plain mean would sit near y = 15 but
        // far along x evenly; the signal weighting pulls it to the
        // strongest sightings, next to the transmitter.
        let mut all = Vec::new();
        for i in -30..=30 {
            let x = f64::from(i) * 5.0;
            for _ in 0..3 {
                all.push(obs(x, 0.0, heard(x, 0.0, 0.0, 20.0)));
            }
            all.push(obs(x, 60.0, heard(x, 60.0, 0.0, 20.0)));
        }
        let e = Estimate::of(&all, -80.0).unwrap();
        let truth = (latitude_add(LAT, LON, 20.0), LON);
        let err = distance(e.lat, e.lon, truth.0, truth.1);
        assert!(err < 15.0, "{err} m");
        // Batch-independent: any split gives the same estimate.
        let (a, b) = all.split_at(77);
        let split = Estimate::of(a, -80.0)
            .unwrap()
            .merge(&Estimate::of(b, -80.0).unwrap());
        assert!(distance(split.lat, split.lon, e.lat, e.lon) < 1e-6);
        assert!((split.m2 - e.m2).abs() / e.m2 < 1e-6);
    }

    #[test]
    fn bytes_round_trip() {
        let e = Estimate::of(&[obs(0.0, 0.0, -60.0), obs(30.0, 0.0, -70.0)], -80.0).unwrap();
        let b = e.to_bytes();
        assert_eq!(b.len(), Estimate::BYTES);
        assert_eq!(Estimate::from_bytes(&b), Some(e));
        assert_eq!(Estimate::from_bytes(&b[1..]), None);
    }

    #[test]
    fn spread_and_sigma() {
        let e = Estimate::of(&[obs(-50.0, 0.0, -60.0), obs(50.0, 0.0, -60.0)], -80.0).unwrap();
        assert!((e.spread_m() - 50.0).abs() < 0.5, "{}", e.spread_m());
        assert!((e.n_eff() - 2.0).abs() < 1e-9);
        assert!(e.sigma_m(0.0, 1.0, 0.0) > 15.0);
        // One sighting: the prior decides.
        let one = Estimate::of(&[obs(0.0, 0.0, -60.0)], -80.0).unwrap();
        assert!(one.sigma_m(0.0, 1.0, 100.0) > 40.0);
        assert_eq!(one.sigma_m(0.0, 1.0, 0.0), 1.0);
    }
}
