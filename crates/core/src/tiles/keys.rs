//! Web-Mercator quadtree keys of points: a point is the bit interleave
//! (Morton / quadkey order, y bit first) of its 32-bit world coordinates, like
//! the datamaps quadtree at full precision. Once keys are sorted, the points of
//! any tile of any zoom are one contiguous run: its key prefix of 2·zoom bits.

/// Web Mercator's latitude limit: the world is a square there.
const MAX_LAT: f64 = 85.051_128_779_806_59;

/// 32-bit world coordinates (x east, y south) of a position, clamped to the
/// Mercator square.
pub fn world_xy(lat: f64, lon: f64) -> (u32, u32) {
    let scale = 4_294_967_296.0; // 2^32
    let x = (lon + 180.0) / 360.0 * scale;
    let lat = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
    let y = (1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0 * scale;
    (clamp_u32(x), clamp_u32(y))
}

fn clamp_u32(v: f64) -> u32 {
    // `as` saturates; NaN (impossible for finite input) maps to 0.
    v.floor().clamp(0.0, f64::from(u32::MAX)) as u32
}

/// Spreads the 32 bits of `v` over the even bits of a u64.
fn spread(v: u32) -> u64 {
    let mut x = u64::from(v);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    x = (x | (x << 1)) & 0x5555_5555_5555_5555;
    x
}

/// Inverse of [`spread`].
fn compact(v: u64) -> u32 {
    let mut x = v & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x >> 16)) & 0x0000_0000_FFFF_FFFF;
    x as u32
}

/// The quadtree key of world coordinates (y bit above x bit at every level).
pub fn key(x: u32, y: u32) -> u64 {
    spread(x) | (spread(y) << 1)
}

/// World coordinates of a quadtree key.
pub fn unkey(key: u64) -> (u32, u32) {
    (compact(key), compact(key >> 1))
}

/// The quadtree key of a position.
pub fn point_key(lat: f64, lon: f64) -> u64 {
    let (x, y) = world_xy(lat, lon);
    key(x, y)
}

/// The tile of zoom `z` (0–32) containing world coordinates `(x, y)`.
pub fn tile_of(x: u32, y: u32, z: u8) -> (u32, u32) {
    if z == 0 {
        return (0, 0);
    }
    let shift = 32 - u32::from(z.min(32));
    (x >> shift, y >> shift)
}

/// Zoom at which data-map changes are recorded (the deepest rendered zoom):
/// a tile of a coarser zoom covers a contiguous range of these tiles' ids.
pub const CHANGE_ZOOM: u8 = 11;

/// The id of tile `(z, x, y)` (z ≤ 32): its 2·z quadtree key bits.
pub fn tile_id(z: u8, x: u32, y: u32) -> u64 {
    if z == 0 {
        return 0;
    }
    let shift = 32 - u32::from(z.min(32));
    key(x << shift, y << shift) >> (64 - 2 * u32::from(z.min(32)))
}

/// The ids of the [`CHANGE_ZOOM`] tiles that hold any part of tile `(z, x,
/// y)`, as an inclusive range (one id for deeper zooms: their ancestor).
pub fn change_range(z: u8, x: u32, y: u32) -> (u64, u64) {
    if z >= CHANGE_ZOOM {
        let up = u32::from(z - CHANGE_ZOOM);
        let id = tile_id(CHANGE_ZOOM, x >> up, y >> up);
        return (id, id);
    }
    let id = tile_id(z, x, y);
    let shift = 2 * u32::from(CHANGE_ZOOM - z);
    (id << shift, ((id + 1) << shift) - 1)
}

/// The [`CHANGE_ZOOM`] tile ids that the points of data-map grid cell
/// `(lat, lon)` (thousandths of a degree) can fall in: the points lie in
/// `[lat, lat + 1) × [lon, lon + 1)` thousandths, so a cell on a tile edge
/// touches up to four tiles.
pub fn grid_change_tiles(lat: i32, lon: i32) -> Vec<u64> {
    let (west, north) = world_xy(f64::from(lat + 1) / 1000.0, f64::from(lon) / 1000.0);
    let (east, south) = world_xy(f64::from(lat) / 1000.0, f64::from(lon + 1) / 1000.0);
    let (x0, y0) = tile_of(west, north, CHANGE_ZOOM);
    let (x1, y1) = tile_of(east, south, CHANGE_ZOOM);
    let mut out = Vec::with_capacity(4);
    for x in x0..=x1 {
        for y in y0..=y1 {
            out.push(tile_id(CHANGE_ZOOM, x, y));
        }
    }
    out
}

