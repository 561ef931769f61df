//! Geodesy on the WGS-84 ellipsoid (locate §7): Vincenty distances with a
//! haversine fallback, destinations, bounding boxes and circle radii. Used by the
//! station updater (positions, radii, moves) and the locate algorithms.

/// Semi-major axis in km.
const A_KM: f64 = 6378.137;
/// Semi-minor axis in km.
const B_KM: f64 = 6356.752314245;
/// Flattening (1/298.257223563).
const F: f64 = 0.0033528106647474805;
/// Mean sphere radius in km, for the haversine fallback.
const R_KM: f64 = 6371.009;
const CONVERGENCE: f64 = 1e-11;
const MAX_ITERATIONS: u32 = 25;

/// Latitude bound of Web-Mercator maps and of every stored position.
pub const MAX_LAT: f64 = 85.051;
/// Longitude bound.
pub const MAX_LON: f64 = 180.0;

/// Great-circle distance on a sphere, in metres.
pub fn haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * R_KM * h.sqrt().min(1.0).asin() * 1000.0
}

/// Distance in metres: Vincenty's inverse formula on WGS-84, or the haversine
/// distance when it does not converge (nearly antipodal points).
pub fn distance(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    GeoPoint::new(lat1, lon1).distance(&GeoPoint::new(lat2, lon2))
}

/// A position with its reduced latitude (on the auxiliary sphere) computed once.
///
/// Vincenty's formula starts from the sine and cosine of both points' reduced
/// latitudes (a `tan`, an `atan` and a `sin_cos` each); the locate algorithms
/// measure one point against many networks, and the least-squares refinement
/// measures the same networks again at every step, so they keep these values
/// per point. Distances are bit-identical to [`distance`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeoPoint {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    sin_u: f64,
    cos_u: f64,
}

impl GeoPoint {
    /// The point at (`lat`, `lon`) degrees.
    pub fn new(lat: f64, lon: f64) -> GeoPoint {
        let u = ((1.0 - F) * lat.to_radians().tan()).atan();
        let (sin_u, cos_u) = u.sin_cos();
        GeoPoint {
            lat,
            lon,
            sin_u,
            cos_u,
        }
    }

    /// Distance in metres to `other`, as [`distance`] computes it.
    pub fn distance(&self, other: &GeoPoint) -> f64 {
        vincenty(self, other).unwrap_or_else(|| haversine(self.lat, self.lon, other.lat, other.lon))
    }
}

fn vincenty(p1: &GeoPoint, p2: &GeoPoint) -> Option<f64> {
    let l = (p2.lon - p1.lon).to_radians();
    let (sin_u1, cos_u1) = (p1.sin_u, p1.cos_u);
    let (sin_u2, cos_u2) = (p2.sin_u, p2.cos_u);
    let mut lambda = l;
    let mut lambda_prev = 2.0 * std::f64::consts::PI;
    let mut i = 0;
    let (mut sin_sigma, mut cos_sigma, mut sigma, mut cos_sq_alpha, mut cos_2sigma_m) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    while (lambda - lambda_prev).abs() > CONVERGENCE && i <= MAX_ITERATIONS {
        i += 1;
        let (sin_lambda, cos_lambda) = lambda.sin_cos();
        sin_sigma = ((cos_u2 * sin_lambda).powi(2)
            + (cos_u1 * sin_u2 - sin_u1 * cos_u2 * cos_lambda).powi(2))
        .sqrt();
        if sin_sigma == 0.0 {
            return Some(0.0);
        }
        cos_sigma = sin_u1 * sin_u2 + cos_u1 * cos_u2 * cos_lambda;
        sigma = sin_sigma.atan2(cos_sigma);
        let sin_alpha = cos_u1 * cos_u2 * sin_lambda / sin_sigma;
        cos_sq_alpha = 1.0 - sin_alpha * sin_alpha;
        cos_2sigma_m = if cos_sq_alpha == 0.0 {
            0.0
        } else {
            cos_sigma - 2.0 * sin_u1 * sin_u2 / cos_sq_alpha
        };
        let c = F / 16.0 * cos_sq_alpha * (4.0 + F * (4.0 - 3.0 * cos_sq_alpha));
        lambda_prev = lambda;
        lambda = l
            + (1.0 - c)
                * F
                * sin_alpha
                * (sigma
                    + c * sin_sigma
                        * (cos_2sigma_m
                            + c * cos_sigma * (-1.0 + 2.0 * cos_2sigma_m * cos_2sigma_m)));
    }
    if i > MAX_ITERATIONS {
        return None;
    }
    let u_sq = cos_sq_alpha * (A_KM * A_KM - B_KM * B_KM) / (B_KM * B_KM);
    let a = 1.0 + u_sq / 16384.0 * (4096.0 + u_sq * (-768.0 + u_sq * (320.0 - 175.0 * u_sq)));
    let b = u_sq / 1024.0 * (256.0 + u_sq * (-128.0 + u_sq * (74.0 - 47.0 * u_sq)));
    let delta_sigma = b
        * sin_sigma
        * (cos_2sigma_m
            + b / 4.0
                * (cos_sigma * (-1.0 + 2.0 * cos_2sigma_m * cos_2sigma_m)
                    - b / 6.0
                        * cos_2sigma_m
                        * (-3.0 + 4.0 * sin_sigma * sin_sigma)
                        * (-3.0 + 4.0 * cos_2sigma_m * cos_2sigma_m)));
    Some(1000.0 * B_KM * a * (sigma - delta_sigma))
}

