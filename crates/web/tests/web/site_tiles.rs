//! Live coverage tiles through the real router: drawing from the data-map
//! rows, the memory and disk caches, invalidation by data-map changes, and the
//! batch output for coarse zooms.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use chrono::Utc;
use ichnaea_core::datamap::DatamapGrid;
use ichnaea_core::datamap_points::{age_months, random_points};
use ichnaea_core::tiles::keys::{point_key, tile_of, world_xy};
use ichnaea_core::tiles::render::{jobs, render_tile};
use ichnaea_web::router;
use ichnaea_web::site::{ObjectDir, Site, SiteConfig, TileSettings};

use crate::site::{get, get_with, site_state};
use crate::{Fx, Reply, backend_tests};

const BERLIN: (f64, f64) = (52.5163, 13.3777);
const PARIS: (f64, f64) = (48.8566, 2.3522);
const SYDNEY: (f64, f64) = (-33.8688, 151.2093);

/// Tile settings of the tests: the change log read on every request.
fn settings() -> TileSettings {
    TileSettings {
        change_poll: Duration::ZERO,
        ..TileSettings::default()
    }
}

fn site_with(tiles: TileSettings) -> SiteConfig {
    SiteConfig {
        tiles,
        ..SiteConfig::default()
    }
}

/// The tile of zoom `z` holding a position, and the position's pixel in it.
fn tile_at(lat: f64, lon: f64, z: u8) -> (u32, u32, usize, usize) {
    let (wx, wy) = world_xy(lat, lon);
    let (x, y) = tile_of(wx, wy, z);
    let shift = 32 - u32::from(z) - 8;
    (
        x,
        y,
        ((wx >> shift) & 255) as usize,
        ((wy >> shift) & 255) as usize,
    )
}

/// Width, height and the alpha of every pixel.
fn alphas(png: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgba);
    let alpha = buf.chunks(4).map(|p| p[3]).collect();
    (info.width, info.height, alpha)
}

/// Whether a pixel within two of `(px, py)` is visible.
fn lit_near(alpha: &[u8], side: usize, px: usize, py: usize) -> bool {
    (py.saturating_sub(2)..(py + 3).min(side))
        .any(|y| (px.saturating_sub(2)..(px + 3).min(side)).any(|x| alpha[y * side + x] > 0))
}

async fn touch(fx: &Fx, places: &[(f64, f64)]) {
    let today = Utc::now().date_naive();
    for &(lat, lon) in places {
        let grid = DatamapGrid::from_position(lat, lon);
        fx.store
            .touch_datamap(grid.quadrant(), &[grid], today)
            .await
            .unwrap();
    }
}

async fn tile(app: &axum::Router, z: u8, x: u32, y: u32) -> Reply {
    let r = get(app, &format!("/tiles/{z}/{x}/{y}.png")).await;
    assert_eq!(r.status, StatusCode::OK, "{z}/{x}/{y}: {}", r.text_lossy());
    assert_eq!(r.header(header::CONTENT_TYPE), Some("image/png"));
    r
}

