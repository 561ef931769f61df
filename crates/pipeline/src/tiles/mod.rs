//! Data-map tile generation (pipeline §4.2.5, website §6): the coverage
//! map's PNG tiles, made from the `datamap_*` tables without external tools.
//!
//! `create` reads the four tables page by page into sorted quadtree keys
//! (`points`), then renders zooms 0–11 and the 512-px zoom-0 tile in parallel
//! (`render`) into `<dir>/tiles/<z>/<x>/<y>.png`. `upload` syncs that folder to
//! the tile bucket and writes `tiles/data.json` (`sync`). Run by `ichnaea
//! datamap --create --upload` and by the scheduler's `datamap` task
//! ([`scheduled`]); the web role serves the coarse zooms from its output and
//! draws the others live.

pub mod points;
pub mod render;
pub mod sync;

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use ichnaea_store::Store;

pub use render::RenderStats;
pub use sync::{SyncStats, TileTarget};

/// Rows per page when reading a datamap table (the original's 200 000).
pub const PAGE_SIZE: usize = 200_000;

/// Why tile generation or upload failed.
#[derive(Debug, thiserror::Error)]
pub enum TilesError {
    /// Reading the datamap tables failed.
    #[error(transparent)]
    Store(#[from] ichnaea_store::StoreError),
    /// A local file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// PNG encoding failed.
    #[error("cannot encode a tile: {0}")]
    Png(#[from] png::EncodingError),
    /// The tile bucket refused or failed an operation.
    #[error("tile bucket: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// The tiles URL cannot be used.
    #[error("invalid tiles target: {0}")]
    Target(String),
    /// A worker task or thread died.
    #[error("tile worker failed: {0}")]
    Task(String),
}

impl TilesError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> TilesError {
        TilesError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What `create` did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CreateStats {
    /// Grid rows read.
    pub grid_rows: u64,
    /// Points emitted (the original's CSV lines).
    pub row_count: u64,
    /// Distinct points rendered.
    pub point_count: u64,
    /// Tiles written.
    pub tile_count: u64,
    /// Their total size in bytes.
    pub tile_bytes: u64,
    /// Seconds spent reading and sorting points.
    pub export_secs: f64,
    /// Seconds spent rendering and writing tiles.
    pub render_secs: f64,
}

/// Renders the tiles of every datamap row (as of `today`) into
/// `<dir>/tiles`, replacing what was there, on `threads` threads. With no
/// point at all nothing is rendered (and `<dir>/tiles` is left absent).
pub async fn create(
    store: &Store,
    dir: &Path,
    today: NaiveDate,
    threads: usize,
    page_size: usize,
) -> Result<CreateStats, TilesError> {
    let tiles = dir.join("tiles");
    if tiles.exists() {
        // Stale tiles would survive and never be deleted remotely.
        std::fs::remove_dir_all(&tiles).map_err(|e| TilesError::io(&tiles, e))?;
    }
    let started = Instant::now();
    let set = points::collect(store, today, page_size).await?;
    let mut stats = CreateStats {
        grid_rows: set.grid_rows,
        row_count: set.row_count,
        point_count: set.keys.len() as u64,
        export_secs: started.elapsed().as_secs_f64(),
        ..CreateStats::default()
    };
    if set.keys.is_empty() {
        return Ok(stats);
    }
    let started = Instant::now();
    let dir = dir.to_path_buf();
    let keys = set.keys;
    let rendered = tokio::task::spawn_blocking(move || render::render_all(&keys, &dir, threads))
        .await
        .map_err(|e| TilesError::Task(e.to_string()))??;
    stats.tile_count = rendered.tile_count;
    stats.tile_bytes = rendered.tile_bytes;
    stats.render_secs = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// Syncs `<dir>/tiles` to `target` (access checked first) with `workers`
/// uploads in flight, then writes `tiles/data.json` = `{"updated": <UTC ISO
/// time>}` plus `details` and the sync counts.
pub async fn upload(
    target: &TileTarget,
    dir: &Path,
    workers: usize,
    details: serde_json::Map<String, serde_json::Value>,
) -> Result<SyncStats, TilesError> {
    target.check_access().await?;
    let stats = sync::sync(target, dir, workers).await?;
    let mut data = serde_json::Map::new();
    data.insert(
        "updated".into(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
            .into(),
    );
    data.extend(details);
    for (key, value) in [
        ("tile_new", stats.tile_new),
        ("tile_changed", stats.tile_changed),
        ("tile_unchanged", stats.tile_unchanged),
        ("tile_deleted", stats.tile_deleted),
        ("tile_failed", stats.tile_failed),
    ] {
        data.insert(key.into(), value.into());
    }
    target
        .write_data_json(&serde_json::Value::Object(data))
        .await?;
    Ok(stats)
}

/// The scheduler's `datamap` task: renders every tile into `work_dir` on
/// `threads` threads and syncs them to `tiles_url` (nothing is uploaded when
/// there are no points, so an empty table never empties the bucket).
pub async fn scheduled(
    store: &Store,
    tiles_url: &str,
    work_dir: &Path,
    threads: usize,
) -> Result<(CreateStats, SyncStats), TilesError> {
    let today = chrono::Utc::now().date_naive();
    std::fs::create_dir_all(work_dir).map_err(|e| TilesError::io(work_dir, e))?;
    let created = create(store, work_dir, today, threads, PAGE_SIZE).await?;
    if created.point_count == 0 {
        return Ok((created, SyncStats::default()));
    }
    let target = TileTarget::open(tiles_url)?;
    let details = serde_json::Map::from_iter([
        ("row_count".to_string(), created.row_count.into()),
        ("tile_count".to_string(), created.tile_count.into()),
    ]);
    let synced = upload(&target, work_dir, 2 * threads.max(1), details).await?;
    Ok((created, synced))
}
