//! Data-map tiles (spec pipeline §4.2.5): rendering from points, and
//! `create` + `upload` from the datamap tables to a `file://` bucket.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Days, NaiveDate};
use ichnaea_core::datamap::{DatamapGrid, Quadrant};
use ichnaea_pipeline::PipelineContext;
use ichnaea_pipeline::tiles::points::point_key;
use ichnaea_pipeline::tiles::render::{self, TileJob};
use ichnaea_pipeline::tiles::{self, TileTarget};

use super::{on_cluster, on_embedded, unique};

/// Slippy-map tile and pixel of a position, by the textbook formula (not the
/// renderer's integer code): (tile x, tile y, pixel x, pixel y).
fn slippy(lat: f64, lon: f64, z: u8, size: u32) -> (u32, u32, usize, usize) {
    let n = f64::from(1u32 << z);
    let fx = (lon + 180.0) / 360.0 * n;
    let lat = lat.to_radians();
    let fy = (1.0 - lat.tan().asinh() / std::f64::consts::PI) / 2.0 * n;
    let (tx, ty) = (fx.floor(), fy.floor());
    let px = ((fx - tx) * f64::from(size)).floor() as usize;
    let py = ((fy - ty) * f64::from(size)).floor() as usize;
    (tx as u32, ty as u32, px, py)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ichnaea-tiles-{name}-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file below `dir`, by path relative to it.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

const BERLIN: (f64, f64) = (52.516_3, 13.377_7);

#[test]
fn a_point_lights_its_pixel_at_zoom_0_and_11() {
    let keys = vec![point_key(BERLIN.0, BERLIN.1)];
    let jobs = render::jobs(&keys);
    assert_eq!(jobs.len(), 13, "one tile per zoom 0–11, plus 0/0/0@2x");
    for (z, size) in [(0u8, 256u32), (11, 256), (0, 512)] {
        let (tx, ty, px, py) = slippy(BERLIN.0, BERLIN.1, z, size);
        let job: &TileJob = jobs.iter().find(|j| j.z == z && j.size == size).unwrap();
        assert_eq!((job.x, job.y), (tx, ty), "zoom {z} tile");
        let s = size as usize;
        let indices = render::render_indices(&keys, job).unwrap();
        assert_eq!(indices.len(), s * s);
        assert!(indices[py * s + px] > 0, "zoom {z}: pixel ({px}, {py}) lit");
        let lit: Vec<usize> = (0..s * s).filter(|&i| indices[i] > 0).collect();
        assert!(
            !lit.is_empty() && lit.len() <= 4,
            "one dot, ≤ 4 pixels: {lit:?}"
        );
        for i in lit {
            let (x, y) = (i % s, i / s);
            assert!(
                x.abs_diff(px) <= 1 && y.abs_diff(py) <= 1,
                "({x}, {y}) near ({px}, {py})"
            );
        }
    }
    let z11 = jobs.iter().find(|j| j.z == 11).unwrap();
    assert_eq!(
        z11.relative_path(),
        PathBuf::from(format!("tiles/11/{}/{}.png", z11.x, z11.y))
    );
    assert_eq!(
        jobs.last().unwrap().relative_path(),
        PathBuf::from("tiles/0/0/0@2x.png")
    );
}

#[test]
fn tiles_are_indexed_pngs_with_transparency() {
    let keys: Vec<u64> = (0..50)
        .map(|i| point_key(BERLIN.0 + f64::from(i) * 0.0001, BERLIN.1))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let job = render::jobs(&keys).into_iter().find(|j| j.z == 11).unwrap();
    let png = render::render_tile(&keys, &job).unwrap().unwrap();
    let mut decoder = png::Decoder::new(std::io::Cursor::new(&png));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().unwrap();
    let info = reader.info();
    assert_eq!((info.width, info.height), (256, 256));
    assert_eq!(info.color_type, png::ColorType::Indexed);
    let palette = info.palette.as_ref().unwrap().to_vec();
    let trns = info.trns.as_ref().unwrap().to_vec();
    assert_eq!(palette.len(), 32 * 3);
    assert_eq!(trns[0], 0, "index 0 is transparent");
    assert_eq!(
        &palette[3..6],
        &[0x00, 0x88, 0xFF],
        "first level is #0088FF"
    );
    assert!(trns[1] > 0 && trns[1] < 255, "faint levels are translucent");
    assert_eq!(
        &palette[31 * 3..],
        &[0xFF, 0xFF, 0xFF],
        "oversaturated is white"
    );
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut buf).unwrap();
    assert_eq!(buf, render::render_indices(&keys, &job).unwrap());
    assert!(
        png.len() < 2_000,
        "a sparse tile stays small: {} bytes",
        png.len()
    );
}

