//! Coverage tiles served live: `GET /tiles/{z}/{x}/{y}.png` (and `{y}@2x.png`)
//! draws a tile on demand from the `datamap_*` rows under it, with the same
//! renderer as the batch export (`ichnaea_core::tiles`), so both agree pixel
//! for pixel.
//!
//! Rendered tiles are kept in memory (bounded in bytes) and on disk. A cached
//! tile is used while it is from today (points fade by age in days) and no
//! change of the data-map rows under it has been seen since it was drawn: the
//! store logs every changed zoom-11 tile in `datamap_tile_change` in the
//! transaction that changes the rows, and each web process reads that log at
//! most every `change_poll`, noting when it first saw each change. A tile
//! drawn after a change was seen includes it; one drawn before is stale.
//!
//! Zooms below `live_min_zoom`, where one tile covers a large part of every
//! row, and live tiles that would read more than `live_max_rows` rows, come
//! from the batch output of `ichnaea datamap` (the scheduled `datamap` task).
//! A tile without data is a transparent PNG, answered 200 and cacheable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use ichnaea_core::datamap::Quadrant;
use ichnaea_core::datamap_points::{age_months, random_points};
use ichnaea_core::tiles::keys::{change_range, point_key, tile_bounds, tile_id};
use ichnaea_core::tiles::render::{Canvas, MAX_ZOOM, TileJob, encode_png, render_tile_on};
use ichnaea_store::{DatamapRow, GridBox, Store, StoreError};
use object_store::ObjectStoreExt;

use super::ObjectDir;
use super::assets::{conditional, etag_of};
use crate::SharedState;

/// How coverage tiles are rendered and cached.
#[derive(Clone, Debug)]
pub struct TileSettings {
    /// Coarsest zoom drawn live; coarser tiles come from the batch output.
    pub live_min_zoom: u8,
    /// Most data-map rows a live tile may read; a tile over it is taken from
    /// the batch output.
    pub live_max_rows: usize,
    /// Bytes of tiles kept in memory.
    pub memory_bytes: u64,
    /// Directory of the on-disk tile cache; `None` keeps tiles in memory only.
    pub disk_dir: Option<PathBuf>,
    /// The batch output (`tiles_url`; tiles under `tiles/`).
    pub batch: Option<ObjectDir>,
    /// How often the data-map change log is read (0: on every request).
    pub change_poll: Duration,
    /// Tiles drawn at once (each holds its rows' points in memory).
    pub concurrency: usize,
}

impl Default for TileSettings {
    fn default() -> Self {
        TileSettings {
            live_min_zoom: 5,
            live_max_rows: 500_000,
            memory_bytes: 64 * 1024 * 1024,
            disk_dir: None,
            batch: None,
            change_poll: Duration::from_secs(10),
            concurrency: 2,
        }
    }
}

/// Browsers may keep a tile this long before revalidating it (by ETag).
const TILE_MAX_AGE: u64 = 60;
/// Batch-output tiles are re-read after this long (the batch runs daily).
const BATCH_TTL: Duration = Duration::from_secs(600);
/// Changes are re-read this far back on every poll: writers' clocks and
/// commit order may disagree by that much.
const CHANGE_MARGIN_MS: i64 = 5 * 60 * 1000;

/// One tile of one size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TileKey {
    z: u8,
    x: u32,
    y: u32,
    /// The 512-px variant.
    retina: bool,
}

impl TileKey {
    fn size(&self) -> u32 {
        if self.retina { 512 } else { 256 }
    }

    fn file_name(&self) -> String {
        if self.retina {
            format!("{}@2x.png", self.y)
        } else {
            format!("{}.png", self.y)
        }
    }

    fn relative_path(&self) -> String {
        format!("{}/{}/{}", self.z, self.x, self.file_name())
    }
}

/// Where a served tile came from (the `tiles.request` metric's `source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// Drawn from the rows, now or earlier by this process.
    Live,
    /// The batch output (or a transparent tile where it has none).
    Batch,
}

