//! Renders every coverage tile of the data map into files (pipeline
//! §4.2.5 step 4): zooms 0–11 as 256-px tiles `tiles/<z>/<x>/<y>.png`, plus
//! the 512-px zoom-0 tile `tiles/0/0/0@2x.png`, on plain threads. The drawing
//! itself (an emulation of datamaps `render` and pngquant) is
//! `ichnaea_core::tiles::render`, shared with the live tiles of the web role.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub use ichnaea_core::tiles::render::{
    Canvas, MAX_ZOOM, TileJob, encode_png, jobs, render_indices, render_tile, render_tile_on,
};

use super::TilesError;

/// What a render run produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderStats {
    /// Tiles written (the @2x tile included).
    pub tile_count: u64,
    /// Their total size in bytes.
    pub tile_bytes: u64,
}

/// Renders every tile of `keys` into `<out>/tiles/…` on `threads` OS threads
/// (CPU-bound work: plain threads pulling jobs from a shared counter).
pub fn render_all(keys: &[u64], out: &Path, threads: usize) -> Result<RenderStats, TilesError> {
    let jobs = jobs(keys);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<TilesError>> = Mutex::new(None);
    let totals = Mutex::new(RenderStats::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut local = RenderStats::default();
                let mut canvas = Canvas::new();
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    match write_tile(&mut canvas, keys, job, out) {
                        Ok(Some(bytes)) => {
                            local.tile_count += 1;
                            local.tile_bytes += bytes;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            let mut slot = first_error
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            slot.get_or_insert(e);
                        }
                    }
                }
                let mut t = totals
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                t.tile_count += local.tile_count;
                t.tile_bytes += local.tile_bytes;
            });
        }
    });
    if let Some(e) = first_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }
    Ok(totals
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner))
}

fn write_tile(
    canvas: &mut Canvas,
    keys: &[u64],
    job: &TileJob,
    out: &Path,
) -> Result<Option<u64>, TilesError> {
    let Some(png) = render_tile_on(canvas, keys, job)? else {
        return Ok(None);
    };
    let path = out.join(job.relative_path());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| TilesError::io(dir, e))?;
    }
    std::fs::write(&path, &png).map_err(|e| TilesError::io(&path, e))?;
    Ok(Some(png.len() as u64))
}
