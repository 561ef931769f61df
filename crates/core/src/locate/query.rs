//! Query normalisation (locate §1): fallback flags, MAC rules, field
//! ranges of WiFi / Bluetooth / cell entries, de-duplication, minimum counts,
//! cell → area lookups and the expected accuracy of a query.
//!
//! Input entries are *already coerced* by the HTTP layer (integers from JSON
//! integers, truncated floats, numeric strings or booleans; `null` is `None`).
//! Nothing here fails: bad values become `None`, bad entries are dropped.
//!
//! Sections (§) refer to docs/reference/locate.md.

use std::collections::HashMap;
use std::hash::Hash;

use crate::cell::{AreaKey, CellKey};
use crate::mac::Mac;
use crate::radio::Radio;
use crate::region;

use super::{
    EARTH_CIRCUMFERENCE, MAX_BLUES_IN_QUERY, MAX_CELLS_IN_QUERY, MAX_WIFIS_IN_QUERY,
    MIN_BLUES_IN_QUERY, MIN_WIFIS_IN_QUERY,
};

/// Which API asks: the expected accuracy differs (§1.10).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ApiType {
    /// `/v1/geolocate` (metric prefix `locate`).
    Locate,
    /// `/v1/country` (metric prefix `region`).
    Region,
}

impl ApiType {
    /// The metric prefix (`locate` / `region`).
    pub fn name(self) -> &'static str {
        match self {
            ApiType::Locate => "locate",
            ApiType::Region => "region",
        }
    }
}

/// Accuracy class of a result or of what a query can expect (§1.10); classes
/// order by value: `High < Medium < Low < None`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccuracyClass {
    /// ≤ 500 m.
    High,
    /// ≤ 50 km.
    Medium,
    /// ≤ 40 000 km.
    Low,
    /// Anything worse, or no accuracy.
    None,
}

impl AccuracyClass {
    /// The metres the class stands for (`None` is +∞).
    pub fn value(self) -> f64 {
        match self {
            AccuracyClass::High => 500.0,
            AccuracyClass::Medium => 50_000.0,
            AccuracyClass::Low => EARTH_CIRCUMFERENCE,
            AccuracyClass::None => f64::INFINITY,
        }
    }

    /// The class of an accuracy in metres; missing (or NaN) is `None`.
    pub fn from_number(accuracy: Option<f64>) -> AccuracyClass {
        match accuracy {
            Some(a) if a <= 500.0 => AccuracyClass::High,
            Some(a) if a <= 50_000.0 => AccuracyClass::Medium,
            Some(a) if a <= EARTH_CIRCUMFERENCE => AccuracyClass::Low,
            _ => AccuracyClass::None,
        }
    }

    /// Lower-case name used in metric tags.
    pub fn name(self) -> &'static str {
        match self {
            AccuracyClass::High => "high",
            AccuracyClass::Medium => "medium",
            AccuracyClass::Low => "low",
            AccuracyClass::None => "none",
        }
    }
}

/// The fallback flags of a query (§1.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Fallbacks {
    /// Cell-area (location area) fallback allowed.
    pub lacf: bool,
    /// GeoIP fallback allowed.
    pub ipf: bool,
}

impl Default for Fallbacks {
    fn default() -> Self {
        Self {
            lacf: true,
            ipf: true,
        }
    }
}

/// The members of a `fallbacks` object as the body had them (`None`: absent
/// or JSON `null`, both meaning true).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FallbackMembers {
    /// `fallbacks.lacf`, parsed with [`parse_flag`].
    pub lacf: Option<bool>,
    /// `fallbacks.ipf`, parsed with [`parse_flag`].
    pub ipf: Option<bool>,
}

impl Fallbacks {
    /// Resolves the flags from `considerIp` (`None`: absent or `null`) and the
    /// `fallbacks` object (`None`: no `fallbacks` member). A present
    /// `fallbacks` object, even `{}`, wins over `considerIp`.
    pub fn resolve(consider_ip: Option<bool>, fallbacks: Option<FallbackMembers>) -> Self {
        match fallbacks {
            None => Self {
                lacf: true,
                ipf: consider_ip.unwrap_or(true),
            },
            Some(members) => Self {
                lacf: members.lacf.unwrap_or(true),
                ipf: members.ipf.unwrap_or(true),
            },
        }
    }
}

/// The original's boolean parsing of `considerIp` and the `fallbacks` members:
/// `text` is the value stringified as Python would (`False`, `0`, `no`, …);
/// only `false` and `0` (any case) are false, **anything else is true**
/// [quirk].
pub fn parse_flag(text: &str) -> bool {
    !(text.eq_ignore_ascii_case("false") || text == "0")
}

/// Normalises a MAC (§1.2): removes `:`, `-` and `.` if any is present,
/// lower-cases, and accepts exactly 12 hex digits other than all zeros, all
/// ones and the documentation multicast address `01005e901000`.
/// Locally administered and other multicast addresses are accepted.
pub fn normalize_mac(text: &str) -> Option<Mac> {
    let cleaned: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect::<String>()
        .to_ascii_lowercase();
    if cleaned.len() != 12 || !cleaned.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if matches!(
        cleaned.as_str(),
        "000000000000" | "ffffffffffff" | "01005e901000"
    ) {
        return None;
    }
    Mac::from_hex(&cleaned).ok()
}

