//! Data-map tiles (pipeline §4.2.5): rendering from points, and
//! `create` + `upload` from the datamap tables to a `file://` bucket.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;

use chrono::{Days, NaiveDate};
use ichnaea_core::datamap::{DatamapGrid, Quadrant};
use ichnaea_pipeline::PipelineContext;
use ichnaea_pipeline::tiles::points::point_key;
use ichnaea_pipeline::tiles::render::{self, TileJob};
use ichnaea_pipeline::tiles::{self, TileTarget};

use ichnaea_testkit::{TempDir, relative_files, serve};

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

/// Every file below `dir`, by path relative to it.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    relative_files(dir)
        .into_iter()
        .map(|rel| {
            let data = std::fs::read(dir.join(&rel)).unwrap();
            (rel, data)
        })
        .collect()
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
    let (a, b) = (
        TempDir::new("tiles-repeat-a"),
        TempDir::new("tiles-repeat-b"),
    );
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
    let work = TempDir::new("tiles-work");
    let bucket = TempDir::new("tiles-bucket");
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
}

/// The scheduler's `datamap` task: render and upload in one run; without
/// rows it leaves the bucket alone.
async fn the_scheduled_task_renders_and_uploads(ctx: PipelineContext) {
    let work = TempDir::new("scheduled-work");
    let bucket = TempDir::new("scheduled-bucket");
    let url = format!("file://{}", bucket.display());
    let (created, synced) = tiles::scheduled(&ctx.store, &url, &work, 1).await.unwrap();
    assert_eq!((created.grid_rows, synced.tile_new), (0, 0));
    assert!(!bucket.join("tiles").exists(), "nothing uploaded");

    let today = chrono::Utc::now().date_naive();
    ctx.store
        .touch_datamap(Quadrant::Ne, &grids_around(BERLIN.0, BERLIN.1, 3), today)
        .await
        .unwrap();
    let (created, synced) = tiles::scheduled(&ctx.store, &url, &work, 1).await.unwrap();
    assert_eq!(created.grid_rows, 9);
    assert_eq!(synced.tile_new, created.tile_count);
    let remote = files(&bucket);
    assert!(remote.contains_key("tiles/0/0/0.png"));
    assert!(remote.contains_key("tiles/0/0/0@2x.png"));
    assert!(remote.contains_key("tiles/data.json"));
}

backend_tests!(
    create_and_upload_sync_a_file_bucket,
    the_scheduled_task_renders_and_uploads
);

/// A minimal S3 on loopback: PUT, DELETE, ListObjectsV2 and multi-object
/// delete over one bucket, with MD5 ETags as real S3 gives single-part uploads.
/// Stored objects: key → (body, PUT headers).
type Objects = BTreeMap<String, (Vec<u8>, HeaderMap)>;

