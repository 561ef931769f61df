//! The JSON this server writes about a locate query: the `query` report it puts
//! on `update_incoming`, and the request bodies of the four external fallback
//! schemas. One struct per shape, so each schema's field list is in one place.
//!
//! Absent values are omitted, never sent as `null`. Fields are declared in
//! alphabetical order (byte order, upper case first), the order in which these
//! bodies have always been written, so providers and stored reports see the
//! same bytes as before.

use ichnaea_core::locate::query::{BlueLookup, CellLookup, Query, WifiLookup};
use ichnaea_core::locate::result::PositionResult;
use ichnaea_core::locate::round7;
use ichnaea_core::{FallbackSchema, Mac};
use serde::{Serialize, Serializer};

/// Writes a MAC address in its text form (`01:23:45:67:89:ab`).
fn mac_text<S: Serializer>(mac: &Mac, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(mac)
}

/// A Bluetooth beacon (query reports; ichnaea and combain schemas).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueEntry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    age: Option<i64>,
    #[serde(serialize_with = "mac_text")]
    mac_address: Mac,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_strength: Option<i64>,
}

impl<'a> From<&'a BlueLookup> for BlueEntry<'a> {
    fn from(b: &'a BlueLookup) -> Self {
        BlueEntry {
            age: b.age,
            mac_address: b.mac,
            name: b.name.as_deref(),
            signal_strength: b.signal_strength,
        }
    }
}

/// A cell tower in the geolocate shape (query reports; ichnaea, combain and
/// googlemaps schemas).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CellEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    age: Option<i64>,
    cell_id: u64,
    location_area_code: u32,
    mobile_country_code: u16,
    mobile_network_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_scrambling_code: Option<i64>,
    radio_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_strength: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timing_advance: Option<i64>,
}

impl CellEntry {
    /// Every member of the lookup; `with_psc: false` leaves out the scrambling
    /// code (googlemaps does not take it).
    fn new(c: &CellLookup, with_psc: bool) -> CellEntry {
        let k = c.key;
        CellEntry {
            age: c.age,
            cell_id: k.cid,
            location_area_code: k.lac,
            mobile_country_code: k.mcc,
            mobile_network_code: k.mnc,
            primary_scrambling_code: c.psc.filter(|_| with_psc),
            radio_type: k.radio.name(),
            signal_strength: c.signal_strength,
            timing_advance: c.timing_advance,
        }
    }
}

/// A Wi-Fi access point in the geolocate shape.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WifiEntry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    age: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency: Option<i64>,
    #[serde(serialize_with = "mac_text")]
    mac_address: Mac,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_strength: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_to_noise_ratio: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssid: Option<&'a str>,
}