/// A tile ready to serve.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    png: Bytes,
    etag: HeaderValue,
    /// When the rows it shows were read (live) or the file was fetched (batch).
    made: SystemTime,
    origin: Origin,
}

impl Entry {
    fn new(png: Bytes, made: SystemTime, origin: Origin) -> Entry {
        Entry {
            etag: etag_of(&png),
            png,
            made,
            origin,
        }
    }
}

/// When this process first saw a change of a zoom-11 tile.
#[derive(Clone, Copy, Debug)]
struct Seen {
    changed: i64,
    seen: SystemTime,
}

#[derive(Default)]
struct ChangeLog {
    /// Zoom-11 tile id → its latest change.
    tiles: BTreeMap<u64, Seen>,
    /// Largest `changed` read so far (epoch ms).
    latest: i64,
    /// Whether the log was read once (the first read dates changes by their
    /// own time, since this process saw none of them happen).
    loaded: bool,
}

/// Live tiles: settings, caches and the change log.
pub(crate) struct Tiles {
    settings: TileSettings,
    memory: moka::future::Cache<TileKey, Arc<Entry>>,
    changes: RwLock<ChangeLog>,
    /// One poll at a time; others go on with what is known.
    polling: tokio::sync::Mutex<Option<Instant>>,
    renders: AtomicU64,
    drawing: tokio::sync::Semaphore,
    empty: [Bytes; 2],
}

fn start_of(day: NaiveDate) -> SystemTime {
    let secs = day
        .and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp());
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

fn day_of(t: SystemTime) -> NaiveDate {
    DateTime::<Utc>::from(t).date_naive()
}

impl Tiles {
    pub fn new(settings: TileSettings) -> Tiles {
        let memory = moka::future::Cache::builder()
            .max_capacity(settings.memory_bytes.max(1))
            .weigher(|_: &TileKey, e: &Arc<Entry>| {
                u32::try_from(e.png.len() + 128).unwrap_or(u32::MAX)
            })
            .build();
        let empty = |size: u32| {
            let side = size as usize;
            Bytes::from(encode_png(&vec![0u8; side * side], size).unwrap_or_default())
        };
        Tiles {
            drawing: tokio::sync::Semaphore::new(settings.concurrency.max(1)),
            settings,
            memory,
            changes: RwLock::new(ChangeLog::default()),
            polling: tokio::sync::Mutex::new(None),
            renders: AtomicU64::new(0),
            empty: [empty(256), empty(512)],
        }
    }

    /// Live tiles drawn by this process.
    pub fn renders(&self) -> u64 {
        self.renders.load(Ordering::Relaxed)
    }

    fn empty_tile(&self, key: &TileKey) -> Bytes {
        self.empty[usize::from(key.retina)].clone()
    }

    /// Reads the change log if the last read is older than `change_poll`.
    async fn poll_changes(&self, store: &Store) {
        let Ok(mut last) = self.polling.try_lock() else {
            return; // Another request is reading it right now.
        };
        if last.is_some_and(|t| t.elapsed() < self.settings.change_poll) {
            return;
        }
        let (since, loaded) = {
            let log = self.changes.read().unwrap_or_else(|e| e.into_inner());
            (log.latest - CHANGE_MARGIN_MS, log.loaded)
        };
        let since = if loaded { since } else { 0 };
        match store.datamap_tile_changes(since).await {
            Ok(rows) => {
                let now = SystemTime::now();
                let today = start_of(Utc::now().date_naive());
                let mut log = self.changes.write().unwrap_or_else(|e| e.into_inner());
                for (tile, changed) in rows {
                    let seen = if log.loaded {
                        now
                    } else {
                        // Changes from before this process: a tile drawn
                        // (by an earlier process, on disk) well after a
                        // change's time, or after this read, includes it.
                        let ms = u64::try_from(changed + CHANGE_MARGIN_MS).unwrap_or(0);
                        (SystemTime::UNIX_EPOCH + Duration::from_millis(ms)).min(now)
                    };
                    log.latest = log.latest.max(changed);
                    match log.tiles.get(&tile) {
                        Some(s) if s.changed >= changed => {}
                        _ => {
                            log.tiles.insert(tile, Seen { changed, seen });
                        }
                    }
                }
                log.loaded = true;
                // Tiles from before today are stale anyway.
                log.tiles.retain(|_, s| s.seen >= today);
                *last = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the data-map change log; cached tiles may be stale");
                *last = Some(Instant::now());
            }
        }
    }

