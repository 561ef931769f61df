//! The locate algorithms of `/v1/geolocate` and `/v1/country` (locate §1–§4)
//! as pure functions over plain data.
//!
//! The web tier parses the request body (with its own coercion rules), calls
//! [`query::normalize`], reads the stations of the normalised lookups from the
//! store, looks up GeoIP, and then calls the searches here:
//!
//! 1. [`query`] — normalisation of the raw entries (§1) into a [`query::Query`].
//! 2. [`score`] — which stored rows are usable (§2.2) and their scores (§2.3).
//! 3. [`cluster`] and [`position`] — the WiFi/Bluetooth/cell/area algorithms
//!    (§3), producing [`result::PositionResult`]s; [`region_search`] the internal
//!    region results of `/v1/country` (§2.7).
//! 4. [`result`] — `best()`, `satisfied`, rounding and response formatting
//!    (§2.4–§2.8).
//! 5. [`geoip`] — radius and score of a GeoIP record (§4.2).
//!
//! Nothing here reads a clock: `now` / `today` are arguments.
//!
//! Sections (§) refer to docs/reference/locate.md.

pub mod cluster;
pub mod geoip;
mod lm;
pub mod position;
pub mod query;
pub mod region_search;
pub mod result;
pub mod score;

/// Raw entries read from each network array of a locate body; the rest are
/// ignored. Bounds the work a body can ask for (phones report tens of
/// networks, rarely more than two hundred).
pub const MAX_RAW_ENTRIES: usize = 1_000;
/// Distinct Wi-Fi networks a query keeps (the strongest); the rest are ignored.
pub const MAX_WIFIS_IN_QUERY: usize = 100;
/// Distinct Bluetooth beacons a query keeps (the strongest).
pub const MAX_BLUES_IN_QUERY: usize = 100;
/// Distinct cells (and cell areas) a query keeps (the strongest).
pub const MAX_CELLS_IN_QUERY: usize = 50;
/// Privacy minimum of distinct valid WiFi entries in a query.
pub const MIN_WIFIS_IN_QUERY: usize = 2;
/// Privacy minimum of distinct valid Bluetooth entries in a query.
pub const MIN_BLUES_IN_QUERY: usize = 2;
/// WiFi clustering distance in metres.
pub const MAX_WIFI_CLUSTER_METERS: f64 = 500.0;
/// Bluetooth clustering distance in metres.
pub const MAX_BLUE_CLUSTER_METERS: f64 = 100.0;
/// Networks used for the aggregate position of one WiFi cluster.
pub const MAX_WIFIS_IN_CLUSTER: usize = 20;
/// Networks used for the aggregate position of one Bluetooth cluster.
pub const MAX_BLUES_IN_CLUSTER: usize = 10;
/// Lower clamp of WiFi result accuracy.
pub const WIFI_MIN_ACCURACY: f64 = 10.0;
/// Upper clamp of WiFi result accuracy.
pub const WIFI_MAX_ACCURACY: f64 = 500.0;
/// Lower clamp of Bluetooth result accuracy.
pub const BLUE_MIN_ACCURACY: f64 = 10.0;
/// Upper clamp of Bluetooth result accuracy.
pub const BLUE_MAX_ACCURACY: f64 = 50.0;
/// Lower clamp of cell result accuracy.
pub const CELL_MIN_ACCURACY: f64 = 1_000.0;
/// Upper clamp of cell result accuracy.
pub const CELL_MAX_ACCURACY: f64 = 50_000.0;
/// Lower clamp of cell-area result accuracy.
pub const CELLAREA_MIN_ACCURACY: f64 = 50_000.0;
/// Upper clamp of cell-area result accuracy.
pub const CELLAREA_MAX_ACCURACY: f64 = 500_000.0;
/// Value of the accuracy class `low`.
pub const EARTH_CIRCUMFERENCE: f64 = 40_000_000.0;
/// Default signal of WiFi entries without one.
pub const MIN_WIFI_SIGNAL: i64 = -100;
/// Default signal of Bluetooth entries without one.
pub const MIN_BLUE_SIGNAL: i64 = -127;
/// Floor of `abs(age)` in milliseconds used in weighting.
pub const MIN_AGE_MS: i64 = 1_000;
/// Days a station stays blocked after `block_last`.
pub const TEMPORARY_BLOCKLIST_DAYS: i64 = 2;
/// Decimal places of result latitude, longitude and accuracy.
pub const DEGREE_DECIMAL_PLACES: i32 = 7;

pub use query::{AccuracyClass, ApiType, Fallbacks, Query, QueryInput};
pub use result::{FallbackTag, PositionResult, RegionResult, ResultSource, round3, round7};