#[test]
fn rendering_is_repeatable_and_skips_empty_tiles() {
    let places = [BERLIN, (-33.868_8, 151.209_3), (40.712_8, -74.006)];
    let mut keys: Vec<u64> = places
        .iter()
        .flat_map(|&(lat, lon)| {
            ichnaea_core::datamap_points::random_points(
                (lat * 1000.0).round() as i64,
                (lon * 1000.0).round() as i64,
                0,
            )
        })
        .map(|(lat, lon)| point_key(lat, lon))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let (a, b) = (temp_dir("repeat-a"), temp_dir("repeat-b"));
    let stats_a = render::render_all(&keys, &a, 2).unwrap();
    let stats_b = render::render_all(&keys, &b, 1).unwrap();
    assert_eq!(stats_a, stats_b);
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa, fb, "identical bytes whatever the thread count");
    assert_eq!(stats_a.tile_count, fa.len() as u64);
    // Zoom 11 holds exactly the tiles of the three places, nothing else.
    let mut want: Vec<String> = places
        .iter()
        .map(|&(lat, lon)| {
            let (x, y, _, _) = slippy(lat, lon, 11, 256);
            format!("tiles/11/{x}/{y}.png")
        })
        .collect();
    want.sort();
    let got: Vec<String> = fa
        .keys()
        .filter(|k| k.starts_with("tiles/11/"))
        .cloned()
        .collect();
    assert_eq!(got, want);
    assert!(fa.contains_key("tiles/0/0/0.png"));
    assert!(fa.contains_key("tiles/0/0/0@2x.png"));
    assert_eq!(fa.keys().filter(|k| k.starts_with("tiles/0/")).count(), 2);
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

fn grids_around(lat: f64, lon: f64, n: i32) -> Vec<DatamapGrid> {
    let base = DatamapGrid::from_position(lat, lon);
    (0..n)
        .flat_map(|i| {
            (0..n).map(move |j| DatamapGrid {
                lat: base.lat + 3 * i,
                lon: base.lon + 3 * j,
            })
        })
        .collect()
}