    /// When the latest change under `key` was seen, if any.
    fn last_change(&self, key: &TileKey) -> Option<SystemTime> {
        let (lo, hi) = change_range(key.z, key.x, key.y);
        let log = self.changes.read().unwrap_or_else(|e| e.into_inner());
        log.tiles.range(lo..=hi).map(|(_, s)| s.seen).max()
    }

    /// Whether a live tile drawn at `made` still shows the rows.
    fn fresh(&self, key: &TileKey, made: SystemTime) -> bool {
        day_of(made) == Utc::now().date_naive() && self.last_change(key).is_none_or(|c| c < made)
    }

    fn usable(&self, key: &TileKey, entry: &Entry) -> bool {
        match entry.origin {
            Origin::Live => self.fresh(key, entry.made),
            Origin::Batch => entry.made.elapsed().is_ok_and(|age| age < BATCH_TTL),
        }
    }

    fn disk_path(&self, key: &TileKey) -> Option<PathBuf> {
        self.settings.disk_dir.as_ref().map(|d| {
            d.join(key.z.to_string())
                .join(key.x.to_string())
                .join(key.file_name())
        })
    }

    /// A live tile from the disk cache, if it is still fresh.
    async fn read_disk(&self, key: &TileKey) -> Option<Entry> {
        let path = self.disk_path(key)?;
        let made = tokio::fs::metadata(&path).await.ok()?.modified().ok()?;
        if !self.fresh(key, made) {
            return None;
        }
        let png = tokio::fs::read(&path).await.ok()?;
        Some(Entry::new(Bytes::from(png), made, Origin::Live))
    }