/// The bounds of tile `(z, x, y)` in degrees: (south, north, west, east).
pub fn tile_bounds(z: u8, x: u32, y: u32) -> (f64, f64, f64, f64) {
    let n = f64::from(1u32 << z.min(31));
    let lon = |x: f64| x / n * 360.0 - 180.0;
    let lat = |y: f64| {
        (std::f64::consts::PI * (1.0 - 2.0 * y / n))
            .sinh()
            .atan()
            .to_degrees()
    };
    (
        lat(f64::from(y) + 1.0),
        lat(f64::from(y)),
        lon(f64::from(x)),
        lon(f64::from(x) + 1.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_nest_by_zoom() {
        for (x, y) in [
            (0u32, 0u32),
            (u32::MAX, 0),
            (0x1234_5678, 0x9abc_def0),
            (u32::MAX, u32::MAX),
        ] {
            assert_eq!(unkey(key(x, y)), (x, y));
        }
        // Zoom-1 quadrant of a key is its top two bits: y then x.
        let (x, y) = world_xy(52.52, 13.40); // Berlin: north-east quadrant
        assert_eq!(key(x, y) >> 62, 0b01);
        let (x, y) = world_xy(-33.9, -70.6); // Santiago: south-west
        assert_eq!(key(x, y) >> 62, 0b10);
    }

    #[test]
    fn mercator_corners() {
        assert_eq!(world_xy(0.0, 0.0), (1 << 31, 1 << 31));
        assert_eq!(world_xy(90.0, -180.0), (0, 0));
        assert_eq!(world_xy(-90.0, 180.0), (u32::MAX, u32::MAX));
    }

    #[test]
    fn tile_ids_nest_by_zoom() {
        // Berlin at zoom 11 and its ancestors.
        let (wx, wy) = world_xy(52.52, 13.40);
        let (x, y) = tile_of(wx, wy, 11);
        assert_eq!((x, y), (1100, 671));
        let id = tile_id(11, x, y);
        assert_eq!(id, point_key(52.52, 13.40) >> 42);
        for z in 0..=11u8 {
            let (tx, ty) = tile_of(wx, wy, z);
            let (lo, hi) = change_range(z, tx, ty);
            assert!(lo <= id && id <= hi, "zoom {z}");
            assert_eq!(hi - lo + 1, 1 << (2 * (11 - z)), "zoom {z}");
        }
        let (tx, ty) = tile_of(wx, wy, 13);
        assert_eq!(change_range(13, tx, ty), (id, id));
    }

    #[test]
    fn grid_cells_on_tile_edges_touch_neighbours() {
        // A cell well inside a zoom-11 tile touches one tile.
        assert_eq!(grid_change_tiles(52_520, 13_400).len(), 1);
        // Lon 0 is a tile edge at every zoom: the cell west of it ends on it.
        let west = grid_change_tiles(10_000, -1);
        let east = grid_change_tiles(10_000, 0);
        assert_eq!(west.len(), 2, "[-0.001, 0] reaches the eastern tile");
        assert_eq!(east.len(), 1);
        assert!(west.contains(&east[0]));
    }

    #[test]
    fn bounds_of_tiles() {
        let (s, n, w, e) = tile_bounds(0, 0, 0);
        assert!((n - MAX_LAT).abs() < 1e-9 && (s + MAX_LAT).abs() < 1e-9);
        assert_eq!((w, e), (-180.0, 180.0));
        let (s, n, w, e) = tile_bounds(1, 1, 0);
        assert!(s.abs() < 1e-9 && (n - MAX_LAT).abs() < 1e-9);
        assert_eq!((w, e), (0.0, 180.0));
    }
}