/// The point `distance` metres from (lat, lon) along `bearing` degrees (Vincenty's
/// direct formula); `None` if it does not converge.
pub fn destination(lat: f64, lon: f64, bearing: f64, distance: f64) -> Option<(f64, f64)> {
    let (a, b) = (A_KM * 1000.0, B_KM * 1000.0);
    let alpha1 = bearing.to_radians();
    let (sin_alpha1, cos_alpha1) = alpha1.sin_cos();
    let tan_u1 = (1.0 - F) * lat.to_radians().tan();
    let cos_u1 = 1.0 / (1.0 + tan_u1 * tan_u1).sqrt();
    let sin_u1 = tan_u1 * cos_u1;
    let sigma1 = tan_u1.atan2(cos_alpha1);
    let sin_alpha = cos_u1 * sin_alpha1;
    let cos_sq_alpha = 1.0 - sin_alpha * sin_alpha;
    let u_sq = cos_sq_alpha * (a * a - b * b) / (b * b);
    let big_a = 1.0 + u_sq / 16384.0 * (4096.0 + u_sq * (-768.0 + u_sq * (320.0 - 175.0 * u_sq)));
    let big_b = u_sq / 1024.0 * (256.0 + u_sq * (-128.0 + u_sq * (74.0 - 47.0 * u_sq)));
    let mut sigma = distance / (b * big_a);
    let mut sigma_prev = 2.0 * std::f64::consts::PI;
    let (mut cos_2sigma_m, mut sin_sigma, mut cos_sigma) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while (sigma - sigma_prev).abs() > CONVERGENCE {
        i += 1;
        if i > 200 {
            return None;
        }
        cos_2sigma_m = (2.0 * sigma1 + sigma).cos();
        sin_sigma = sigma.sin();
        cos_sigma = sigma.cos();
        let delta_sigma = big_b
            * sin_sigma
            * (cos_2sigma_m
                + big_b / 4.0
                    * (cos_sigma * (-1.0 + 2.0 * cos_2sigma_m * cos_2sigma_m)
                        - big_b / 6.0
                            * cos_2sigma_m
                            * (-3.0 + 4.0 * sin_sigma * sin_sigma)
                            * (-3.0 + 4.0 * cos_2sigma_m * cos_2sigma_m)));
        sigma_prev = sigma;
        sigma = distance / (b * big_a) + delta_sigma;
    }
    let tmp = sin_u1 * sin_sigma - cos_u1 * cos_sigma * cos_alpha1;
    let lat2 = (sin_u1 * cos_sigma + cos_u1 * sin_sigma * cos_alpha1)
        .atan2((1.0 - F) * (sin_alpha * sin_alpha + tmp * tmp).sqrt());
    let lambda =
        (sin_sigma * sin_alpha1).atan2(cos_u1 * cos_sigma - sin_u1 * sin_sigma * cos_alpha1);
    let c = F / 16.0 * cos_sq_alpha * (4.0 + F * (4.0 - 3.0 * cos_sq_alpha));
    let l = lambda
        - (1.0 - c)
            * F
            * sin_alpha
            * (sigma
                + c * sin_sigma
                    * (cos_2sigma_m + c * cos_sigma * (-1.0 + 2.0 * cos_2sigma_m * cos_2sigma_m)));
    Some((lat2.to_degrees(), lon + l.to_degrees()))
}