    /// Writes a live tile to the disk cache, stamped with when its rows were
    /// read (a failure only costs a later render).
    async fn write_disk(&self, key: &TileKey, entry: &Entry) {
        let Some(path) = self.disk_path(key) else {
            return;
        };
        let png = entry.png.clone();
        let made = entry.made;
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let temporary = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&temporary, &png)?;
            std::fs::File::options()
                .write(true)
                .open(&temporary)?
                .set_modified(made)?;
            std::fs::rename(&temporary, &path)
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write a tile to the disk cache"),
            Err(e) => tracing::warn!(error = %e, "tile cache writer failed"),
        }
    }

    /// The rows whose points can fall into `key`'s tile; `None` when there are
    /// more than `live_max_rows`.
    async fn rows(
        &self,
        store: &Store,
        key: &TileKey,
    ) -> Result<Option<Vec<DatamapRow>>, StoreError> {
        let (south, north, west, east) = tile_bounds(key.z, key.x, key.y);
        // A row's points lie up to one grid cell north-east of it.
        let area = GridBox {
            lat_min: ((south * 1000.0).floor() as i32 - 1).max(-90_000),
            lat_max: ((north * 1000.0).floor() as i32 + 1).min(90_000),
            lon_min: ((west * 1000.0).floor() as i32 - 1).max(-180_000),
            lon_max: ((east * 1000.0).floor() as i32 + 1).min(180_000),
        };
        let cap = self.settings.live_max_rows;
        let mut rows = Vec::new();
        for quadrant in Quadrant::ALL {
            let Some(part) = clip(area, quadrant) else {
                continue;
            };
            let left = cap + 1 - rows.len();
            rows.extend(store.datamap_in_box(quadrant, part, left).await?);
            if rows.len() > cap {
                return Ok(None);
            }
        }
        Ok(Some(rows))
    }

    /// Draws `key` from the rows; `None` when it has too many rows.
    async fn draw(&self, store: &Store, key: TileKey) -> Result<Option<Entry>, StoreError> {
        // Taken before the rows are read: a change seen after this moment may
        // be missing from the drawing.
        let made = SystemTime::now();
        let today = Utc::now().date_naive();
        let Some(rows) = self.rows(store, &key).await? else {
            return Ok(None);
        };
        let empty = self.empty_tile(&key);
        let png = tokio::task::spawn_blocking(move || draw_rows(&rows, key, today))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "tile drawing failed");
                None
            })
            .unwrap_or(empty);
        self.renders.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tiles.render").increment(1);
        Ok(Some(Entry::new(png, made, Origin::Live)))
    }

    /// `key` from the batch output, or a transparent tile where it has none.
    async fn read_batch(&self, key: &TileKey) -> Entry {
        let made = SystemTime::now();
        let Some(batch) = &self.settings.batch else {
            return Entry::new(self.empty_tile(key), made, Origin::Batch);
        };
        let path = batch.path(&format!("tiles/{}", key.relative_path()));
        let png = match batch.store.get(&path).await {
            Ok(found) => match found.bytes().await {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(error = %e, tile = %key.relative_path(), "cannot read a batch tile");
                    self.empty_tile(key)
                }
            },
            Err(object_store::Error::NotFound { .. }) => self.empty_tile(key),
            Err(e) => {
                tracing::warn!(error = %e, tile = %key.relative_path(), "cannot read a batch tile");
                self.empty_tile(key)
            }
        };
        Entry::new(png, made, Origin::Batch)
    }

    /// The tile for `key`, from the cheapest place that has it fresh.
    async fn tile(&self, store: &Store, key: TileKey) -> Result<Arc<Entry>, StoreError> {
        self.poll_changes(store).await;
        if let Some(entry) = self.memory.get(&key).await
            && self.usable(&key, &entry)
        {
            count("memory");
            return Ok(entry);
        }
        let live = key.z >= self.settings.live_min_zoom || self.settings.batch.is_none();
        if live {
            if let Some(entry) = self.read_disk(&key).await {
                count("disk");
                let entry = Arc::new(entry);
                self.memory.insert(key, entry.clone()).await;
                return Ok(entry);
            }
            let _permit = self.drawing.acquire().await;
            // Drawn by another request while this one waited?
            if let Some(entry) = self.memory.get(&key).await
                && self.usable(&key, &entry)
            {
                count("memory");
                return Ok(entry);
            }
            if let Some(entry) = self.draw(store, key).await? {
                count("render");
                self.write_disk(&key, &entry).await;
                let entry = Arc::new(entry);
                self.memory.insert(key, entry.clone()).await;
                return Ok(entry);
            }
        }
        count("batch");
        let entry = Arc::new(self.read_batch(&key).await);
        self.memory.insert(key, entry.clone()).await;
        Ok(entry)
    }
}

fn count(source: &'static str) {
    metrics::counter!("tiles.request", "source" => source).increment(1);
}

/// The part of `area` in `quadrant`'s table (split at 36° N and 5° E).
fn clip(area: GridBox, quadrant: Quadrant) -> Option<GridBox> {
    let (north, east) = match quadrant {
        Quadrant::Ne => (true, true),
        Quadrant::Nw => (true, false),
        Quadrant::Se => (false, true),
        Quadrant::Sw => (false, false),
    };
    let (lat_min, lat_max) = if north {
        (area.lat_min.max(36_000), area.lat_max)
    } else {
        (area.lat_min, area.lat_max.min(35_999))
    };
    let (lon_min, lon_max) = if east {
        (area.lon_min.max(5_000), area.lon_max)
    } else {
        (area.lon_min, area.lon_max.min(4_999))
    };
    (lat_min <= lat_max && lon_min <= lon_max).then_some(GridBox {
        lat_min,
        lat_max,
        lon_min,
        lon_max,
    })
}

