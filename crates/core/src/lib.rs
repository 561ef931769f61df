//! Domain types, validation and pure algorithms of ichnaea.
//!
//! This crate does no I/O: no database, no network, no files. Everything here is a
//! plain function over plain data, so the storage backends, the web tier, the
//! pipeline and the simulator share one definition of each rule.

pub mod apikey;
pub mod area;
pub mod cell;
pub mod datamap;
pub mod datamap_points;
pub mod export;
pub mod geo;
pub mod geocoder;
pub mod ingest;
pub mod locate;
pub mod mac;
pub mod observation;
pub mod queue_item;
pub mod queues;
pub mod radio;
pub mod region;
pub mod source;
pub mod station;
pub mod stats;
pub mod tiles;
pub mod updater;
pub mod validation;

pub use apikey::{ApiKey, ApiKeyPatch, FallbackSchema};
pub use cell::{AreaKey, CellKey};
pub use datamap::{DatamapGrid, Quadrant};
pub use export::{ExportConfig, ExportConfigPatch, ExportSchema};
pub use mac::Mac;
pub use queue_item::{ExportItem, IncomingItem};
pub use radio::Radio;
pub use region::RegionGeocoder;
pub use source::ReportSource;
pub use station::{BlueStation, CellArea, CellStation, StationFields, WifiStation};
pub use stats::{RegionStat, StatKey, StatRow};
pub use validation::FieldError;