/// Latitude `meters` north (negative: south) of the point, clamped to ±85.051.
pub fn latitude_add(lat: f64, lon: f64, meters: f64) -> f64 {
    destination(lat, lon, 0.0, meters)
        .map_or(lat, |(la, _)| la)
        .clamp(-MAX_LAT, MAX_LAT)
}

/// Longitude `meters` east (negative: west) of the point, clamped to ±180.
pub fn longitude_add(lat: f64, lon: f64, meters: f64) -> f64 {
    destination(lat, lon, 90.0, meters)
        .map_or(lon, |(_, lo)| lo)
        .clamp(-MAX_LON, MAX_LON)
}

/// `(max_lat, min_lat, max_lon, min_lon)` of a box `meters` around the point.
pub fn bbox(lat: f64, lon: f64, meters: f64) -> (f64, f64, f64, f64) {
    (
        latitude_add(lat, lon, meters),
        latitude_add(lat, lon, -meters),
        longitude_add(lat, lon, meters),
        longitude_add(lat, lon, -meters),
    )
}

/// Largest distance from (lat, lon) to any of `points`; 0 for none.
pub fn max_distance(lat: f64, lon: f64, points: &[(f64, f64)]) -> f64 {
    points
        .iter()
        .map(|(la, lo)| distance(lat, lon, *la, *lo))
        .fold(0.0, f64::max)
}

/// Metres from (lat, lon) to the farthest corner of a bounding box, rounded to a
/// whole metre: the radius of stations and cell areas.
pub fn circle_radius(
    lat: f64,
    lon: f64,
    max_lat: f64,
    max_lon: f64,
    min_lat: f64,
    min_lon: f64,
) -> i64 {
    let corners = [
        (min_lat, min_lon),
        (min_lat, max_lon),
        (max_lat, min_lon),
        (max_lat, max_lon),
    ];
    max_distance(lat, lon, &corners).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r4(x: f64) -> f64 {
        (x * 1e4).round() / 1e4
    }

    #[test]
    fn spec_reference_distances() {
        assert_eq!(
            r4(distance(44.0337065, -79.4908184, 44.0349396, -79.4908184)),
            137.0133
        );
        assert_eq!(
            r4(haversine(44.0337065, -79.4908184, 44.0349396, -79.4908184)),
            137.1147
        );
        assert_eq!(r4(distance(90.0, 0.0, -90.0, 0.0)), 20003931.4586);
        assert_eq!(r4(haversine(90.0, 0.0, -90.0, 0.0)), 20015115.0704);
        assert_eq!(r4(distance(0.0, 0.0, 0.5, 179.0)), 19902751.0326);
        assert_eq!(
            r4(distance(0.0, 0.0, 0.5, 179.7)),
            19950277.9698,
            "Vincenty fails, haversine"
        );
        assert_eq!(
            (distance(1.0, 1.0, 1.0, 1.1) * 1000.0).round() / 1000.0,
            11_130.265
        );
        assert_eq!(r4(distance(-100.0, -186.0, 0.0, 0.0)), 11112616.8752);
        assert_eq!(distance(1.0, 2.0, 1.0, 2.0), 0.0);
    }

    #[test]
    fn destinations_and_boxes() {
        let r7 = |x: f64| (x * 1e7).round() / 1e7;
        let (la, lo) = destination(1.0, 1.0, 0.0, 1000.0).unwrap();
        assert_eq!((r7(la), r7(lo)), (1.0090437, 1.0));
        let (la, lo) = destination(1.0, 1.0, 90.0, 1000.0).unwrap();
        assert_eq!((r7(la), r7(lo)), (1.0, 1.0089845));
        let (la, _) = destination(1.0, 1.0, 0.0, -1000.0).unwrap();
        assert!(la < 1.0);
        assert_eq!(bbox(-90.0, -181.0, 0.0), (-85.051, -85.051, -180.0, -180.0));
        assert_eq!(circle_radius(1.0, 1.0, 1.0, 1.0, 1.0, 1.0), 0);
        assert_eq!(circle_radius(1.0, 1.0, 1.0, 1.1, 1.0, 1.0), 11_130);
    }
}