/// One raw `wifiAccessPoints` entry after type coercion.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WifiQuery {
    /// `macAddress` as sent.
    pub mac: String,
    /// `ssid`, carried along unchanged (not used for locating, §1.3).
    pub ssid: Option<String>,
    /// `age` in ms.
    pub age: Option<i64>,
    /// `channel`.
    pub channel: Option<i64>,
    /// `frequency` in MHz.
    pub frequency: Option<i64>,
    /// `signalStrength` in dBm.
    pub signal_strength: Option<i64>,
    /// `signalToNoiseRatio` in dB.
    pub signal_to_noise_ratio: Option<i64>,
}

/// One raw `bluetoothBeacons` entry after type coercion.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlueQuery {
    /// `macAddress` as sent.
    pub mac: String,
    /// `name`, carried along unchanged.
    pub name: Option<String>,
    /// `age` in ms.
    pub age: Option<i64>,
    /// `signalStrength` in dBm.
    pub signal_strength: Option<i64>,
}

/// One raw `cellTowers` entry after type coercion.
///
/// `radio` must already hold the entry's own `radioType`, or else the
/// top-level one (§1.6); the HTTP layer maps `cdma` (and a missing radio) to
/// `None` **after** that step, so a `cdma` entry is dropped even when the
/// top-level radio is valid.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CellQuery {
    /// Radio technology; `None` for missing or `cdma` (entry dropped).
    pub radio: Option<Radio>,
    /// `mobileCountryCode`.
    pub mcc: Option<i64>,
    /// `mobileNetworkCode`.
    pub mnc: Option<i64>,
    /// `locationAreaCode` (LAC/TAC).
    pub lac: Option<i64>,
    /// `cellId`.
    pub cid: Option<i64>,
    /// `primaryScramblingCode` (PSC / PCI). The body's `psc` alias never
    /// reaches locate (§1.6 quirk).
    pub psc: Option<i64>,
    /// `age` in ms.
    pub age: Option<i64>,
    /// `signalStrength` in dBm.
    pub signal_strength: Option<i64>,
    /// `timingAdvance`.
    pub timing_advance: Option<i64>,
}

/// Everything the normaliser needs from a request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryInput {
    /// Raw WiFi entries in request order.
    pub wifi: Vec<WifiQuery>,
    /// Raw Bluetooth entries in request order.
    pub blue: Vec<BlueQuery>,
    /// Raw cell entries in request order.
    pub cell: Vec<CellQuery>,
    /// Resolved fallback flags.
    pub fallbacks: Fallbacks,
    /// Whether the client IP parsed as an IPv4/IPv6 address (§1.9), whether or
    /// not GeoIP knows it.
    pub has_ip: bool,
}

/// A valid, de-duplicated WiFi lookup.
#[derive(Clone, Debug, PartialEq)]
pub struct WifiLookup {
    /// Normalised MAC (the station key).
    pub mac: Mac,
    /// SSID as sent.
    pub ssid: Option<String>,
    /// Age in ms (−3 600 000 … 3 600 000).
    pub age: Option<i64>,
    /// Channel (1 … 199), possibly completed from the frequency.
    pub channel: Option<i64>,
    /// Frequency (2 400 … 5 999), possibly completed from the channel.
    pub frequency: Option<i64>,
    /// Signal (−100 … −10 dBm).
    pub signal_strength: Option<i64>,
    /// Signal-to-noise ratio (1 … 100).
    pub signal_to_noise_ratio: Option<i64>,
}

/// A valid, de-duplicated Bluetooth lookup.
#[derive(Clone, Debug, PartialEq)]
pub struct BlueLookup {
    /// Normalised MAC (the station key).
    pub mac: Mac,
    /// Name as sent.
    pub name: Option<String>,
    /// Age in ms.
    pub age: Option<i64>,
    /// Signal (−127 … 0 dBm).
    pub signal_strength: Option<i64>,
}

/// A valid, de-duplicated cell lookup.
#[derive(Clone, Debug, PartialEq)]
pub struct CellLookup {
    /// Cell key (after the gsm → wcdma re-typing).
    pub key: CellKey,
    /// Primary scrambling code / physical cell id.
    pub psc: Option<i64>,
    /// Age in ms.
    pub age: Option<i64>,
    /// Signal in dBm, in the radio's range.
    pub signal_strength: Option<i64>,
    /// Timing advance (never for wcdma).
    pub timing_advance: Option<i64>,
}

/// A valid, de-duplicated cell-area lookup.
#[derive(Clone, Debug, PartialEq)]
pub struct AreaLookup {
    /// Area key (the entry's own radio: a gsm cell with a large cell id stays
    /// gsm here [quirk]).
    pub key: AreaKey,
    /// Age in ms.
    pub age: Option<i64>,
    /// Signal in dBm, in the radio's range.
    pub signal_strength: Option<i64>,
    /// Timing advance (never for wcdma).
    pub timing_advance: Option<i64>,
}

