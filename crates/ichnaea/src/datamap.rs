//! `ichnaea datamap`: generates the coverage map's tiles from the datamap
//! tables and syncs them to the tile bucket (pipeline §4.2.5), the
//! original's `map` container; meant to be run daily by an external scheduler.
//!
//! Sections (§) refer to docs/reference/pipeline.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, CommandFactory};
use ichnaea_core::FieldError;
use ichnaea_pipeline::tiles::{self, CreateStats, SyncStats, TileTarget};

use crate::admin::InvalidInput;
use crate::cli::Cli;
use crate::config::Config;

/// Flags of `ichnaea datamap`.
#[derive(Debug, Args)]
pub struct DatamapArgs {
    /// Generate the tiles from the datamap tables.
    #[arg(long)]
    pub create: bool,
    /// Sync the tiles to the tile bucket (`tiles_url`) and write tiles/data.json.
    #[arg(long)]
    pub upload: bool,
    /// Working directory, kept afterwards (tiles in <DIR>/tiles); default: a
    /// temporary directory, deleted at the end.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Render threads (uploads in flight: twice as many), 1 to the number of
    /// usable CPUs; default: all of them.
    #[arg(long, value_parser = parse_concurrency)]
    pub concurrency: Option<usize>,
    /// Log each step, not only the summary.
    #[arg(short, long)]
    pub verbose: bool,
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// At least 1; more threads than usable CPUs only compete, so a larger value
/// is lowered to the CPU count (with a notice at run time).
fn parse_concurrency(text: &str) -> Result<usize, String> {
    let n: usize = text.parse().map_err(|e| format!("{e}"))?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

/// The tracing filter of the command: the summary line always, steps with -v.
pub fn log_level(args: &DatamapArgs) -> &'static str {
    if args.verbose {
        "ichnaea=debug,ichnaea_pipeline=debug,warn"
    } else {
        "ichnaea=info,warn"
    }
}

fn usage(field: &'static str, message: &str) -> anyhow::Error {
    InvalidInput(FieldError::new(field, message)).into()
}

/// Runs `ichnaea datamap` (flag rules of §4.2.5): no flag prints the
/// help; `--create` alone needs `--output`; `--upload` alone needs an
/// existing `<output>/tiles` (otherwise every remote tile would be deleted).
pub async fn run(config: &Config, args: DatamapArgs) -> anyhow::Result<()> {
    if !args.create && !args.upload {
        let help = Cli::command().try_get_matches_from(["ichnaea", "datamap", "--help"]);
        if let Err(e) = help {
            e.print()?;
        }
        return Ok(());
    }
    if args.create && !args.upload && args.output.is_none() {
        return Err(usage(
            "output",
            "--create without --upload needs --output: the tiles would be deleted",
        ));
    }
    if args.upload && !args.create {
        match &args.output {
            Some(dir) if dir.join("tiles").is_dir() => {}
            Some(dir) => {
                return Err(usage(
                    "output",
                    &format!(
                        "--upload without --create needs existing tiles in {}",
                        dir.join("tiles").display()
                    ),
                ));
            }
            None => {
                return Err(usage(
                    "output",
                    "--upload without --create needs --output with a tiles folder",
                ));
            }
        }
    }
    let concurrency = match args.concurrency {
        Some(n) if n > cpus() => {
            eprintln!("--concurrency {n}: using {} (the usable CPUs)", cpus());
            cpus()
        }
        Some(n) => n,
        None => cpus(),
    };
    let (dir, temporary) = match &args.output {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!(
                "ichnaea-datamap-{}-{}",
                std::process::id(),
                Utc::now().timestamp_nanos_opt().unwrap_or(0)
            )),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let started = Instant::now();
    let mut summary = Summary::default();
    let progress = crate::progress::Progress::spinner("datamap");
    let result = work(config, &args, &dir, concurrency, &mut summary, &progress).await;
    drop(progress);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let s = &summary;
    let (c, u) = (&s.create, &s.sync);
    tracing::info!(
        message = "canonical-log-line",
        create = args.create,
        upload = args.upload,
        concurrency,
        grid_rows = c.grid_rows,
        row_count = c.row_count,
        point_count = c.point_count,
        tile_count = c.tile_count,
        tile_bytes = c.tile_bytes,
        tile_new = u.tile_new,
        tile_changed = u.tile_changed,
        tiles_unchanged = u.tile_unchanged,
        tile_deleted = u.tile_deleted,
        tile_failed = u.tile_failed,
        export_secs = c.export_secs,
        render_secs = c.render_secs,
        upload_secs = s.upload_secs,
        duration_secs = started.elapsed().as_secs_f64(),
        success = result.is_ok(),
    );
    if result.is_ok() {
        println!(
            "{}",
            summary.line(args.create, args.upload, started.elapsed())
        );
    }
    result
}

/// What a run did, for the summary line.
#[derive(Default)]
struct Summary {
    create: CreateStats,
    sync: SyncStats,
    upload_secs: f64,
}

impl Summary {
    /// The one-line summary for people, e.g. `datamap: 300000 grid rows, 1234
    /// tiles (12.3 MB); uploaded 10 new, 3 changed, 1221 unchanged, 0 deleted
    /// in 33.0 s`.
    fn line(&self, create: bool, upload: bool, took: std::time::Duration) -> String {
        let (c, u) = (&self.create, &self.sync);
        let mut parts = Vec::new();
        if create {
            parts.push(format!(
                "{} grid rows, {} tiles ({:.1} MB)",
                c.grid_rows,
                c.tile_count,
                c.tile_bytes as f64 / 1e6
            ));
        }
        if upload {
            let failed = if u.tile_failed > 0 {
                format!(", {} FAILED", u.tile_failed)
            } else {
                String::new()
            };
            parts.push(format!(
                "uploaded {} new, {} changed, {} unchanged, {} deleted{failed}",
                u.tile_new, u.tile_changed, u.tile_unchanged, u.tile_deleted
            ));
        }
        format!(
            "datamap: {} in {:.1} s",
            parts.join("; "),
            took.as_secs_f64()
        )
    }
}

async fn work(
    config: &Config,
    args: &DatamapArgs,
    dir: &Path,
    concurrency: usize,
    summary: &mut Summary,
    progress: &crate::progress::Progress,
) -> anyhow::Result<()> {
    if args.create {
        progress.set_message("reading the data-map rows and drawing the tiles");
        let store = crate::serve::open_store(config).await?;
        let today = Utc::now().date_naive();
        let result = tiles::create(&store, dir, today, concurrency, tiles::PAGE_SIZE).await;
        store.close().await;
        summary.create = result?;
        tracing::debug!(
            grid_rows = summary.create.grid_rows,
            tile_count = summary.create.tile_count,
            "tiles rendered"
        );
        if summary.create.point_count == 0 {
            // Nothing to show: no tiles, and no upload that would empty the bucket.
            tracing::warn!("no data-map points: no tiles made, nothing uploaded");
            return Ok(());
        }
    }
    if args.upload {
        progress.set_message("uploading the tiles");
        let started = Instant::now();
        let url = config.tiles_url();
        let target = TileTarget::open(&url)?;
        let c = &summary.create;
        let details = serde_json::Map::from_iter([
            ("row_count".to_string(), c.row_count.into()),
            ("tile_count".to_string(), c.tile_count.into()),
        ]);
        summary.sync = tiles::upload(&target, dir, 2 * concurrency, details)
            .await
            .with_context(|| format!("upload to {url}"))?;
        summary.upload_secs = started.elapsed().as_secs_f64();
        tracing::debug!(target_url = %url, "tiles uploaded");
    }
    Ok(())
}

/// Benchmark aid (`ichnaea seed-datamap`): writes about `count` grid rows
/// around 300 random "cities" (spread ±~1°), last seen 0–364 days ago, into
/// the four datamap tables. Returns the rows written (duplicates merge).
pub async fn seed(store: &ichnaea_store::Store, count: usize, seed: u64) -> anyhow::Result<u64> {
    use std::collections::BTreeMap;

    use ichnaea_core::datamap::{DatamapGrid, Quadrant};

    let mut rng = fastrand::Rng::with_seed(seed);
    let cities: Vec<(f64, f64)> = (0..300)
        .map(|_| (rng.f64() * 115.0 - 50.0, rng.f64() * 360.0 - 180.0))
        .collect();
    let today = Utc::now().date_naive();
    let mut groups: BTreeMap<(Quadrant, u64), Vec<DatamapGrid>> = BTreeMap::new();
    for _ in 0..count {
        let (lat, lon) = cities[rng.usize(..cities.len())];
        // Sum of uniforms: denser in the centre, like a city and its roads.
        let spread = |rng: &mut fastrand::Rng| (rng.f64() + rng.f64() + rng.f64() - 1.5) * 0.7;
        let lat = (lat + spread(&mut rng)).clamp(-85.0, 85.0);
        let lon = (lon + spread(&mut rng) * 1.5).clamp(-180.0, 179.999);
        let grid = DatamapGrid::from_position(lat, lon);
        let age = rng.u64(..365);
        groups.entry((grid.quadrant(), age)).or_default().push(grid);
    }
    let mut written = 0;
    let progress = crate::progress::Progress::bar("seed-datamap", count as u64, "grids");
    let mut done = 0;
    for ((quadrant, age), grids) in groups {
        let day = today - chrono::Days::new(age);
        for chunk in grids.chunks(5_000) {
            written += store.touch_datamap(quadrant, chunk, day).await?;
            done += chunk.len() as u64;
            progress.set_position(done);
        }
    }
    Ok(written)
}
