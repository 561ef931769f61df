//! Points of the data map as 64-bit Web-Mercator quadtree keys, read from the
//! four `datamap_*` tables page by page (spec pipeline §4.2.5 steps 1–3).
//!
//! A point is stored as the bit interleave (Morton / quadkey order, y bit
//! first) of its 32-bit world coordinates, like the datamaps quadtree at full
//! precision. Once the keys are sorted, the points of any tile of any zoom are
//! one contiguous run: its key prefix of 2·zoom bits. 8 bytes per point, so
//! 10 M grid rows × 6 points take 480 MB at most, and nothing else is kept.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::NaiveDate;
use ichnaea_core::datamap::Quadrant;
use ichnaea_core::datamap_points::{MAX_POINTS, age_months, random_points};
use ichnaea_store::Store;

use super::TilesError;

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

/// The sorted points of every data-map table, and what reading them cost.
#[derive(Debug, Default)]
pub struct PointSet {
    /// Quadtree keys, sorted, duplicates removed.
    pub keys: Vec<u64>,
    /// Grid rows read from the four tables.
    pub grid_rows: u64,
    /// Points emitted before duplicates were removed (the original's `row_count`,
    /// its number of CSV lines).
    pub row_count: u64,
}

/// Reads the four tables in parallel, `page_size` rows per query (keyset
/// pagination on `grid`), and turns every row into its points for `today`.
pub async fn collect(
    store: &Store,
    today: NaiveDate,
    page_size: usize,
) -> Result<PointSet, TilesError> {
    // Capacity for the most points the rows can yield: only the pages that are
    // written become resident, so the peak stays at the points actually made
    // and the vector never doubles (and copies) while it fills.
    let mut rows = 0;
    for quadrant in Quadrant::ALL {
        rows += store.datamap_count(quadrant).await?;
    }
    let capacity = usize::try_from(rows)
        .unwrap_or(usize::MAX)
        .saturating_mul(MAX_POINTS);
    let keys = Arc::new(Mutex::new(Vec::<u64>::with_capacity(capacity)));
    let mut tasks = tokio::task::JoinSet::new();
    for quadrant in Quadrant::ALL {
        let store = store.clone();
        let keys = Arc::clone(&keys);
        tasks.spawn(
            async move { read_table(&store, quadrant, today, page_size.max(1), &keys).await },
        );
    }
    let mut set = PointSet::default();
    while let Some(joined) = tasks.join_next().await {
        let (rows, points) = joined.map_err(|e| TilesError::Task(e.to_string()))??;
        set.grid_rows += rows;
        set.row_count += points;
    }
    let mut keys = std::mem::take(&mut *keys.lock().unwrap_or_else(PoisonError::into_inner));
    // Sorting is CPU work on up to hundreds of MB: keep it off the async workers.
    let keys = tokio::task::spawn_blocking(move || {
        keys.sort_unstable();
        // The original merged with `merge -u`: identical points count once.
        keys.dedup();
        keys
    })
    .await
    .map_err(|e| TilesError::Task(e.to_string()))?;
    set.keys = keys;
    Ok(set)
}

/// One table; returns (rows read, points emitted).
async fn read_table(
    store: &Store,
    quadrant: Quadrant,
    today: NaiveDate,
    page_size: usize,
    keys: &Mutex<Vec<u64>>,
) -> Result<(u64, u64), TilesError> {
    let mut after = None;
    let (mut rows, mut points) = (0u64, 0u64);
    let mut page_keys = Vec::new();
    loop {
        let page = store.datamap_page(quadrant, after, page_size).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.grid);
        rows += page.len() as u64;
        page_keys.clear();
        for row in &page {
            // A row without a modified day (never written so by the pipeline)
            // has no age, so no points.
            let Some(modified) = row.modified else {
                continue;
            };
            let num = age_months(modified, today);
            let (lat, lon) = (i64::from(row.grid.lat), i64::from(row.grid.lon));
            for (plat, plon) in random_points(lat, lon, num) {
                page_keys.push(point_key(plat, plon));
            }
        }
        points += page_keys.len() as u64;
        keys.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(&page_keys);
        if page.len() < page_size {
            break;
        }
    }
    Ok((rows, points))
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
}