/// A normalised query (§1).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    /// WiFi lookups; empty unless at least 2 distinct valid networks.
    pub wifi: Vec<WifiLookup>,
    /// Bluetooth lookups; empty unless at least 2 distinct valid beacons.
    pub blue: Vec<BlueLookup>,
    /// Cell lookups.
    pub cell: Vec<CellLookup>,
    /// Cell-area lookups as sent, regardless of `lacf`; use
    /// [`Query::effective_areas`] for searching.
    pub area: Vec<AreaLookup>,
    /// Fallback flags.
    pub fallbacks: Fallbacks,
    /// Whether the query has a valid client IP.
    pub has_ip: bool,
}

impl Query {
    /// The cell-area lookups in effect: empty when `lacf` is false.
    pub fn effective_areas(&self) -> &[AreaLookup] {
        if self.fallbacks.lacf { &self.area } else { &[] }
    }

    /// Whether the internal source runs: any Bluetooth, WiFi, cell or
    /// effective cell-area lookup (§2.1).
    pub fn has_networks(&self) -> bool {
        !(self.blue.is_empty()
            && self.wifi.is_empty()
            && self.cell.is_empty()
            && self.effective_areas().is_empty())
    }

    /// Whether the external fallback may be asked by the query's contents:
    /// Bluetooth, cell or WiFi lookups — cell areas alone do not count (§2.1).
    pub fn fallback_eligible(&self) -> bool {
        !(self.blue.is_empty() && self.wifi.is_empty() && self.cell.is_empty())
    }

    /// Whether the GeoIP source runs: `ipf` and a valid client IP (§2.1).
    pub fn geoip_allowed(&self) -> bool {
        self.fallbacks.ipf && self.has_ip
    }

    /// `geoip_only` of §1.9: no networks at all and GeoIP found a record
    /// (`geoip_found`). Decides whether GeoIP results carry the `ipf` tag.
    pub fn geoip_only(&self, geoip_found: bool) -> bool {
        !self.has_networks() && geoip_found
    }

    /// The expected accuracy of the query (§1.10).
    pub fn expected_accuracy(&self, api: ApiType) -> AccuracyClass {
        let mut best = AccuracyClass::None;
        let mut consider = |class: AccuracyClass| best = best.min(class);
        match api {
            ApiType::Locate => {
                if !self.cell.is_empty() {
                    consider(AccuracyClass::Medium);
                }
                if !(self.blue.is_empty() && self.wifi.is_empty()) {
                    consider(AccuracyClass::High);
                }
            }
            ApiType::Region => {
                if !(self.blue.is_empty() && self.cell.is_empty() && self.wifi.is_empty()) {
                    consider(AccuracyClass::Low);
                }
            }
        }
        if (!self.effective_areas().is_empty() && self.fallbacks.lacf)
            || (self.has_ip && self.fallbacks.ipf)
        {
            consider(AccuracyClass::Low);
        }
        best
    }
}

/// Keeps `v` if it lies in `lo..=hi`.
fn in_range(v: Option<i64>, lo: i64, hi: i64) -> Option<i64> {
    v.filter(|x| (lo..=hi).contains(x))
}

/// Age range of every entry type (ms).
const MAX_AGE: i64 = 3_600_000;

/// Normalises one WiFi entry (§1.4); `None` drops it.
pub fn normalize_wifi(entry: &WifiQuery) -> Option<WifiLookup> {
    let mac = normalize_mac(&entry.mac)?;
    let mut channel = in_range(entry.channel, 1, 199);
    let mut frequency = in_range(entry.frequency, 2_400, 5_999);
    match (channel, frequency) {
        (Some(c), None) => {
            frequency = Some(match c {
                1..=13 => 5 * c + 2407,
                14 => 2484,
                15..=185 => 5 * c + 5000,
                _ => 5 * c + 4000,
            });
        }
        (None, Some(f)) => {
            channel = match f {
                2412..=2472 => Some((f - 2407) / 5),
                2484 => Some(14),
                4915..=4995 => Some((f - 4000) / 5),
                5075..=5925 => Some((f - 5000) / 5),
                _ => None,
            };
        }
        _ => {}
    }
    Some(WifiLookup {
        mac,
        ssid: entry.ssid.clone(),
        age: in_range(entry.age, -MAX_AGE, MAX_AGE),
        channel,
        frequency,
        signal_strength: in_range(entry.signal_strength, -100, -10),
        signal_to_noise_ratio: in_range(entry.signal_to_noise_ratio, 1, 100),
    })
}

/// Normalises one Bluetooth entry (§1.5); `None` drops it.
pub fn normalize_blue(entry: &BlueQuery) -> Option<BlueLookup> {
    Some(BlueLookup {
        mac: normalize_mac(&entry.mac)?,
        name: entry.name.clone(),
        age: in_range(entry.age, -MAX_AGE, MAX_AGE),
        signal_strength: in_range(entry.signal_strength, -127, 0),
    })
}

