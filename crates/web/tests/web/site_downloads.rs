//! The downloads page and the export files through the real router.

use std::sync::Arc;

use axum::http::{Method, StatusCode, header};
use ichnaea_core::export::DOWNLOADS_CACHE_KEY;
use ichnaea_web::router;
use ichnaea_web::site::{ObjectDir, SiteConfig};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::site::{get, get_with, site_state};
use crate::{Fx, Reply, backend_tests, call};

/// The `(href, text)` links of the list `id`.
fn listed(r: &Reply, id: &str) -> Vec<(String, String)> {
    let text = r.text();
    let start = text
        .find(&format!("<ul id=\"{id}\">"))
        .unwrap_or_else(|| panic!("list {id}"));
    let list = &text[start..start + text[start..].find("</ul>").unwrap()];
    list.split("<li><a href=\"")
        .skip(1)
        .map(|item| {
            let (href, rest) = item.split_once("\">").unwrap();
            let (name, rest) = rest.split_once("</a> (").unwrap();
            let size = rest.split_once(')').unwrap().0;
            (href.to_string(), format!("{name} {size}"))
        })
        .collect()
}

async fn put(store: &dyn ObjectStore, key: &str, size: usize) {
    store
        .put(&Path::from(key), PutPayload::from(vec![7u8; size]))
        .await
        .unwrap();
}

const FULL_24: &str = "MLS-full-cell-export-2016-02-24T000000.csv.gz";
const FULL_26: &str = "MLS-full-cell-export-2016-02-26T000000.csv.gz";
const DIFF_10: &str = "MLS-diff-cell-export-2016-02-26T100000.csv.gz";
const DIFF_11: &str = "MLS-diff-cell-export-2016-02-26T110000.csv.gz";
const DIFF_12: &str = "MLS-diff-cell-export-2016-02-26T120000.csv.gz";

async fn bucket_exports_are_listed_newest_first_and_cached(fx: Fx) {
    let bucket = Arc::new(InMemory::new());
    put(bucket.as_ref(), &format!("export/{FULL_24}"), 1024).await;
    put(bucket.as_ref(), &format!("export/{FULL_26}"), 8192).await;
    for name in [DIFF_10, DIFF_11, DIFF_12] {
        put(bucket.as_ref(), &format!("export/{name}"), 1000).await;
    }
    put(bucket.as_ref(), "export/README.txt", 10).await;
    put(bucket.as_ref(), "tiles/0/0/0.png", 10).await;
    let config = SiteConfig {
        asset_url: Some("http://127.0.0.1:9/foo".into()),
        exports: Some(ObjectDir {
            store: bucket.clone(),
            prefix: "export".into(),
            s3: true,
        }),
        ..SiteConfig::default()
    };
    let app = router(site_state(&fx, config));
    let r = get(&app, "/downloads").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CACHE_CONTROL), Some("max-age=3600"));
    let link = |name: &str, size: &str| {
        (
            format!("http://127.0.0.1:9/foo/export/{name}"),
            format!("{name} {size}"),
        )
    };
    assert_eq!(
        listed(&r, "full"),
        vec![link(FULL_26, "8kB"), link(FULL_24, "1kB")]
    );
    assert_eq!(
        listed(&r, "diff1"),
        vec![link(DIFF_12, "1kB"), link(DIFF_11, "1kB")]
    );
    assert_eq!(listed(&r, "diff2"), vec![link(DIFF_10, "1kB")]);
    assert!(!r.text().contains("0kB"));
    assert!(!r.text().contains("README"));

    // The listing is cached: a new file shows once the entry is dropped (as
    // the export task does after writing one).
    let newer = "MLS-diff-cell-export-2016-02-26T130000.csv.gz";
    put(bucket.as_ref(), &format!("export/{newer}"), 3000).await;
    assert_eq!(listed(&get(&app, "/downloads").await, "diff1").len(), 2);
    fx.counters
        .cache_delete(&[DOWNLOADS_CACHE_KEY.as_bytes().to_vec()])
        .await
        .unwrap();
    let r = get(&app, "/downloads").await;
    assert_eq!(
        listed(&r, "diff1"),
        vec![link(newer, "3kB"), link(DIFF_12, "1kB")]
    );
    assert_eq!(
        listed(&r, "diff2"),
        vec![link(DIFF_11, "1kB"), link(DIFF_10, "1kB")]
    );
}