impl<'a> WifiEntry<'a> {
    /// Every member of the lookup (query reports).
    fn full(w: &'a WifiLookup) -> WifiEntry<'a> {
        WifiEntry {
            age: w.age,
            channel: w.channel,
            frequency: w.frequency,
            mac_address: w.mac,
            signal_strength: w.signal_strength,
            signal_to_noise_ratio: w.signal_to_noise_ratio,
            ssid: w.ssid.as_deref(),
        }
    }

    /// The members the geolocate-shaped provider schemas take: no frequency,
    /// and the SSID only `with_ssid` (ichnaea and combain, not googlemaps).
    fn for_provider(w: &'a WifiLookup, with_ssid: bool) -> WifiEntry<'a> {
        WifiEntry {
            frequency: None,
            ssid: w.ssid.as_deref().filter(|_| with_ssid),
            ..WifiEntry::full(w)
        }
    }
}

/// The resolved `fallbacks` flags of a query.
#[derive(Serialize)]
pub struct FallbackFlags {
    ipf: bool,
    lacf: bool,
}

/// The position of a query report: the best internal result, source `query`.
#[derive(Serialize)]
pub struct QueryPosition {
    #[serde(skip_serializing_if = "Option::is_none")]
    accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    longitude: Option<f64>,
    source: &'static str,
}

/// The `query` report of a located query: the validated, de-duplicated entries,
/// the resolved fallback flags and the best internal position.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryReport<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bluetooth_beacons: Vec<BlueEntry<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cell_towers: Vec<CellEntry>,
    fallbacks: FallbackFlags,
    position: QueryPosition,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    wifi_access_points: Vec<WifiEntry<'a>>,
}

impl<'a> QueryReport<'a> {
    /// The report of `query` located at `best` (a position without finite
    /// coordinates carries only its source).
    pub fn new(query: &'a Query, best: &PositionResult) -> QueryReport<'a> {
        let located = best.lat.is_finite() && best.lon.is_finite();
        QueryReport {
            bluetooth_beacons: query.blue.iter().map(BlueEntry::from).collect(),
            cell_towers: query.cell.iter().map(|c| CellEntry::new(c, true)).collect(),
            fallbacks: FallbackFlags {
                ipf: query.fallbacks.ipf,
                lacf: query.fallbacks.lacf,
            },
            position: QueryPosition {
                accuracy: located.then(|| round7(best.accuracy)),
                latitude: located.then(|| round7(best.lat)),
                longitude: located.then(|| round7(best.lon)),
                source: "query",
            },
            wifi_access_points: query.wifi.iter().map(WifiEntry::full).collect(),
        }
    }
}

/// A cell in the unwiredlabs schema.
#[derive(Serialize)]
pub struct UnwiredCell {
    cid: u64,
    lac: u32,
    mcc: u16,
    mnc: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    psc: Option<i64>,
    radio: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i64>,
    #[serde(rename = "tA", skip_serializing_if = "Option::is_none")]
    timing_advance: Option<i64>,
}

/// A Wi-Fi access point in the unwiredlabs schema.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnwiredWifi {
    #[serde(serialize_with = "mac_text")]
    bssid: Mac,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_to_noise_ratio: Option<i64>,
}

/// The request body of an external fallback provider, in the provider's schema:
/// normalised entries in query order, lists only when non-empty, cell areas
/// never sent.
#[derive(Serialize)]
#[serde(untagged)]
pub enum FallbackRequest<'a> {
    /// `ichnaea` and `combain`: the geolocate shape with Bluetooth.
    #[serde(rename_all = "camelCase")]
    Ichnaea {
        /// Bluetooth beacons.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        bluetooth_beacons: Vec<BlueEntry<'a>>,
        /// Cell towers.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        cell_towers: Vec<CellEntry>,
        /// `lacf` as resolved, `ipf` always false.
        fallbacks: FallbackFlags,
        /// Wi-Fi access points.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        wifi_access_points: Vec<WifiEntry<'a>>,
    },
    /// `googlemaps`: no Bluetooth, no scrambling codes, no SSIDs, never the IP.
    #[serde(rename_all = "camelCase")]
    GoogleMaps {
        /// Cell towers.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        cell_towers: Vec<CellEntry>,
        /// Always false: the provider must not locate this server's IP.
        consider_ip: bool,
        /// Wi-Fi access points.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        wifi_access_points: Vec<WifiEntry<'a>>,
    },
    /// `unwiredlabs`: short member names and the account token in the body.
    UnwiredLabs {
        /// Cells.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        cells: Vec<UnwiredCell>,
        /// `lacf` as resolved, `ipf` always false.
        fallbacks: FallbackFlags,
        /// The account token, when configured.
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<&'a str>,
        /// Wi-Fi access points.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        wifi: Vec<UnwiredWifi>,
    },
}

impl<'a> FallbackRequest<'a> {
    /// The body of `schema` for `query`.
    pub fn new(
        schema: FallbackSchema,
        query: &'a Query,
        token: Option<&'a str>,
    ) -> FallbackRequest<'a> {
        let fallbacks = FallbackFlags {
            ipf: false,
            lacf: query.fallbacks.lacf,
        };
        match schema {
            FallbackSchema::Ichnaea | FallbackSchema::Combain => FallbackRequest::Ichnaea {
                bluetooth_beacons: query.blue.iter().map(BlueEntry::from).collect(),
                cell_towers: query.cell.iter().map(|c| CellEntry::new(c, true)).collect(),
                fallbacks,
                wifi_access_points: query
                    .wifi
                    .iter()
                    .map(|w| WifiEntry::for_provider(w, true))
                    .collect(),
            },
            FallbackSchema::GoogleMaps => FallbackRequest::GoogleMaps {
                cell_towers: query
                    .cell
                    .iter()
                    .map(|c| CellEntry::new(c, false))
                    .collect(),
                consider_ip: false,
                wifi_access_points: query
                    .wifi
                    .iter()
                    .map(|w| WifiEntry::for_provider(w, false))
                    .collect(),
            },
            FallbackSchema::UnwiredLabs => FallbackRequest::UnwiredLabs {
                cells: query
                    .cell
                    .iter()
                    .map(|c| UnwiredCell {
                        cid: c.key.cid,
                        lac: c.key.lac,
                        mcc: c.key.mcc,
                        mnc: c.key.mnc,
                        psc: c.psc,
                        radio: c.key.radio.name(),
                        signal: c.signal_strength,
                        timing_advance: c.timing_advance,
                    })
                    .collect(),
                fallbacks,
                token,
                wifi: query
                    .wifi
                    .iter()
                    .map(|w| UnwiredWifi {
                        bssid: w.mac,
                        channel: w.channel,
                        frequency: w.frequency,
                        signal: w.signal_strength,
                        signal_to_noise_ratio: w.signal_to_noise_ratio,
                    })
                    .collect(),
            },
        }
    }
}
