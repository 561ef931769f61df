//! What the pipeline needs to know about regions and mobile country codes,
//! as a trait so the station rules stay pure and testable; the service plugs in
//! the bundled boundary data (see the `region` module).

/// Region and MCC facts used by report validation, station updates and cell areas.
pub trait Geocoder: Send + Sync {
    /// The region code of a position, if it lies in one (pipeline §1.14).
    fn region(&self, lat: f64, lon: f64) -> Option<String>;
    /// Whether the position lies in (the buffered shape of) region `code`.
    fn in_region(&self, lat: f64, lon: f64, code: &str) -> bool;
    /// Whether the position lies in any region (open ocean does not).
    fn any_region(&self, lat: f64, lon: f64) -> bool;
    /// The region of a cell of `mcc` at this position (pipeline §1.14).
    fn region_for_cell(&self, lat: f64, lon: f64, mcc: u16) -> Option<String>;
    /// Whether `mcc` is a known mobile country code (1–999, 553 excluded).
    fn valid_mcc(&self, mcc: i64) -> bool;
}
