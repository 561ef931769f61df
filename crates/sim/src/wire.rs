//! The JSON the simulated phones send: `/v2/geosubmit` reports (as NeoStumbler
//! writes them) and `/v1/geolocate` queries, with a fixed field order so that
//! the same scan always serialises to the same bytes.

use serde::Serialize;

use crate::scan::{SeenBlue, SeenCell, SeenWifi};
use crate::world::World;

/// `position` of a geosubmit report.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    /// Degrees, 7 decimals.
    pub latitude: f64,
    /// Degrees, 7 decimals.
    pub longitude: f64,
    /// Metres (68 % radius, as Android reports it).
    pub accuracy: f64,
    /// Age of the fix when the report was made, ms.
    pub age: i64,
    /// Metres above the ellipsoid.
    pub altitude: f64,
    /// Degrees from north.
    pub heading: f64,
    /// m/s.
    pub speed: f64,
    /// Always `gnss`.
    pub source: &'static str,
}

/// A Wi-Fi entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WifiEntry {
    /// BSSID.
    pub mac_address: String,
    /// ms since the scan result was seen, relative to the report.
    pub age: i64,
    /// Channel.
    pub channel: u16,
    /// MHz.
    pub frequency: u16,
    /// dBm.
    pub signal_strength: i32,
    /// Network name (absent for hidden networks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssid: Option<String>,
}

/// A cell entry (geosubmit carries `asu` and `serving`; geolocate ignores them).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CellEntry {
    /// `gsm`, `wcdma`, `lte`, `nr`.
    pub radio_type: &'static str,
    /// MCC.
    pub mobile_country_code: u16,
    /// MNC.
    pub mobile_network_code: u16,
    /// LAC / TAC.
    pub location_area_code: u32,
    /// Cell identity.
    pub cell_id: u64,
    /// ms.
    pub age: i64,
    /// PSC / PCI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_scrambling_code: Option<u16>,
    /// dBm.
    pub signal_strength: i32,
    /// LTE timing advance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing_advance: Option<u32>,
    /// 1 for the serving cell (geosubmit only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<u8>,
}

/// A Bluetooth entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueEntry {
    /// Address.
    pub mac_address: String,
    /// ms.
    pub age: i64,
    /// dBm.
    pub signal_strength: i32,
}

/// One geosubmit report.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// ms since the Unix epoch.
    pub timestamp: i64,
    /// The GNSS fix.
    pub position: Position,
    /// Access points.
    pub wifi_access_points: Vec<WifiEntry>,
    /// Cells.
    pub cell_towers: Vec<CellEntry>,
    /// Beacons (omitted when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bluetooth_beacons: Vec<BlueEntry>,
}

/// The body of a geosubmit upload.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Upload<'a> {
    /// Reports.
    pub items: &'a [Item],
}

/// `fallbacks` of a geolocate query.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fallbacks {
    /// GeoIP fallback (always off: the simulator measures network positioning).
    pub ipf: bool,
}

/// A geolocate query.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    /// Always false.
    pub consider_ip: bool,
    /// `{"ipf": false}`.
    pub fallbacks: Fallbacks,
    /// Access points.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wifi_access_points: Vec<WifiEntry>,
    /// Cells.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cell_towers: Vec<CellEntry>,
    /// Beacons.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bluetooth_beacons: Vec<BlueEntry>,
}

/// Wi-Fi entries of `seen`; with `submit`, hidden and `_nomap` networks are
/// left out as clients must.
pub fn wifi_entries(
    world: &World,
    seen: &[SeenWifi],
    ages: &[i64],
    submit: bool,
) -> Vec<WifiEntry> {
    seen.iter()
        .zip(ages.iter().chain(std::iter::repeat(&0)))
        .filter(|(s, _)| !submit || world.wifi[s.ap].submittable())
        .map(|(s, &age)| {
            let ap = &world.wifi[s.ap];
            WifiEntry {
                mac_address: ap.mac.clone(),
                age,
                channel: ap.channel,
                frequency: ap.frequency,
                signal_strength: s.signal,
                ssid: (!ap.ssid.is_empty()).then(|| ap.ssid.clone()),
            }
        })
        .collect()
}

/// Cell entries of `seen`; `serving` is written only for geosubmit.
pub fn cell_entries(world: &World, seen: &[SeenCell], age: i64, submit: bool) -> Vec<CellEntry> {
    seen.iter()
        .map(|s| {
            let c = &world.cells[s.cell];
            CellEntry {
                radio_type: c.radio,
                mobile_country_code: c.mcc,
                mobile_network_code: c.mnc,
                location_area_code: c.lac,
                cell_id: c.cid,
                age,
                primary_scrambling_code: c.psc,
                signal_strength: s.signal,
                timing_advance: s.timing_advance,
                serving: submit.then_some(u8::from(s.serving)),
            }
        })
        .collect()
}

/// Bluetooth entries of `seen`.
pub fn blue_entries(world: &World, seen: &[SeenBlue], age: i64) -> Vec<BlueEntry> {
    seen.iter()
        .map(|s| BlueEntry {
            mac_address: world.blue[s.beacon].mac.clone(),
            age,
            signal_strength: s.signal,
        })
        .collect()
}