/// Key and field ranges of one radio. The spec predates 5G; `nr` uses the
/// 3GPP ranges that the submission pipeline uses too (24-bit TAC without the
/// reserved all-ones value, 36-bit NCI, PCI 0–1007, SS-RSRP −156…−31 dBm,
/// timing advance 0–3846).
struct Ranges {
    lac: (i64, i64),
    cid: (i64, i64),
    psc: (i64, i64),
    /// Overall signal bound and the radio's own range; both must hold.
    signal: [(i64, i64); 2],
    ta: Option<(i64, i64)>,
}

fn ranges(radio: Radio) -> Ranges {
    let legacy = |signal: (i64, i64), ta| Ranges {
        lac: (1, 65_533),
        cid: (1, 268_435_455),
        psc: (0, 511),
        signal: [(-140, -25), signal],
        ta,
    };
    match radio {
        Radio::Gsm => legacy((-113, -51), Some((0, 63))),
        Radio::Wcdma => legacy((-121, -25), None),
        Radio::Lte => legacy((-140, -43), Some((0, 63))),
        Radio::Nr => Ranges {
            lac: (1, (1 << 24) - 2),
            cid: (1, (1 << 36) - 1),
            psc: (0, 1007),
            signal: [(-156, -31), (-156, -31)],
            ta: Some((0, 3846)),
        },
    }
}

fn signal_in_range(signal: Option<i64>, r: &Ranges) -> Option<i64> {
    let [(a, b), (c, d)] = r.signal;
    in_range(in_range(signal, a, b), c, d)
}

fn ta_in_range(ta: Option<i64>, r: &Ranges) -> Option<i64> {
    r.ta.and_then(|(lo, hi)| in_range(ta, lo, hi))
}

fn valid_mcc(mcc: Option<i64>) -> Option<u16> {
    mcc.filter(|m| region::valid_mcc(*m))
        .and_then(|m| u16::try_from(m).ok())
}

/// Validates one cell entry as a cell lookup (§1.6); `None` drops it.
pub fn normalize_cell(entry: &CellQuery) -> Option<CellLookup> {
    let mut radio = entry.radio?;
    if radio == Radio::Gsm && entry.cid.is_some_and(|c| c > 65_535) {
        radio = Radio::Wcdma;
    }
    let r = ranges(radio);
    let mut psc = entry.psc;
    if radio == Radio::Lte && psc.is_some_and(|p| p > 503) {
        psc = None;
    }
    let mcc = valid_mcc(entry.mcc)?;
    let mnc = u16::try_from(in_range(entry.mnc, 0, 999)?).ok()?;
    let lac = u32::try_from(in_range(entry.lac, r.lac.0, r.lac.1)?).ok()?;
    let cid = u64::try_from(in_range(entry.cid, r.cid.0, r.cid.1)?).ok()?;
    Some(CellLookup {
        key: CellKey {
            radio,
            mcc,
            mnc,
            lac,
            cid,
        },
        psc: in_range(psc, r.psc.0, r.psc.1),
        age: in_range(entry.age, -MAX_AGE, MAX_AGE),
        signal_strength: signal_in_range(entry.signal_strength, &r),
        timing_advance: ta_in_range(entry.timing_advance, &r),
    })
}

/// Validates one cell entry as a cell-area lookup (§1.6; no cell id needed,
/// no gsm → wcdma re-typing); `None` drops it.
pub fn normalize_area(entry: &CellQuery) -> Option<AreaLookup> {
    let radio = entry.radio?;
    let r = ranges(radio);
    let mcc = valid_mcc(entry.mcc)?;
    let mnc = u16::try_from(in_range(entry.mnc, 0, 999)?).ok()?;
    let lac = u32::try_from(in_range(entry.lac, r.lac.0, r.lac.1)?).ok()?;
    Some(AreaLookup {
        key: AreaKey {
            radio,
            mcc,
            mnc,
            lac,
        },
        age: in_range(entry.age, -MAX_AGE, MAX_AGE),
        signal_strength: signal_in_range(entry.signal_strength, &r),
        timing_advance: ta_in_range(entry.timing_advance, &r),
    })
}

/// How two values of one comparison field compare.
#[derive(Copy, Clone)]
enum Better {
    Higher,
    Lower,
}

/// Whether `kept` is strictly better than `new` in at least one field where
/// both have a value (§1.7: not lexicographic [quirk]).
fn kept_wins(fields: &[(Option<i64>, Option<i64>, Better)]) -> bool {
    fields.iter().any(|(kept, new, better)| match (kept, new) {
        (Some(k), Some(n)) => match better {
            Better::Higher => k > n,
            Better::Lower => k < n,
        },
        _ => false,
    })
}

/// Entries de-duplicated by a linear scan; past this many, by a hash index.
const LINEAR_DEDUP_MAX: usize = 16;

