//! The GeoIP database (locate §4.1–§4.2): a MaxMind City database read with
//! the `maxminddb` crate, answering client IPs with the City record fields locate
//! uses ([`GeoIpRecord`]).
//!
//! Only `GeoIP2-City` and `GeoLite2-City` databases are accepted. A database that
//! cannot be opened is an error at start-up; the service then runs without GeoIP
//! (and the heartbeat reports it down, since one was configured).

use std::net::IpAddr;
use std::path::Path;

use chrono::{DateTime, Utc};
use ichnaea_core::locate::geoip::{GeoIpLocation, GeoIpRecord, geoip_location};
use serde::Deserialize;

use crate::service::GeoipStatus;

/// Database types whose records have the City layout.
const CITY_TYPES: [&str; 2] = ["GeoIP2-City", "GeoLite2-City"];

/// Why a GeoIP database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    /// Missing, unreadable or corrupt file.
    #[error("cannot read the GeoIP database: {0}")]
    Read(#[from] maxminddb::MaxMindDbError),
    /// A MaxMind database of another kind (e.g. `GeoLite2-Country`).
    #[error("GeoIP database type {0:?} is not a City database")]
    WrongType(String),
}

/// A number of any MaxMind numeric type (the decoder is strict about the stored
/// width: `accuracy_radius` is a uint16, `geoname_id` a uint32, coordinates doubles).
#[derive(Clone, Copy, Debug, Default)]
struct Num(f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Num, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Num;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
                Ok(Num(v))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The record members locate reads, decoded leniently (everything optional).
#[derive(Debug, Default, Deserialize)]
struct CityRecord {
    country: Option<CountryRecord>,
    city: Option<CityName>,
    location: Option<LocationRecord>,
    subdivisions: Option<Vec<serde::de::IgnoredAny>>,
}

#[derive(Debug, Default, Deserialize)]
struct CountryRecord {
    iso_code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct CityName {
    geoname_id: Option<Num>,
}

#[derive(Debug, Default, Deserialize)]
struct LocationRecord {
    latitude: Option<Num>,
    longitude: Option<Num>,
    accuracy_radius: Option<Num>,
}

/// An opened GeoIP City database.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
    build_epoch: i64,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("database_type", &self.reader.metadata().database_type)
            .field("build_epoch", &self.build_epoch)
            .finish_non_exhaustive()
    }
}

impl GeoIp {
    /// Reads the database at `path` into memory.
    pub fn open(path: &Path) -> Result<GeoIp, GeoIpError> {
        GeoIp::from_bytes(std::fs::read(path).map_err(maxminddb::MaxMindDbError::from)?)
    }

    /// Uses an in-memory database.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GeoIp, GeoIpError> {
        let reader = maxminddb::Reader::from_source(bytes)?;
        let metadata = reader.metadata();
        if !CITY_TYPES.contains(&metadata.database_type.as_str()) {
            return Err(GeoIpError::WrongType(metadata.database_type.clone()));
        }
        let build_epoch = i64::try_from(metadata.build_epoch).unwrap_or(i64::MAX);
        Ok(GeoIp {
            reader,
            build_epoch,
        })
    }

    /// The City record fields of `ip` (IPv4-mapped IPv6 addresses as IPv4);
    /// `None` when the address is not in the database or the record cannot be
    /// read (reader errors are logged).
    pub fn record(&self, ip: IpAddr) -> Option<GeoIpRecord> {
        // `::ffff:a.b.c.d` is looked up as the IPv4 address it carries.
        let ip = ip.to_canonical();
        let decoded = self
            .reader
            .lookup(ip)
            .and_then(|result| result.decode::<CityRecord>());
        let record = match decoded {
            Ok(record) => record?,
            Err(e) => {
                tracing::warn!(error = %e, %ip, "GeoIP lookup failed");
                return None;
            }
        };
        let location = record.location.unwrap_or_default();
        Some(GeoIpRecord {
            country_code: record.country.and_then(|c| c.iso_code),
            latitude: location.latitude.map(|n| n.0),
            longitude: location.longitude.map(|n| n.0),
            accuracy_radius_km: location.accuracy_radius.map(|n| n.0),
            city_geoname_id: record
                .city
                .and_then(|c| c.geoname_id)
                .and_then(|n| u32::try_from(n.0 as u64).ok()),
            has_subdivision: record.subdivisions.is_some_and(|s| !s.is_empty()),
        })
    }

    /// The usable location of `ip` (locate §4.2): `None` when the address is
    /// unknown or its record lacks a country or coordinates.
    pub fn locate(&self, ip: IpAddr) -> Option<GeoIpLocation> {
        geoip_location(&self.record(ip)?)
    }

    /// Build time of the database, if representable.
    pub fn build_time(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.build_epoch, 0)
    }

    /// What the heartbeat reports: loaded, the build time as
    /// `YYYY-MM-DDTHH:MM:SSZ` and its age in whole days at `now`, rounded.
    pub fn status(&self, now: DateTime<Utc>) -> GeoipStatus {
        let built = self.build_time();
        GeoipStatus {
            configured: true,
            loaded: true,
            version: built.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            age_in_days: built.map(|t| ((now - t).num_seconds() as f64 / 86_400.0).round() as i64),
        }
    }
}