#[derive(Clone, Default)]
struct FakeS3 {
    objects: Arc<Mutex<Objects>>,
    requests: Arc<Mutex<Vec<(Method, String)>>>,
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

async fn fake_s3(
    State(s3): State<FakeS3>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let key = percent_decode(
        uri.path()
            .trim_start_matches("/bucket")
            .trim_start_matches('/'),
    );
    let query = uri.query().unwrap_or("").to_string();
    s3.requests
        .lock()
        .unwrap()
        .push((method.clone(), format!("{key}?{query}")));
    let mut objects = s3.objects.lock().unwrap();
    match method {
        Method::PUT => {
            let etag = format!("\"{}\"", md5_hex(&body));
            objects.insert(key, (body.to_vec(), headers));
            (StatusCode::OK, [("etag", etag)]).into_response()
        }
        Method::DELETE => {
            objects.remove(&key);
            StatusCode::NO_CONTENT.into_response()
        }
        Method::POST if query.contains("delete") => {
            let text = String::from_utf8_lossy(&body);
            let mut xml = String::from("<DeleteResult>");
            for part in text.split("<Key>").skip(1) {
                let k = part.split("</Key>").next().unwrap().to_string();
                objects.remove(&k);
                xml.push_str(&format!("<Deleted><Key>{k}</Key></Deleted>"));
            }
            xml.push_str("</DeleteResult>");
            (StatusCode::OK, xml).into_response()
        }
        Method::GET if key.is_empty() => {
            let prefix = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("prefix="))
                .map(percent_decode)
                .unwrap_or_default();
            let mut xml = String::from("<ListBucketResult>");
            for (k, (data, _)) in objects.range(prefix.clone()..) {
                if !k.starts_with(&prefix) {
                    break;
                }
                xml.push_str(&format!(
                    "<Contents><Key>{k}</Key><Size>{}</Size>\
                     <LastModified>2024-06-30T00:00:00.000Z</LastModified>\
                     <ETag>&quot;{}&quot;</ETag></Contents>",
                    data.len(),
                    md5_hex(data)
                ));
            }
            xml.push_str("</ListBucketResult>");
            (StatusCode::OK, xml).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

#[tokio::test]
async fn upload_to_s3_compares_etags_and_deletes_orphans() {
    let s3 = FakeS3::default();
    let endpoint = serve(Router::new().fallback(fake_s3).with_state(s3.clone())).await;
    ichnaea_pipeline::export::geosubmit::install_crypto_provider();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("bucket")
        .with_region("us-east-1")
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    let target = TileTarget::with_store(Arc::new(store), "/public/", true);

    let work = TempDir::new("tiles-s3");
    let keys = vec![point_key(BERLIN.0, BERLIN.1)];
    let rendered = render::render_all(&keys, &work, 2).unwrap();
    assert_eq!(rendered.tile_count, 13);
    let local = files(&work);

    let run1 = tiles::upload(&target, &work, 4, serde_json::Map::new())
        .await
        .unwrap();
    assert_eq!((run1.tile_new, run1.tile_unchanged), (13, 0));
    {
        let objects = s3.objects.lock().unwrap();
        let pngs: Vec<&String> = objects.keys().filter(|k| k.ends_with(".png")).collect();
        assert_eq!(pngs.len(), 13);
        let (body, headers) = &objects["public/tiles/0/0/0@2x.png"];
        assert_eq!(body, &local["tiles/0/0/0@2x.png"]);
        assert_eq!(headers["content-type"], "image/png");
        assert_eq!(headers["cache-control"], "max-age=3600, public");
        let (data, headers) = &objects["public/tiles/data.json"];
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["cache-control"], "max-age=3600, public");
        let data: serde_json::Value = serde_json::from_slice(data).unwrap();
        assert_eq!(data["tile_new"], 13);
        assert!(
            !objects.keys().any(|k| k.contains("test-")),
            "access probe removed"
        );
    }
    assert!(
        s3.requests
            .lock()
            .unwrap()
            .iter()
            .any(|(m, p)| *m == Method::PUT && p.starts_with("public/test-")),
        "access checked with a test object"
    );

    // Same bytes: unchanged by ETag, no PUT of a tile.
    s3.requests.lock().unwrap().clear();
    let run2 = tiles::upload(&target, &work, 4, serde_json::Map::new())
        .await
        .unwrap();
    assert_eq!(
        (run2.tile_new, run2.tile_changed, run2.tile_unchanged),
        (0, 0, 13)
    );
    assert!(
        !s3.requests
            .lock()
            .unwrap()
            .iter()
            .any(|(m, p)| *m == Method::PUT && p.ends_with(".png?")),
        "no tile re-sent"
    );

    // A remote tile of the same size but other bytes, an orphan, and a
    // non-tile object under tiles/.
    {
        let mut objects = s3.objects.lock().unwrap();
        let z11 = render::jobs(&keys).into_iter().find(|j| j.z == 11).unwrap();
        let key = format!("public/tiles/11/{}/{}.png", z11.x, z11.y);
        let body = &mut objects.get_mut(&key).unwrap().0;
        let last = body.len() - 1;
        body[last] ^= 0xff;
        objects.insert(
            "public/tiles/5/1/1.png".into(),
            (b"old".to_vec(), HeaderMap::new()),
        );
        objects.insert(
            "public/tiles/notes.txt".into(),
            (b"keep".to_vec(), HeaderMap::new()),
        );
    }
    let run3 = tiles::upload(&target, &work, 4, serde_json::Map::new())
        .await
        .unwrap();
    assert_eq!(
        (
            run3.tile_new,
            run3.tile_changed,
            run3.tile_unchanged,
            run3.tile_deleted,
            run3.tile_failed
        ),
        (0, 1, 12, 1, 0)
    );
    assert!(
        s3.requests
            .lock()
            .unwrap()
            .iter()
            .any(|(m, p)| *m == Method::POST && p.ends_with("?delete")),
        "orphans go through the multi-object delete"
    );
    let objects = s3.objects.lock().unwrap();
    assert!(!objects.contains_key("public/tiles/5/1/1.png"));
    assert!(objects.contains_key("public/tiles/notes.txt"));
    for (rel, bytes) in &local {
        assert_eq!(&objects[&format!("public/{rel}")].0, bytes, "{rel}");
    }
}
