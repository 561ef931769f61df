//! Cell and cell-area keys with their binary encodings.

use crate::radio::Radio;

/// Identity of one cell: radio, MCC, MNC, LAC/TAC and cell id.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    /// Radio technology (selects the table).
    pub radio: Radio,
    /// Mobile country code.
    pub mcc: u16,
    /// Mobile network code.
    pub mnc: u16,
    /// Location area code (GSM/WCDMA) or tracking area code (LTE/NR).
    pub lac: u32,
    /// Cell id (28 bits for LTE, 36 bits for NR).
    pub cid: u64,
}

/// Identity of a cell area: every cell sharing (radio, mcc, mnc, lac).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AreaKey {
    /// Radio technology.
    pub radio: Radio,
    /// Mobile country code.
    pub mcc: u16,
    /// Mobile network code.
    pub mnc: u16,
    /// Location/tracking area code.
    pub lac: u32,
}

/// A key that cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A component exceeds what the radio's encoding can hold.
    #[error("{field} {value} out of range for {radio}")]
    OutOfRange {
        /// Component name.
        field: &'static str,
        /// Offending value.
        value: u64,
        /// Radio whose encoding was asked for.
        radio: Radio,
    },
    /// Bytes of the wrong length or with an unknown radio code.
    #[error("malformed binary key of {0} bytes")]
    Malformed(usize),
}

/// Length of the binary cellid of gsm/wcdma/lte (the original's `BINARY(11)`).
pub const CELLID_LEN: usize = 11;
/// Length of the binary cellid of nr: radio, mcc, mnc, 32-bit tac, 64-bit cid.
pub const CELLID_NR_LEN: usize = 17;
/// Length of the binary areaid of gsm/wcdma/lte (`BINARY(7)`).
pub const AREAID_LEN: usize = 7;
/// Length of the binary areaid of nr (32-bit tac).
pub const AREAID_NR_LEN: usize = 9;

impl CellKey {
    /// Checks that every component fits the radio's binary encoding.
    pub fn check_encodable(&self) -> Result<(), KeyError> {
        let out = |field, value| KeyError::OutOfRange {
            field,
            value,
            radio: self.radio,
        };
        if u64::from(self.lac) > u64::from(self.radio.max_lac()) {
            return Err(out("lac", self.lac.into()));
        }
        if self.cid > self.radio.max_cid() {
            return Err(out("cid", self.cid));
        }
        Ok(())
    }

    /// The big-endian binary `cellid`: radio i8, mcc u16, mnc u16, then lac u16 and
    /// cid u32 (11 bytes, the original layout) or, for nr, tac u32 and cid u64
    /// (17 bytes). The area id is always a prefix of it.
    pub fn to_bytes(&self) -> Result<Vec<u8>, KeyError> {
        self.check_encodable()?;
        let mut out = self.area().to_bytes()?;
        match self.radio {
            Radio::Nr => out.extend_from_slice(&self.cid.to_be_bytes()),
            _ => out.extend_from_slice(&(self.cid as u32).to_be_bytes()),
        }
        Ok(out)
    }

    /// Decodes a binary `cellid`.
    pub fn from_bytes(bytes: &[u8]) -> Result<CellKey, KeyError> {
        let area = AreaKey::from_prefix(bytes)?;
        let rest = &bytes[area.encoded_len()..];
        let cid = match (area.radio, rest.len()) {
            (Radio::Nr, 8) => u64::from_be_bytes(
                rest.try_into()
                    .map_err(|_| KeyError::Malformed(bytes.len()))?,
            ),
            (Radio::Nr, _) => return Err(KeyError::Malformed(bytes.len())),
            (_, 4) => u64::from(u32::from_be_bytes(
                rest.try_into()
                    .map_err(|_| KeyError::Malformed(bytes.len()))?,
            )),
            _ => return Err(KeyError::Malformed(bytes.len())),
        };
        Ok(CellKey {
            radio: area.radio,
            mcc: area.mcc,
            mnc: area.mnc,
            lac: area.lac,
            cid,
        })
    }

    /// The area this cell belongs to.
    pub fn area(&self) -> AreaKey {
        AreaKey {
            radio: self.radio,
            mcc: self.mcc,
            mnc: self.mnc,
            lac: self.lac,
        }
    }
}

