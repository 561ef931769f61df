//! Seeded random streams for the simulator. Every generator (streets, Wi-Fi,
//! cells, each stumbler, the accuracy positions) draws from its own stream,
//! derived from the seed and a name, so adding draws to one generator never
//! changes what another produces, and the same seed always gives the same world.

use fastrand::Rng;

/// SplitMix64 finaliser: spreads nearby inputs over the whole 64-bit range.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The random stream `name`/`index` of the simulation with `seed`.
pub fn stream(seed: u64, name: &str, index: u64) -> Rng {
    let mut h = mix(seed);
    for b in name.bytes() {
        h = mix(h ^ u64::from(b));
    }
    Rng::with_seed(mix(h ^ mix(index)))
}

/// A standard normal draw (Box–Muller; one of the pair is discarded so every
/// call consumes exactly two uniforms).
pub fn normal(rng: &mut Rng) -> f64 {
    let u1 = 1.0 - rng.f64(); // (0, 1]
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A uniform draw in `[lo, hi)`.
pub fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_independent() {
        let a: Vec<u64> = (0..4).map(|_| stream(1, "wifi", 0).u64(..)).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(stream(1, "wifi", 0).u64(..), stream(2, "wifi", 0).u64(..));
        assert_ne!(stream(1, "wifi", 0).u64(..), stream(1, "cell", 0).u64(..));
        assert_ne!(stream(1, "wifi", 0).u64(..), stream(1, "wifi", 1).u64(..));
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut rng = stream(7, "normal", 0);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }
}
