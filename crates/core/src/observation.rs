//! Observations: one network seen at one position, as the internal exporter
//! queues them for the station updaters (wire format of pipeline §2.11:
//! JSON with only the non-null fields).

use serde::{Deserialize, Serialize};

/// The report-level fields every observation carries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ObsPosition {
    /// Latitude of the report.
    pub lat: f64,
    /// Longitude of the report.
    pub lon: f64,
    /// Position accuracy in metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Altitude in metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude: Option<f64>,
    /// Altitude accuracy in metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude_accuracy: Option<f64>,
    /// Heading in degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<f64>,
    /// Air pressure in hPa.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure: Option<f64>,
    /// Speed in m/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// Integer [`crate::ReportSource`] code; absent means gnss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<i16>,
    /// Time of the position fix, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

/// A Bluetooth beacon seen at a position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlueObservation {
    /// Report fields.
    #[serde(flatten)]
    pub pos: ObsPosition,
    /// 12 lower-case hex digits.
    pub mac: String,
    /// Milliseconds between the sighting and the position fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<i64>,
    /// dBm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i64>,
}

/// A Wi-Fi access point seen at a position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WifiObservation {
    /// Report fields.
    #[serde(flatten)]
    pub pos: ObsPosition,
    /// 12 lower-case hex digits.
    pub mac: String,
    /// Milliseconds between the sighting and the position fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<i64>,
    /// Channel number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<i64>,
    /// MHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<i64>,
    /// dBm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i64>,
    /// Signal-to-noise ratio in dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snr: Option<i64>,
}

/// A cell seen at a position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellObservation {
    /// Report fields.
    #[serde(flatten)]
    pub pos: ObsPosition,
    /// Integer [`crate::Radio`] code.
    pub radio: i8,
    /// Mobile country code.
    pub mcc: i64,
    /// Mobile network code.
    pub mnc: i64,
    /// Location/tracking area code.
    pub lac: i64,
    /// Cell id.
    pub cid: i64,
    /// Scrambling code / physical cell id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psc: Option<i64>,
    /// Milliseconds between the sighting and the position fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<i64>,
    /// Arbitrary strength unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asu: Option<i64>,
    /// dBm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i64>,
    /// Timing advance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ta: Option<i64>,
}

impl CellObservation {
    /// The cell's key; `None` if the numbers do not fit a key (never for
    /// observations built by the internal exporter).
    pub fn key(&self) -> Option<crate::cell::CellKey> {
        let key = crate::cell::CellKey {
            radio: crate::Radio::from_code(self.radio.into())?,
            mcc: u16::try_from(self.mcc).ok()?,
            mnc: u16::try_from(self.mnc).ok()?,
            lac: u32::try_from(self.lac).ok()?,
            cid: u64::try_from(self.cid).ok()?,
        };
        key.check_encodable().ok()?;
        Some(key)
    }
}