async fn no_export_directory_lists_nothing(fx: Fx) {
    let app = router(site_state(&fx, SiteConfig::default()));
    let r = get(&app, "/downloads").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(listed(&r, "full").is_empty());
    assert!(listed(&r, "diff1").is_empty());
    assert!(listed(&r, "diff2").is_empty());
    assert!(r.text().contains("does not publish cell exports"));
    assert_eq!(
        get(&app, &format!("/downloads/{FULL_26}")).await.status,
        StatusCode::NOT_FOUND
    );

    // A directory that cannot be listed (a file stands in its place) also
    // lists nothing, and the page still answers.
    let file =
        std::env::temp_dir().join(format!("ichnaea-not-a-dir-{}", ichnaea_testkit::unique()));
    std::fs::write(&file, b"x").unwrap();
    let config = SiteConfig {
        exports: Some(ObjectDir {
            store: Arc::new(object_store::local::LocalFileSystem::new()),
            prefix: format!("{}/export", file.to_str().unwrap().trim_matches('/')),
            s3: false,
        }),
        ..SiteConfig::default()
    };
    let app = router(site_state(&fx, config));
    let r = get(&app, "/downloads").await;
    std::fs::remove_file(&file).unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert!(listed(&r, "full").is_empty());
}

async fn local_exports_are_served_with_ranges_and_nothing_else(fx: Fx) {
    let root =
        std::env::temp_dir().join(format!("ichnaea-downloads-{}", ichnaea_testkit::unique()));
    let dir = root.join("export");
    std::fs::create_dir_all(&dir).unwrap();
    let body: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.join(FULL_26), &body).unwrap();
    // Files next to the directory must stay out of reach.
    std::fs::write(root.join("MLS-full-secret.csv.gz"), b"secret").unwrap();
    let config = SiteConfig {
        exports: Some(ObjectDir {
            store: Arc::new(object_store::local::LocalFileSystem::new()),
            prefix: dir.to_str().unwrap().trim_matches('/').to_string(),
            s3: false,
        }),
        // Local files are served here even with an asset host.
        asset_url: Some("http://127.0.0.1:9/foo".into()),
        ..SiteConfig::default()
    };
    let app = router(site_state(&fx, config));
    let page = get(&app, "/downloads").await;
    let href = format!("/downloads/{FULL_26}");
    assert_eq!(
        listed(&page, "full"),
        vec![(href.clone(), format!("{FULL_26} 5kB"))]
    );

    let whole = get(&app, &href).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.body, body, "byte-identical");
    assert_eq!(whole.header(header::CONTENT_LENGTH), Some("5000"));
    assert_eq!(whole.header(header::CONTENT_TYPE), Some("application/gzip"));
    assert_eq!(whole.header(header::ACCEPT_RANGES), Some("bytes"));
    assert_eq!(
        whole.header(header::CONTENT_DISPOSITION),
        Some(format!("attachment; filename=\"{FULL_26}\"").as_str())
    );

    let part = get_with(&app, &href, &[(header::RANGE, "bytes=10-19")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, body[10..20]);
    assert_eq!(part.header(header::CONTENT_LENGTH), Some("10"));
    assert_eq!(part.header(header::CONTENT_RANGE), Some("bytes 10-19/5000"));
    let tail = get_with(&app, &href, &[(header::RANGE, "bytes=-100")]).await;
    assert_eq!(tail.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.body, body[4900..]);
    let resumed = get_with(&app, &href, &[(header::RANGE, "bytes=4000-")]).await;
    assert_eq!(resumed.body, body[4000..]);
    assert_eq!(
        resumed.header(header::CONTENT_RANGE),
        Some("bytes 4000-4999/5000")
    );
    let beyond = get_with(&app, &href, &[(header::RANGE, "bytes=5000-")]).await;
    assert_eq!(beyond.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(beyond.header(header::CONTENT_RANGE), Some("bytes */5000"));
    let head = call(&app, Method::HEAD, &href, None, None).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header(header::CONTENT_LENGTH), Some("5000"));
    assert!(head.body.is_empty());

    for bad in [
        "/downloads/..%2FMLS-full-secret.csv.gz",
        "/downloads/%2E%2E%2FMLS-full-secret.csv.gz",
        "/downloads/../MLS-full-secret.csv.gz",
        "/downloads/..",
        "/downloads/MLS-full-missing.csv.gz",
        "/downloads/notes.txt",
    ] {
        let r = get(&app, bad).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
        assert!(!r.body.ends_with(b"secret"), "{bad}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

backend_tests!(
    bucket_exports_are_listed_newest_first_and_cached,
    no_export_directory_lists_nothing,
    local_exports_are_served_with_ranges_and_nothing_else,
);