/// Insertion-ordered de-duplication: a newcomer replaces the kept entry in
/// its slot unless the kept entry wins. Linear in the number of items (small
/// queries scan, large ones use a hash index).
fn dedup<T, K: Eq + Hash>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
    kept_is_better: impl Fn(&T, &T) -> bool,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    let mut index: Option<HashMap<K, usize>> = None;
    for item in items {
        let k = key(&item);
        let slot = match &index {
            Some(index) => index.get(&k).copied(),
            None => out.iter().position(|kept| key(kept) == k),
        };
        match slot {
            Some(i) => {
                if !kept_is_better(&out[i], &item) {
                    out[i] = item;
                }
            }
            None => {
                out.push(item);
                match &mut index {
                    Some(index) => {
                        index.insert(k, out.len() - 1);
                    }
                    None if out.len() > LINEAR_DEDUP_MAX => {
                        index = Some(out.iter().enumerate().map(|(i, t)| (key(t), i)).collect());
                    }
                    None => {}
                }
            }
        }
    }
    out
}

/// Keeps at most `max` entries: the strongest (`None` is weakest), ties and
/// the kept entries' order as in the query.
fn strongest<T>(items: &mut Vec<T>, max: usize, signal: impl Fn(&T) -> Option<i64>) {
    if items.len() <= max {
        return;
    }
    let mut ranked: Vec<usize> = (0..items.len()).collect();
    ranked.sort_by_key(|&i| std::cmp::Reverse(signal(&items[i]).unwrap_or(i64::MIN)));
    let mut keep = vec![false; items.len()];
    for &i in &ranked[..max] {
        keep[i] = true;
    }
    let mut flags = keep.into_iter();
    items.retain(|_| flags.next().unwrap_or(false));
}

