//! 48-bit MAC addresses of Wi-Fi access points and Bluetooth beacons.

use std::fmt;
use std::str::FromStr;

/// A MAC address, stored as its 6 raw bytes (`BINARY(6)` in the spec).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

/// Text that is not 12 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address: {0:?}")]
pub struct MacParseError(pub String);

impl Mac {
    /// The raw bytes, as stored in the `mac` column.
    pub fn bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Builds a MAC from stored bytes; `None` unless exactly 6 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Mac> {
        <[u8; 6]>::try_from(bytes).ok().map(Mac)
    }

    /// Shard of this MAC: the fifth hex digit (index 4) of its lower-case text form,
    /// i.e. the high nibble of the third byte. Selects `wifi_shard_<h>`,
    /// `blue_shard_<h>` and the matching `update_*_<h>` queues.
    pub fn shard(&self) -> u8 {
        self.0[2] >> 4
    }

    /// Parses exactly 12 hex digits, either case, no separators.
    pub fn from_hex(text: &str) -> Result<Mac, MacParseError> {
        let err = || MacParseError(text.to_string());
        if text.len() != 12 || !text.is_ascii() {
            return Err(err());
        }
        let mut out = [0u8; 6];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| err())?;
        }
        Ok(Mac(out))
    }
}

impl FromStr for Mac {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mac::from_hex(s)
    }
}

impl fmt::Display for Mac {
    /// 12 lower-case hex digits, the textual form of queues and exports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Lower-case hex digit naming a shard (`0`–`9`, `a`–`f`).
pub fn shard_suffix(shard: u8) -> char {
    char::from_digit(u32::from(shard & 0xf), 16).unwrap_or('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_is_fifth_hex_digit() {
        assert_eq!(Mac::from_hex("3680873e9b83").unwrap().shard(), 8);
        assert_eq!(Mac::from_hex("111101123456").unwrap().shard(), 0);
        assert_eq!(Mac::from_hex("0000f0123456").unwrap().shard(), 0xf);
        assert_eq!(shard_suffix(0xf), 'f');
        assert_eq!(shard_suffix(8), '8');
    }

    #[test]
    fn text_round_trip() {
        let m = Mac::from_hex("ABCDED123456").unwrap();
        assert_eq!(m.0, [0xab, 0xcd, 0xed, 0x12, 0x34, 0x56]);
        assert_eq!(m.to_string(), "abcded123456");
        assert!(Mac::from_hex("abcded12345").is_err());
        assert!(Mac::from_hex("abcded12345g").is_err());
        assert!(Mac::from_hex("ab:cd:ed:12:34:56").is_err());
    }
}