impl AreaKey {
    fn encoded_len(&self) -> usize {
        match self.radio {
            Radio::Nr => AREAID_NR_LEN,
            _ => AREAID_LEN,
        }
    }

    /// The big-endian binary `areaid` (7 bytes; 9 for nr).
    pub fn to_bytes(&self) -> Result<Vec<u8>, KeyError> {
        if self.lac > self.radio.max_lac() {
            return Err(KeyError::OutOfRange {
                field: "lac",
                value: self.lac.into(),
                radio: self.radio,
            });
        }
        let mut out = Vec::with_capacity(CELLID_NR_LEN);
        out.push(self.radio.code() as u8);
        out.extend_from_slice(&self.mcc.to_be_bytes());
        out.extend_from_slice(&self.mnc.to_be_bytes());
        match self.radio {
            Radio::Nr => out.extend_from_slice(&self.lac.to_be_bytes()),
            _ => out.extend_from_slice(&(self.lac as u16).to_be_bytes()),
        }
        Ok(out)
    }

    /// Decodes a binary `areaid` of exactly the right length.
    pub fn from_bytes(bytes: &[u8]) -> Result<AreaKey, KeyError> {
        let area = AreaKey::from_prefix(bytes)?;
        if bytes.len() != area.encoded_len() {
            return Err(KeyError::Malformed(bytes.len()));
        }
        Ok(area)
    }

    fn from_prefix(bytes: &[u8]) -> Result<AreaKey, KeyError> {
        let malformed = || KeyError::Malformed(bytes.len());
        let radio = bytes
            .first()
            .and_then(|c| Radio::from_code(i64::from(*c as i8)))
            .ok_or_else(malformed)?;
        let need = if radio == Radio::Nr {
            AREAID_NR_LEN
        } else {
            AREAID_LEN
        };
        if bytes.len() < need {
            return Err(malformed());
        }
        let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let lac = if radio == Radio::Nr {
            u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]])
        } else {
            u32::from(u16_at(5))
        };
        Ok(AreaKey {
            radio,
            mcc: u16_at(1),
            mnc: u16_at(3),
            lac,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn spec_examples() {
        let key = CellKey {
            radio: Radio::Lte,
            mcc: 262,
            mnc: 1,
            lac: 123,
            cid: 4567,
        };
        assert_eq!(
            hex(&key.to_bytes().unwrap()),
            "030106000100".to_string() + "7b000011d7"
        );
        let area = AreaKey {
            radio: Radio::Gsm,
            mcc: 310,
            mnc: 1,
            lac: 0,
        };
        assert_eq!(hex(&area.to_bytes().unwrap()), "00013600010000");
    }

    #[test]
    fn nr_keys_hold_36_bit_cells_and_24_bit_tacs() {
        let key = CellKey {
            radio: Radio::Nr,
            mcc: 999,
            mnc: 999,
            lac: (1 << 24) - 1,
            cid: (1 << 36) - 1,
        };
        let bytes = key.to_bytes().unwrap();
        assert_eq!(bytes.len(), CELLID_NR_LEN);
        assert_eq!(CellKey::from_bytes(&bytes).unwrap(), key);
        assert_eq!(
            &bytes[..AREAID_NR_LEN],
            key.area().to_bytes().unwrap().as_slice()
        );
        let too_big = CellKey {
            cid: 1 << 36,
            ..key
        };
        assert!(too_big.to_bytes().is_err());
        let lte_big = CellKey {
            radio: Radio::Lte,
            lac: 70000,
            ..key
        };
        assert!(lte_big.to_bytes().is_err());
    }

    #[test]
    fn round_trip_and_malformed() {
        let key = CellKey {
            radio: Radio::Wcdma,
            mcc: 1,
            mnc: 0,
            lac: 65535,
            cid: u32::MAX.into(),
        };
        let bytes = key.to_bytes().unwrap();
        assert_eq!(bytes.len(), CELLID_LEN);
        assert_eq!(CellKey::from_bytes(&bytes).unwrap(), key);
        assert!(CellKey::from_bytes(&bytes[..10]).is_err());
        assert!(CellKey::from_bytes(&[1u8; 11]).is_err(), "cdma code");
        assert_eq!(AreaKey::from_bytes(&bytes[..7]).unwrap(), key.area());
    }
}
