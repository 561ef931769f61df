//! The data-map grid: ~0.001° cells where data was contributed.

/// One grid cell, in scaled integer degrees (degrees × 1000).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatamapGrid {
    /// Latitude × 1000, rounded half-even.
    pub lat: i32,
    /// Longitude × 1000, rounded half-even.
    pub lon: i32,
}

/// The four datamap tables, split at 36° N and 5° E to balance populated land.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quadrant {
    /// North-east: `datamap_ne`.
    Ne,
    /// North-west: `datamap_nw`.
    Nw,
    /// South-east: `datamap_se`.
    Se,
    /// South-west: `datamap_sw`.
    Sw,
}

impl Quadrant {
    /// All four, in table-name order.
    pub const ALL: [Quadrant; 4] = [Quadrant::Ne, Quadrant::Nw, Quadrant::Se, Quadrant::Sw];

    /// Suffix used in the table and queue names.
    pub fn name(self) -> &'static str {
        match self {
            Quadrant::Ne => "ne",
            Quadrant::Nw => "nw",
            Quadrant::Se => "se",
            Quadrant::Sw => "sw",
        }
    }

    /// The table holding this quadrant's grids.
    pub fn table(self) -> &'static str {
        match self {
            Quadrant::Ne => "datamap_ne",
            Quadrant::Nw => "datamap_nw",
            Quadrant::Se => "datamap_se",
            Quadrant::Sw => "datamap_sw",
        }
    }
}

impl DatamapGrid {
    /// The grid cell containing a position.
    pub fn from_position(lat: f64, lon: f64) -> DatamapGrid {
        DatamapGrid {
            lat: (lat * 1000.0).round_ties_even() as i32,
            lon: (lon * 1000.0).round_ties_even() as i32,
        }
    }

    /// Which table the grid belongs to.
    pub fn quadrant(&self) -> Quadrant {
        match (self.lat < 36_000, self.lon < 5_000) {
            (false, false) => Quadrant::Ne,
            (false, true) => Quadrant::Nw,
            (true, false) => Quadrant::Se,
            (true, true) => Quadrant::Sw,
        }
    }

    /// The 8-byte big-endian key: u32 (lat + 90 000), u32 (lon + 180 000).
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&((self.lat + 90_000) as u32).to_be_bytes());
        out[4..].copy_from_slice(&((self.lon + 180_000) as u32).to_be_bytes());
        out
    }

    /// Decodes the 8-byte key; `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<DatamapGrid> {
        let b: [u8; 8] = bytes.try_into().ok()?;
        let lat = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64 - 90_000;
        let lon = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as i64 - 180_000;
        Some(DatamapGrid {
            lat: i32::try_from(lat).ok()?,
            lon: i32::try_from(lon).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_encoding_example() {
        let g = DatamapGrid {
            lat: 1235,
            lon: 2346,
        };
        assert_eq!(
            g.to_bytes(),
            [0x00, 0x01, 0x64, 0x63, 0x00, 0x02, 0xc8, 0x4a]
        );
        assert_eq!(DatamapGrid::from_bytes(&g.to_bytes()), Some(g));
    }

    #[test]
    fn quadrants_split_at_36n_5e() {
        assert_eq!(
            DatamapGrid::from_position(36.0, 5.0).quadrant(),
            Quadrant::Ne
        );
        assert_eq!(
            DatamapGrid::from_position(35.9999, 5.0).quadrant(),
            Quadrant::Ne,
            "rounds to 36000"
        );
        assert_eq!(
            DatamapGrid::from_position(35.99, 4.99).quadrant(),
            Quadrant::Sw
        );
        assert_eq!(
            DatamapGrid::from_position(52.5, -0.1).quadrant(),
            Quadrant::Nw
        );
        assert_eq!(
            DatamapGrid::from_position(-33.9, 151.2).quadrant(),
            Quadrant::Se
        );
        assert_eq!(
            DatamapGrid::from_position(0.0005, 0.0015),
            DatamapGrid { lat: 0, lon: 2 },
            "half-even"
        );
    }
}
