//! Radio types of cell networks.

use serde::{Deserialize, Serialize};

/// A cell radio technology with its own station table.
///
/// The stored integer codes of gsm/wcdma/lte are the original's (`cdma` = 1 is never
/// accepted and has no table); `nr` (5G New Radio) is new and takes the next code.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Radio {
    /// 2G GSM.
    Gsm,
    /// 3G UMTS/WCDMA.
    Wcdma,
    /// 4G LTE.
    Lte,
    /// 5G NR.
    Nr,
}

impl Radio {
    /// Every radio with a station table, in code order.
    pub const ALL: [Radio; 4] = [Radio::Gsm, Radio::Wcdma, Radio::Lte, Radio::Nr];

    /// Integer stored in the `radio` columns and in binary keys.
    pub fn code(self) -> i8 {
        match self {
            Radio::Gsm => 0,
            Radio::Wcdma => 2,
            Radio::Lte => 3,
            Radio::Nr => 4,
        }
    }

    /// Inverse of [`Radio::code`].
    pub fn from_code(code: i64) -> Option<Radio> {
        match code {
            0 => Some(Radio::Gsm),
            2 => Some(Radio::Wcdma),
            3 => Some(Radio::Lte),
            4 => Some(Radio::Nr),
            _ => None,
        }
    }

    /// Lower-case name as used in queue names, tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Radio::Gsm => "gsm",
            Radio::Wcdma => "wcdma",
            Radio::Lte => "lte",
            Radio::Nr => "nr",
        }
    }

    /// Parses a lower-case radio name.
    pub fn from_name(name: &str) -> Option<Radio> {
        Radio::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The station table of this radio (`cell_gsm`, …, `cell_nr`).
    pub fn cell_table(self) -> &'static str {
        match self {
            Radio::Gsm => "cell_gsm",
            Radio::Wcdma => "cell_wcdma",
            Radio::Lte => "cell_lte",
            Radio::Nr => "cell_nr",
        }
    }

    /// Largest location/tracking area code this radio's keys can carry.
    pub fn max_lac(self) -> u32 {
        match self {
            Radio::Nr => (1 << 24) - 1,
            _ => u16::MAX as u32,
        }
    }

    /// Largest cell id this radio's keys can carry.
    pub fn max_cid(self) -> u64 {
        match self {
            Radio::Nr => (1 << 36) - 1,
            _ => u32::MAX as u64,
        }
    }
}

impl std::fmt::Display for Radio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for r in Radio::ALL {
            assert_eq!(Radio::from_code(r.code().into()), Some(r));
            assert_eq!(Radio::from_name(r.name()), Some(r));
        }
        assert_eq!(Radio::from_code(1), None, "cdma has no table");
        assert_eq!(Radio::Nr.cell_table(), "cell_nr");
    }
}