impl Reply {
    fn text_lossy(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn a_tile_without_data_is_a_transparent_cacheable_png(fx: Fx) {
    let app = router(site_state(&fx, site_with(settings())));
    for (z, x, y) in [(11, 1100, 671), (6, 34, 21)] {
        let r = tile(&app, z, x, y).await;
        assert_eq!(r.header(header::CACHE_CONTROL), Some("max-age=60, public"));
        let (w, h, alpha) = alphas(&r.body);
        assert_eq!((w, h), (256, 256));
        assert!(alpha.iter().all(|&a| a == 0));
        let etag = r.header(header::ETAG).unwrap().to_string();
        let again = get_with(
            &app,
            &format!("/tiles/{z}/{x}/{y}.png"),
            &[(header::IF_NONE_MATCH, &etag)],
        )
        .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    }
    let retina = get(&app, "/tiles/11/1100/671@2x.png").await;
    assert_eq!(retina.status, StatusCode::OK);
    assert_eq!(alphas(&retina.body).0, 512);
    for bad in [
        "/tiles/12/0/0.png",
        "/tiles/1/2/0.png",
        "/tiles/1/0/2.png",
        "/tiles/1/0/0.jpg",
        "/tiles/x/0/0.png",
        "/tiles/1/0/..%2F..%2Fetc.png",
    ] {
        assert_eq!(get(&app, bad).await.status, StatusCode::NOT_FOUND, "{bad}");
    }
}

async fn live_tiles_show_new_rows_and_keep_unrelated_tiles_cached(fx: Fx) {
    let state = site_state(&fx, site_with(settings()));
    let site = state.site.clone();
    let app = router(state);
    touch(&fx, &[PARIS]).await;
    let (bx, by, bpx, bpy) = tile_at(BERLIN.0, BERLIN.1, 11);
    let (px, py, ppx, ppy) = tile_at(PARIS.0, PARIS.1, 11);
    // Berlin has no data yet; Paris has.
    let before = tile(&app, 11, bx, by).await;
    assert!(alphas(&before.body).2.iter().all(|&a| a == 0));
    let paris = tile(&app, 11, px, py).await;
    assert!(lit_near(&alphas(&paris.body).2, 256, ppx, ppy), "Paris lit");
    assert_eq!(site.tile_renders(), 2);
    // Served again from memory: no render.
    assert_eq!(tile(&app, 11, bx, by).await.body, before.body);
    assert_eq!(site.tile_renders(), 2);

    // A contribution in Berlin: its tiles are redrawn, Paris' is not.
    touch(&fx, &[BERLIN]).await;
    let after = tile(&app, 11, bx, by).await;
    assert_eq!(site.tile_renders(), 3, "the changed tile was redrawn");
    let (_, _, alpha) = alphas(&after.body);
    assert!(
        lit_near(&alpha, 256, bpx, bpy),
        "Berlin lit at ({bpx}, {bpy})"
    );
    assert!(
        alpha[0] == 0 && alpha[255 * 256 + 255] == 0,
        "corners stay empty"
    );
    assert_ne!(after.header(header::ETAG), before.header(header::ETAG));
    assert_eq!(tile(&app, 11, px, py).await.body, paris.body);
    assert_eq!(site.tile_renders(), 3, "Paris came from the cache");
    // Coarser tiles over Berlin changed too.
    let (x6, y6, px6, py6) = tile_at(BERLIN.0, BERLIN.1, 6);
    let z6 = tile(&app, 6, x6, y6).await;
    assert!(lit_near(&alphas(&z6.body).2, 256, px6, py6));
    // Touching a grid again on the same day changes no row: no redraw.
    touch(&fx, &[BERLIN]).await;
    let renders = site.tile_renders();
    assert_eq!(tile(&app, 11, bx, by).await.body, after.body);
    assert_eq!(site.tile_renders(), renders);
}

async fn live_tiles_equal_the_batch_renderers(fx: Fx) {
    let places = [
        BERLIN,
        (BERLIN.0 + 0.01, BERLIN.1 + 0.02),
        (BERLIN.0 - 0.003, BERLIN.1 - 0.01),
        PARIS,
        SYDNEY,
    ];
    touch(&fx, &places).await;
    // What `ichnaea datamap` draws: every point, sorted, one run per tile.
    let today = Utc::now().date_naive();
    let mut keys: Vec<u64> = places
        .iter()
        .flat_map(|&(lat, lon)| {
            let g = DatamapGrid::from_position(lat, lon);
            random_points(i64::from(g.lat), i64::from(g.lon), age_months(today, today))
        })
        .map(|(lat, lon)| point_key(lat, lon))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let app = router(site_state(
        &fx,
        site_with(TileSettings {
            live_min_zoom: 0,
            ..settings()
        }),
    ));
    let mut compared = 0;
    for job in jobs(&keys) {
        let batch = render_tile(&keys, &job).unwrap();
        let path = if job.size == 512 {
            format!("/tiles/{}/{}/{}@2x.png", job.z, job.x, job.y)
        } else {
            format!("/tiles/{}/{}/{}.png", job.z, job.x, job.y)
        };
        let live = get(&app, &path).await;
        assert_eq!(live.status, StatusCode::OK);
        if let Some(batch) = batch {
            assert_eq!(live.body, batch, "{path}");
            compared += 1;
        }
    }
    assert!(compared >= 26, "zooms 0–11 of two areas: {compared}");
}

async fn the_disk_cache_outlives_the_process_until_the_rows_change(fx: Fx) {
    let dir =
        std::env::temp_dir().join(format!("ichnaea-tile-cache-{}", ichnaea_testkit::unique()));
    let with_disk = || {
        site_with(TileSettings {
            disk_dir: Some(dir.clone()),
            ..settings()
        })
    };
    touch(&fx, &[BERLIN]).await;
    let (bx, by, _, _) = tile_at(BERLIN.0, BERLIN.1, 11);
    let first = site_state(&fx, with_disk());
    let first_site = first.site.clone();
    let drawn = tile(&router(first), 11, bx, by).await;
    assert_eq!(first_site.tile_renders(), 1);
    assert!(dir.join(format!("11/{bx}/{by}.png")).is_file());

    // A new process (new memory) finds it on disk. (A change less than a few
    // minutes older than a cached tile makes a new process redraw it, to be
    // safe against clock skew; here the change log has been pruned, as if the
    // change were old.)
    fx.store
        .prune_datamap_tile_changes(Utc::now().timestamp_millis() + 1)
        .await
        .unwrap();
    let second = site_state(&fx, with_disk());
    let second_site = second.site.clone();
    let from_disk = tile(&router(second), 11, bx, by).await;
    assert_eq!(from_disk.body, drawn.body);
    assert_eq!(second_site.tile_renders(), 0);

    // After a change under the tile, the next process redraws it.
    touch(&fx, &[(BERLIN.0 + 0.002, BERLIN.1 + 0.002)]).await;
    let third = site_state(&fx, with_disk());
    let third_site = third.site.clone();
    let redrawn = tile(&router(third), 11, bx, by).await;
    assert_eq!(third_site.tile_renders(), 1);
    assert_ne!(redrawn.body, drawn.body);
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn coarse_zooms_and_dense_tiles_come_from_the_batch_output(fx: Fx) {
    let dir =
        std::env::temp_dir().join(format!("ichnaea-tile-batch-{}", ichnaea_testkit::unique()));
    let batch_tile = |z: u8, x: u32, y: u32| dir.join(format!("tiles/{z}/{x}/{y}.png"));
    // Any PNG stands for what `ichnaea datamap` wrote.
    let marker = {
        let job = jobs(&[point_key(BERLIN.0, BERLIN.1)])[0];
        render_tile(&[point_key(BERLIN.0, BERLIN.1)], &job)
            .unwrap()
            .unwrap()
    };
    let (x2, y2, _, _) = tile_at(BERLIN.0, BERLIN.1, 2);
    let (x9, y9, _, _) = tile_at(BERLIN.0, BERLIN.1, 9);
    for (z, x, y) in [(2, x2, y2), (9, x9, y9)] {
        std::fs::create_dir_all(batch_tile(z, x, y).parent().unwrap()).unwrap();
        std::fs::write(batch_tile(z, x, y), &marker).unwrap();
    }
    let batch = ObjectDir {
        store: Arc::new(object_store::local::LocalFileSystem::new()),
        prefix: dir.to_str().unwrap().trim_matches('/').to_string(),
        s3: false,
    };
    touch(
        &fx,
        // One zoom-9 tile, three zoom-11 tiles.
        &[
            BERLIN,
            (BERLIN.0, BERLIN.1 + 0.2),
            (BERLIN.0, BERLIN.1 + 0.4),
        ],
    )
    .await;
    let state = site_state(
        &fx,
        site_with(TileSettings {
            live_min_zoom: 5,
            live_max_rows: 2,
            batch: Some(batch),
            ..settings()
        }),
    );
    let site: Arc<Site> = state.site.clone();
    let app = router(state);
    // Zoom 2 is below the live zooms.
    assert_eq!(tile(&app, 2, x2, y2).await.body, marker);
    // A batch tile that does not exist is transparent.
    let missing = tile(&app, 2, 0, 0).await;
    assert!(alphas(&missing.body).2.iter().all(|&a| a == 0));
    assert_eq!(site.tile_renders(), 0);
    // Zoom 9 is live, but its three rows exceed the limit of two.
    assert_eq!(tile(&app, 9, x9, y9).await.body, marker);
    assert_eq!(site.tile_renders(), 0);
    // Zoom 11 over one row is drawn.
    let (x11, y11, _, _) = tile_at(BERLIN.0, BERLIN.1, 11);
    assert_ne!(tile(&app, 11, x11, y11).await.body, marker);
    assert_eq!(site.tile_renders(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

backend_tests!(
    a_tile_without_data_is_a_transparent_cacheable_png,
    live_tiles_show_new_rows_and_keep_unrelated_tiles_cached,
    live_tiles_equal_the_batch_renderers,
    the_disk_cache_outlives_the_process_until_the_rows_change,
    coarse_zooms_and_dense_tiles_come_from_the_batch_output,
);
