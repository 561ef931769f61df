//! Points of the data map as 64-bit Web-Mercator quadtree keys
//! (`ichnaea_core::tiles::keys`), read from the four `datamap_*` tables page
//! by page (pipeline §4.2.5 steps 1–3). 8 bytes per point, so 10 M grid
//! rows × 6 points take 480 MB at most, and nothing else is kept.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::NaiveDate;
use ichnaea_core::datamap::Quadrant;
use ichnaea_core::datamap_points::{MAX_POINTS, age_months, random_points};
use ichnaea_store::Store;

use super::TilesError;

pub use ichnaea_core::tiles::keys::{key, point_key, unkey, world_xy};

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