/// The PNG of `key` drawn from `rows` as of `today`; `None` when nothing is
/// visible (or encoding failed).
fn draw_rows(rows: &[DatamapRow], key: TileKey, today: NaiveDate) -> Option<Bytes> {
    let id = tile_id(key.z, key.x, key.y);
    let shift = 64 - 2 * u32::from(key.z);
    let mut keys: Vec<u64> = Vec::new();
    for row in rows {
        let Some(modified) = row.modified else {
            continue;
        };
        let num = age_months(modified, today);
        let (lat, lon) = (i64::from(row.grid.lat), i64::from(row.grid.lon));
        for (plat, plon) in random_points(lat, lon, num) {
            let k = point_key(plat, plon);
            if key.z == 0 || k >> shift == id {
                keys.push(k);
            }
        }
    }
    // The batch renderer's order: sorted, identical points once.
    keys.sort_unstable();
    keys.dedup();
    let job = TileJob {
        z: key.z,
        x: key.x,
        y: key.y,
        size: key.size(),
        start: 0,
        end: keys.len(),
    };
    match render_tile_on(&mut Canvas::new(), &keys, &job) {
        Ok(png) => png.map(Bytes::from),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a tile");
            None
        }
    }
}

/// Parses `{z}`, `{x}` and `{y}.png` / `{y}@2x.png`; `None` for anything else
/// or a tile outside the world.
fn parse_key(z: &str, x: &str, file: &str) -> Option<TileKey> {
    let z: u8 = z.parse().ok()?;
    let x: u32 = x.parse().ok()?;
    let stem = file.strip_suffix(".png")?;
    let (y, retina) = match stem.strip_suffix("@2x") {
        Some(y) => (y, true),
        None => (stem, false),
    };
    let y: u32 = y.parse().ok()?;
    let side = 1u64 << z.min(MAX_ZOOM);
    (z <= MAX_ZOOM && u64::from(x) < side && u64::from(y) < side).then_some(TileKey {
        z,
        x,
        y,
        retina,
    })
}

async fn tile(
    State(state): State<SharedState>,
    Path((z, x, file)): Path<(String, String, String)>,
    request: HeaderMap,
) -> Response {
    let Some(key) = parse_key(&z, &x, &file) else {
        return crate::service::not_found_page();
    };
    match state.site.tiles.tile(&state.store, key).await {
        Ok(entry) => {
            let mut response = conditional(&request, entry.png.clone(), "image/png", &entry.etag);
            super::cache_headers(&mut response, TILE_MAX_AGE, true);
            response
        }
        Err(e) => {
            tracing::error!(error = %e, tile = %key.relative_path(), "cannot draw a tile");
            let mut response = Response::new(axum::body::Body::empty());
            *response.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            response
        }
    }
}

pub(crate) fn routes() -> Router<SharedState> {
    Router::new().route("/tiles/{z}/{x}/{file}", get(tile))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths() {
        assert_eq!(
            parse_key("0", "0", "0@2x.png"),
            Some(TileKey {
                z: 0,
                x: 0,
                y: 0,
                retina: true
            })
        );
        assert_eq!(
            parse_key("11", "2047", "2047.png").map(|k| k.size()),
            Some(256)
        );
        for (z, x, f) in [
            ("12", "0", "0.png"),
            ("1", "2", "0.png"),
            ("1", "0", "2.png"),
            ("1", "0", "0.jpg"),
            ("1", "-1", "0.png"),
            ("a", "0", "0.png"),
            ("1", "0", "0@3x.png"),
            ("1", "0", "..png"),
        ] {
            assert_eq!(parse_key(z, x, f), None, "{z}/{x}/{f}");
        }
    }

    #[test]
    fn boxes_are_clipped_to_each_table() {
        let area = GridBox {
            lat_min: 35_000,
            lat_max: 37_000,
            lon_min: 4_000,
            lon_max: 6_000,
        };
        assert_eq!(
            clip(area, Quadrant::Ne),
            Some(GridBox {
                lat_min: 36_000,
                lat_max: 37_000,
                lon_min: 5_000,
                lon_max: 6_000
            })
        );
        assert_eq!(
            clip(area, Quadrant::Sw),
            Some(GridBox {
                lat_min: 35_000,
                lat_max: 35_999,
                lon_min: 4_000,
                lon_max: 4_999
            })
        );
        let north = GridBox {
            lat_min: 40_000,
            ..area
        };
        assert_eq!(clip(north, Quadrant::Se), None);
    }
}
