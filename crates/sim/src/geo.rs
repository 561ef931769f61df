//! The simulator's flat map: metres east (`x`) and north (`y`) of the world's
//! centre, converted to WGS-84 latitude/longitude for the API. Over a city
//! (a few km) the local spherical projection is accurate to well under a metre,
//! which is far below the errors the accuracy report measures.

use serde::Serialize;

/// Mean Earth radius in metres (IUGG).
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A point of the flat map, metres from the world's centre.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Xy {
    /// Metres east of the centre.
    pub x: f64,
    /// Metres north of the centre.
    pub y: f64,
}

impl Xy {
    /// Straight-line distance on the map, metres.
    pub fn dist(self, other: Xy) -> f64 {
        (self.x - other.x).hypot(self.y - other.y)
    }
}

/// The projection of the map around its centre.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plane {
    /// Latitude of the centre, degrees.
    pub lat0: f64,
    /// Longitude of the centre, degrees.
    pub lon0: f64,
}

impl Plane {
    /// Latitude and longitude (degrees) of a map point.
    pub fn to_latlon(self, p: Xy) -> (f64, f64) {
        let lat = self.lat0 + (p.y / EARTH_RADIUS_M).to_degrees();
        let lon = self.lon0 + (p.x / (EARTH_RADIUS_M * self.lat0.to_radians().cos())).to_degrees();
        (lat, lon)
    }
}

/// Great-circle distance in metres between two latitude/longitude points.
pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

/// Rounds degrees to 7 decimals (about 1 cm), as the API does.
pub fn round7(v: f64) -> f64 {
    (v * 1e7).round() / 1e7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_agrees_with_haversine() {
        let plane = Plane {
            lat0: 52.52,
            lon0: 13.405,
        };
        for p in [
            Xy { x: 4000.0, y: 0.0 },
            Xy { x: 0.0, y: -4000.0 },
            Xy {
                x: 3000.0,
                y: 3000.0,
            },
        ] {
            let (lat, lon) = plane.to_latlon(p);
            let d = haversine_m(52.52, 13.405, lat, lon);
            let flat = p.dist(Xy::default());
            assert!((d - flat).abs() < 1.0, "{d} vs {flat}");
        }
    }
}