/// Normalises a whole query (§1.2–§1.8).
pub fn normalize(input: &QueryInput) -> Query {
    let mut wifi = dedup(
        input.wifi.iter().filter_map(normalize_wifi),
        |w| w.mac,
        |k, n| {
            kept_wins(&[
                (k.signal_strength, n.signal_strength, Better::Higher),
                (
                    k.signal_to_noise_ratio,
                    n.signal_to_noise_ratio,
                    Better::Higher,
                ),
                (k.age, n.age, Better::Lower),
            ])
        },
    );
    strongest(&mut wifi, MAX_WIFIS_IN_QUERY, |w| w.signal_strength);
    if wifi.len() < MIN_WIFIS_IN_QUERY {
        wifi.clear();
    }
    let mut blue = dedup(
        input.blue.iter().filter_map(normalize_blue),
        |b| b.mac,
        |k, n| {
            kept_wins(&[
                (k.signal_strength, n.signal_strength, Better::Higher),
                (k.age, n.age, Better::Lower),
            ])
        },
    );
    strongest(&mut blue, MAX_BLUES_IN_QUERY, |b| b.signal_strength);
    if blue.len() < MIN_BLUES_IN_QUERY {
        blue.clear();
    }
    let mut cell = dedup(
        input.cell.iter().filter_map(normalize_cell),
        |c| c.key,
        |k, n| {
            kept_wins(&[
                (k.timing_advance, n.timing_advance, Better::Lower),
                (k.signal_strength, n.signal_strength, Better::Higher),
                (k.age, n.age, Better::Lower),
            ])
        },
    );
    strongest(&mut cell, MAX_CELLS_IN_QUERY, |c| c.signal_strength);
    let mut area = dedup(
        input.cell.iter().filter_map(normalize_area),
        |a| a.key,
        |k, n| {
            kept_wins(&[
                (k.timing_advance, n.timing_advance, Better::Lower),
                (k.signal_strength, n.signal_strength, Better::Higher),
                (k.age, n.age, Better::Lower),
            ])
        },
    );
    strongest(&mut area, MAX_CELLS_IN_QUERY, |a| a.signal_strength);
    Query {
        wifi,
        blue,
        cell,
        area,
        fallbacks: input.fallbacks,
        has_ip: input.has_ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wifi(mac: &str) -> WifiQuery {
        WifiQuery {
            mac: mac.into(),
            ..Default::default()
        }
    }

    fn gsm(mcc: i64, lac: i64, cid: i64) -> CellQuery {
        CellQuery {
            radio: Some(Radio::Gsm),
            mcc: Some(mcc),
            mnc: Some(1),
            lac: Some(lac),
            cid: Some(cid),
            ..Default::default()
        }
    }

    fn query(wifi: Vec<WifiQuery>, cell: Vec<CellQuery>) -> Query {
        normalize(&QueryInput {
            wifi,
            cell,
            ..Default::default()
        })
    }

    fn wifi_at(n: usize, signal: Option<i64>) -> WifiQuery {
        WifiQuery {
            signal_strength: signal,
            ..wifi(&format!("02{n:010x}"))
        }
    }

    #[test]
    fn large_queries_keep_the_strongest_distinct_networks() {
        // 40 networks, each sent twice, the second time stronger: the index
        // path (past 16 kept entries) merges them like the scan does.
        let twice: Vec<WifiQuery> = (0..40)
            .map(|n| wifi_at(n, Some(-90)))
            .chain((0..40).map(|n| wifi_at(n, Some(-50))))
            .collect();
        let q = query(twice, vec![]);
        assert_eq!(q.wifi.len(), 40);
        assert!(q.wifi.iter().all(|w| w.signal_strength == Some(-50)));
        assert_eq!(
            q.wifi[39].mac,
            Mac::from_hex(&format!("02{:010x}", 39)).unwrap()
        );

        // 150 distinct networks: the 100 strongest stay, in query order;
        // entries without a signal count as weakest.
        let many: Vec<WifiQuery> = (0..150)
            .map(|n| wifi_at(n, (n % 3 != 0).then(|| -100 + (n as i64 % 60))))
            .collect();
        let q = query(many.clone(), vec![]);
        assert_eq!(q.wifi.len(), MAX_WIFIS_IN_QUERY);
        let weakest_kept = q
            .wifi
            .iter()
            .filter_map(|w| w.signal_strength)
            .min()
            .unwrap();
        let dropped: Vec<&WifiQuery> = many
            .iter()
            .filter(|w| !q.wifi.iter().any(|k| Some(k.mac) == normalize_mac(&w.mac)))
            .collect();
        assert_eq!(dropped.len(), 50);
        assert!(
            dropped
                .iter()
                .all(|w| w.signal_strength.is_none_or(|s| s <= weakest_kept))
        );
        let positions: Vec<usize> = q
            .wifi
            .iter()
            .map(|k| {
                many.iter()
                    .position(|w| normalize_mac(&w.mac) == Some(k.mac))
                    .unwrap()
            })
            .collect();
        assert!(
            positions.windows(2).all(|p| p[0] < p[1]),
            "query order kept"
        );

        // 70 distinct cells: 50 stay, and as many areas as they span.
        let cells: Vec<CellQuery> = (0..70).map(|n| gsm(262, 1 + n % 60, 1 + n)).collect();
        let q = query(vec![], cells);
        assert_eq!(q.cell.len(), MAX_CELLS_IN_QUERY);
        assert_eq!(q.area.len(), MAX_CELLS_IN_QUERY);
    }

    #[test]
    fn fallback_flags() {
        assert_eq!(Fallbacks::resolve(None, None), Fallbacks::default());
        assert!(!Fallbacks::resolve(Some(false), None).ipf);
        // T-G3: a fallbacks object wins over considerIp.
        let f = Fallbacks::resolve(Some(false), Some(FallbackMembers::default()));
        assert!(f.ipf && f.lacf);
        let f = Fallbacks::resolve(
            None,
            Some(FallbackMembers {
                lacf: Some(false),
                ipf: None,
            }),
        );
        assert!(!f.lacf && f.ipf);
        assert!(!parse_flag("False") && !parse_flag("false") && !parse_flag("0"));
        assert!(parse_flag("no") && parse_flag("True") && parse_flag("0.0"));
    }

    #[test]
    fn mac_rules() {
        // T-N3
        let want = Mac::from_hex("0123456789ab").ok();
        for text in ["01:23:45:67:89:AB", "01-23-45-67-89-ab", "0123.4567.89ab"] {
            assert_eq!(normalize_mac(text), want, "{text}");
        }
        // T-N4
        for bad in [
            "000000000000",
            "ffffffffffff",
            "FF:FF:FF:FF:FF:FF",
            "01005e901000",
            "abcd",
            "0123456789abc",
            "01 23 45 67 89 ab",
            "",
            "0123456789ag",
        ] {
            assert_eq!(normalize_mac(bad), None, "{bad}");
        }
        assert!(
            normalize_mac("0a0000000000").is_some(),
            "locally administered"
        );
        assert!(normalize_mac("01005e000001").is_some(), "other multicast");
    }

    #[test]
    fn nomap_ssid_is_kept() {
        // T-N5
        let mut a = wifi("0123456789ab");
        a.ssid = Some("home_nomap".into());
        let q = query(vec![a, wifi("0123456789ac")], vec![]);
        assert_eq!(q.wifi.len(), 2);
        assert_eq!(q.wifi[0].ssid.as_deref(), Some("home_nomap"));
    }

    #[test]
    fn wifi_fields() {
        // T-N6
        for s in [-130, -5] {
            let w = normalize_wifi(&WifiQuery {
                signal_strength: Some(s),
                ..wifi("0123456789ab")
            });
            assert_eq!(w.map(|w| w.signal_strength), Some(None));
        }
        // T-N7 and §1.4 examples
        let cf = |c: Option<i64>, f: Option<i64>| {
            normalize_wifi(&WifiQuery {
                channel: c,
                frequency: f,
                ..wifi("0123456789ab")
            })
            .map(|w| (w.channel, w.frequency))
        };
        assert_eq!(cf(Some(1), None), Some((Some(1), Some(2412))));
        assert_eq!(cf(None, Some(2437)), Some((Some(6), Some(2437))));
        assert_eq!(cf(None, Some(4915)), Some((Some(183), Some(4915))));
        assert_eq!(cf(Some(200), None), Some((None, None)));
        assert_eq!(cf(Some(0), None), Some((None, None)));
        assert_eq!(cf(Some(36), None), Some((Some(36), Some(5180))));
        assert_eq!(cf(Some(186), None), Some((Some(186), Some(4930))));
        assert_eq!(cf(Some(14), None), Some((Some(14), Some(2484))));
        assert_eq!(cf(None, Some(2484)), Some((Some(14), Some(2484))));
        assert_eq!(cf(None, Some(5180)), Some((Some(36), Some(5180))));
        assert_eq!(cf(None, Some(5000)), Some((None, Some(5000))));
        assert_eq!(cf(Some(3), Some(2412)), Some((Some(3), Some(2412))));
        let w = normalize_wifi(&WifiQuery {
            age: Some(3_600_001),
            signal_to_noise_ratio: Some(0),
            ..wifi("0123456789ab")
        });
        assert_eq!(
            w.map(|w| (w.age, w.signal_to_noise_ratio)),
            Some((None, None))
        );
    }

    #[test]
    fn blue_fields() {
        let b = |s| {
            normalize_blue(&BlueQuery {
                mac: "0123456789ab".into(),
                signal_strength: Some(s),
                ..Default::default()
            })
            .and_then(|b| b.signal_strength)
        };
        assert_eq!(b(0), Some(0));
        assert_eq!(b(-127), Some(-127));
        assert_eq!(b(-128), None);
        assert_eq!(b(1), None);
    }

    #[test]
    fn wifi_dedup_and_minimum() {
        // T-N1: one network only → emptied.
        assert!(query(vec![wifi("0123456789ab")], vec![]).wifi.is_empty());
        // T-N2
        let sig = |s| WifiQuery {
            signal_strength: Some(s),
            ..wifi("0123456789ab")
        };
        let q = query(vec![sig(-90), sig(-82), sig(-85)], vec![]);
        assert!(
            q.wifi.is_empty(),
            "three entries of one MAC are one network"
        );
        let q = query(
            vec![sig(-90), sig(-82), wifi("0123456789ac"), sig(-85)],
            vec![],
        );
        assert_eq!(q.wifi.len(), 2);
        assert_eq!(q.wifi[0].signal_strength, Some(-82));
        assert_eq!(q.wifi[1].mac, Mac::from_hex("0123456789ac").unwrap());
        // §1.7 example: kept {−90, snr 30} vs new {−80, snr 10} → kept wins.
        let q = query(
            vec![
                WifiQuery {
                    signal_strength: Some(-90),
                    signal_to_noise_ratio: Some(30),
                    ..wifi("0123456789ab")
                },
                wifi("0123456789ac"),
                WifiQuery {
                    signal_strength: Some(-80),
                    signal_to_noise_ratio: Some(10),
                    ..wifi("01:23:45:67:89:AB")
                },
            ],
            vec![],
        );
        assert_eq!(q.wifi[0].signal_strength, Some(-90));
        // A newcomer without values replaces the kept entry.
        let q = query(
            vec![sig(-90), wifi("0123456789ac"), wifi("0123456789ab")],
            vec![],
        );
        assert_eq!(q.wifi[0].signal_strength, None);
    }

    #[test]
    fn cell_rules() {
        // T-N8: gsm with a large cid → wcdma cell lookup, gsm area lookup.
        let q = query(vec![], vec![gsm(234, 10, 70_000)]);
        assert_eq!(q.cell.len(), 1);
        assert_eq!(q.cell[0].key.radio, Radio::Wcdma);
        assert_eq!(q.area[0].key.radio, Radio::Gsm);
        // T-N9: LAC 0 → neither.
        let q = query(vec![], vec![gsm(234, 0, 1)]);
        assert!(q.cell.is_empty() && q.area.is_empty());
        // T-N10: cdma (radio None) dropped, gsm kept.
        let q = query(
            vec![],
            vec![
                CellQuery {
                    radio: None,
                    ..gsm(234, 10, 1)
                },
                gsm(234, 10, 2),
            ],
        );
        assert_eq!(q.cell.len(), 1);
        assert_eq!(q.cell[0].key.cid, 2);
        // T-N11
        let lte = normalize_cell(&CellQuery {
            radio: Some(Radio::Lte),
            psc: Some(504),
            ..gsm(234, 10, 1)
        });
        assert_eq!(lte.and_then(|c| c.psc), None);
        let lte = normalize_cell(&CellQuery {
            radio: Some(Radio::Lte),
            psc: Some(503),
            ..gsm(234, 10, 1)
        });
        assert_eq!(lte.and_then(|c| c.psc), Some(503));
        let wcdma = normalize_cell(&CellQuery {
            radio: Some(Radio::Wcdma),
            timing_advance: Some(3),
            psc: Some(511),
            ..gsm(234, 10, 1)
        });
        assert_eq!(
            wcdma.map(|c| (c.timing_advance, c.psc)),
            Some((None, Some(511)))
        );
        let g = normalize_cell(&CellQuery {
            signal_strength: Some(-40),
            timing_advance: Some(3),
            ..gsm(234, 10, 1)
        });
        assert_eq!(
            g.map(|c| (c.signal_strength, c.timing_advance)),
            Some((None, Some(3)))
        );
        // T-N13
        assert!(query(vec![], vec![gsm(999, 10, 1)]).cell.is_empty());
        assert!(query(vec![], vec![gsm(553, 10, 1)]).area.is_empty());
        // Ranges.
        assert!(normalize_cell(&gsm(234, 65_533, 268_435_455)).is_some());
        assert!(normalize_cell(&gsm(234, 65_534, 1)).is_none());
        assert!(normalize_cell(&gsm(234, 10, 268_435_456)).is_none());
        assert!(normalize_cell(&gsm(234, 10, 0)).is_none());
        assert!(
            normalize_cell(&CellQuery {
                mnc: Some(1000),
                ..gsm(234, 10, 1)
            })
            .is_none()
        );
        // Area lookups need no cell id.
        let q = query(
            vec![],
            vec![CellQuery {
                cid: None,
                ..gsm(235, 10, 1)
            }],
        );
        assert!(q.cell.is_empty());
        assert_eq!(q.area.len(), 1);
    }

    #[test]
    fn nr_cells() {
        let nr = |lac: i64, cid: i64, psc: i64| {
            normalize_cell(&CellQuery {
                radio: Some(Radio::Nr),
                psc: Some(psc),
                signal_strength: Some(-150),
                ..gsm(262, lac, cid)
            })
        };
        let c = nr((1 << 24) - 2, (1 << 36) - 1, 1007).expect("valid nr cell");
        assert_eq!(c.key.cid, (1 << 36) - 1);
        assert_eq!(c.psc, Some(1007));
        assert_eq!(c.signal_strength, Some(-150));
        assert!(nr((1 << 24) - 1, 1, 0).is_none());
        assert!(nr(1, 1 << 36, 0).is_none());
        assert_eq!(nr(1, 1, 1008).and_then(|c| c.psc), None);
    }

    #[test]
    fn cell_dedup() {
        let with = |ta, s| CellQuery {
            timing_advance: ta,
            signal_strength: s,
            ..gsm(234, 10, 1)
        };
        // Kept has lower TA (better), newcomer better signal → kept wins.
        let q = query(
            vec![],
            vec![with(Some(1), Some(-90)), with(Some(5), Some(-60))],
        );
        assert_eq!(q.cell.len(), 1);
        assert_eq!(q.cell[0].timing_advance, Some(1));
        let q = query(
            vec![],
            vec![with(None, Some(-90)), with(Some(5), Some(-60))],
        );
        assert_eq!(q.cell[0].timing_advance, Some(5));
    }

    #[test]
    fn expected_accuracy() {
        let mut q = Query::default();
        assert_eq!(q.expected_accuracy(ApiType::Locate), AccuracyClass::None);
        q.has_ip = true;
        assert_eq!(q.expected_accuracy(ApiType::Locate), AccuracyClass::Low);
        q.fallbacks.ipf = false;
        assert_eq!(q.expected_accuracy(ApiType::Locate), AccuracyClass::None);
        let q = query(vec![], vec![gsm(234, 10, 1)]);
        assert_eq!(q.expected_accuracy(ApiType::Locate), AccuracyClass::Medium);
        assert_eq!(q.expected_accuracy(ApiType::Region), AccuracyClass::Low);
        let q = query(vec![wifi("0123456789ab"), wifi("0123456789ac")], vec![]);
        assert_eq!(q.expected_accuracy(ApiType::Locate), AccuracyClass::High);
        assert_eq!(q.expected_accuracy(ApiType::Region), AccuracyClass::Low);
        let mut q = query(
            vec![],
            vec![CellQuery {
                cid: None,
                ..gsm(234, 10, 1)
            }],
        );
        assert_eq!(q.expected_accuracy(ApiType::Locate), AccuracyClass::Low);
        assert!(q.has_networks() && !q.fallback_eligible());
        q.fallbacks.lacf = false;
        assert_eq!(q.expected_accuracy(ApiType::Locate), AccuracyClass::None);
        assert!(!q.has_networks());
        assert!(q.geoip_only(true) && !q.geoip_only(false));
    }

    #[test]
    fn accuracy_classes() {
        assert_eq!(AccuracyClass::from_number(Some(500.0)), AccuracyClass::High);
        assert_eq!(
            AccuracyClass::from_number(Some(500.1)),
            AccuracyClass::Medium
        );
        assert_eq!(
            AccuracyClass::from_number(Some(50_000.0)),
            AccuracyClass::Medium
        );
        assert_eq!(
            AccuracyClass::from_number(Some(40_000_000.0)),
            AccuracyClass::Low
        );
        assert_eq!(
            AccuracyClass::from_number(Some(4e7 + 1.0)),
            AccuracyClass::None
        );
        assert_eq!(AccuracyClass::from_number(None), AccuracyClass::None);
        assert!(AccuracyClass::High < AccuracyClass::Medium);
        assert!(AccuracyClass::Low < AccuracyClass::None);
    }
}