async fn create_and_upload_sync_a_file_bucket(ctx: PipelineContext) {
    let store = &ctx.store;
    let today = NaiveDate::from_ymd_opt(2024, 6, 30).unwrap();
    let berlin = grids_around(BERLIN.0, BERLIN.1, 10);
    let sydney = grids_around(-33.868_8, 151.209_3, 4);
    assert!(berlin.iter().all(|g| g.quadrant() == Quadrant::Ne));
    assert!(sydney.iter().all(|g| g.quadrant() == Quadrant::Se));
    store
        .touch_datamap(Quadrant::Ne, &berlin, today)
        .await
        .unwrap();
    // 20 days old: still 6 points each (num 1).
    store
        .touch_datamap(Quadrant::Se, &sydney, today - Days::new(20))
        .await
        .unwrap();
    let work = temp_dir("work");
    let bucket = temp_dir("bucket");
    let url = format!("file://{}/site/", bucket.display());
    let target = TileTarget::open(&url).unwrap();

    // Empty output directory first: the run must replace stale tiles.
    std::fs::create_dir_all(work.join("tiles/9/9")).unwrap();
    std::fs::write(work.join("tiles/9/9/9.png"), b"stale").unwrap();
    let stats = tiles::create(store, &work, today, 2, 7).await.unwrap();
    assert_eq!(stats.grid_rows, 116);
    assert_eq!(stats.row_count, 6 * 116);
    assert_eq!(stats.point_count, 6 * 116);
    let first = files(&work);
    assert_eq!(stats.tile_count, first.len() as u64);
    assert!(!first.contains_key("tiles/9/9/9.png"), "stale tile removed");
    assert!(first.contains_key("tiles/0/0/0@2x.png"));
    // Two places, distinct from zoom 1 on: 2 tiles at zoom 0, 2 per zoom at
    // 1–11 unless a place straddles a tile edge.
    assert!(stats.tile_count >= 2 + 2 * 11, "{}", stats.tile_count);

    let details = serde_json::Map::from_iter([("tile_count".to_string(), stats.tile_count.into())]);
    let run1 = tiles::upload(&target, &work, 4, details.clone())
        .await
        .unwrap();
    assert_eq!(run1.tile_new, stats.tile_count);
    assert_eq!(
        (
            run1.tile_changed,
            run1.tile_unchanged,
            run1.tile_deleted,
            run1.tile_failed
        ),
        (0, 0, 0, 0)
    );
    let remote_root = bucket.join("site");
    let remote = files(&remote_root);
    let data: serde_json::Value = serde_json::from_slice(&remote["tiles/data.json"]).unwrap();
    assert!(data["updated"].as_str().unwrap().starts_with("20"));
    assert_eq!(data["tile_new"], stats.tile_count);
    assert_eq!(data["tile_count"], stats.tile_count);
    let remote_tiles: BTreeMap<String, Vec<u8>> = remote
        .into_iter()
        .filter(|(k, _)| k.ends_with(".png"))
        .collect();
    assert_eq!(remote_tiles, first, "the bucket mirrors the tiles");
    assert!(
        !files(&bucket).keys().any(|k| k.contains("test-")),
        "access check object removed"
    );

    let run2 = tiles::upload(&target, &work, 4, details.clone())
        .await
        .unwrap();
    assert_eq!(run2.tile_unchanged, stats.tile_count);
    assert_eq!(
        (
            run2.tile_new,
            run2.tile_changed,
            run2.tile_deleted,
            run2.tile_failed
        ),
        (0, 0, 0, 0)
    );

    // Sydney's rows expire: its tiles must go, shared ones may change.
    assert_eq!(
        store
            .prune_datamap(Quadrant::Se, today - Days::new(10))
            .await
            .unwrap(),
        16
    );
    let stats2 = tiles::create(store, &work, today, 1, 200_000)
        .await
        .unwrap();
    assert_eq!(stats2.grid_rows, 100);
    let second = files(&work);
    let gone = first.keys().filter(|k| !second.contains_key(*k)).count() as u64;
    let added = second.keys().filter(|k| !first.contains_key(*k)).count() as u64;
    let changed = second
        .iter()
        .filter(|(k, v)| first.get(*k).is_some_and(|old| old != *v))
        .count() as u64;
    assert!(gone >= 11, "Sydney's tiles at zooms 1–11: {gone}");
    assert_eq!(added, 0);
    let run3 = tiles::upload(&target, &work, 4, details).await.unwrap();
    assert_eq!(run3.tile_deleted, gone);
    assert_eq!(run3.tile_new, 0);
    assert_eq!(run3.tile_changed, changed);
    assert_eq!(run3.tile_unchanged, stats2.tile_count - changed);
    assert_eq!(run3.tile_failed, 0);
    let remote_tiles: BTreeMap<String, Vec<u8>> = files(&remote_root)
        .into_iter()
        .filter(|(k, _)| k.ends_with(".png"))
        .collect();
    assert_eq!(remote_tiles, second);

    // No rows at all: no tiles (and nothing rendered).
    store
        .prune_datamap(Quadrant::Ne, today + Days::new(1))
        .await
        .unwrap();
    let empty = tiles::create(store, &work, today, 2, 50).await.unwrap();
    assert_eq!((empty.grid_rows, empty.tile_count), (0, 0));
    assert!(!work.join("tiles").exists());

    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&bucket);
}

backend_tests!(create_and_upload_sync_a_file_bucket);
