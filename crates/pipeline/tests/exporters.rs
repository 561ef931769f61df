//! The geosubmit and object-store exporters against real local endpoints: an
//! HTTP server on 127.0.0.1 (geosubmit, and a fake S3 that accepts PUTs) and a
//! temporary directory (`file://`). Real S3 is not reachable here; its URL and
//! key handling is tested directly and its wire format against the fake.

// Test code: a failed unwrap is a failed test with its message, and test
// helpers are not public API.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[allow(dead_code)]
#[path = "../src/export/geosubmit.rs"]
mod geosubmit;
#[allow(dead_code)]
#[path = "../src/export/s3.rs"]
mod s3;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use chrono::NaiveDate;
use ichnaea_testkit::{FakeHttp, TempDir, files, gunzip_json, is_object_name};
use serde_json::{Value, json};

use geosubmit::{ExportError, GeosubmitExporter};
use s3::{ObjectExporter, Target, object_key, parse_target, partition};

fn reports() -> Vec<Value> {
    vec![
        json!({"position": {"latitude": 51.5, "longitude": -0.1, "accuracy": 10.0, "source": "gnss"},
               "wifiAccessPoints": [{"macAddress": "01:23:45:67:89:ab", "signalStrength": -80, "ssid": "kept"}]}),
        json!({"timestamp": 1_405_602_028_568_u64,
               "position": {"latitude": 51.6, "longitude": -0.2},
               "cellTowers": [{"radioType": "lte", "mobileCountryCode": 234, "mobileNetworkCode": 30,
                               "locationAreaCode": 1, "cellId": 2}]}),
        json!({"position": {"latitude": 51.7, "longitude": -0.3},
               "bluetoothBeacons": [{"macAddress": "ab:cd:ef:01:23:45", "name": "beacon"}]}),
    ]
}

fn fast(exporter: GeosubmitExporter) -> GeosubmitExporter {
    exporter.with_backoff(vec![Duration::from_millis(5), Duration::from_millis(5)])
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2015, 7, 5).unwrap()
}

// ---- geosubmit ----

#[tokio::test]
async fn geosubmit_posts_one_gzip_json_batch() {
    let fake = FakeHttp::start(&[]).await;
    let base = fake.url();
    let exporter = fast(GeosubmitExporter::new(Duration::from_secs(10)).unwrap());
    let url = format!("{base}/v2/geosubmit?key=test");
    exporter.send("forward", &url, &reports()).await.unwrap();

    let seen = fake.requests();
    assert_eq!(seen.len(), 1, "exactly one request");
    let r = &seen[0];
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path, "/v2/geosubmit");
    assert_eq!(r.header("content-encoding"), "gzip");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("user-agent"), "ichnaea");
    assert_eq!(r.gunzip_json(), json!({"items": reports()}));
}

#[tokio::test]
async fn geosubmit_retries_until_success() {
    let fake = FakeHttp::start(&[500, 500]).await;
    let base = fake.url();
    let exporter = fast(GeosubmitExporter::new(Duration::from_secs(10)).unwrap());
    exporter
        .send("forward", &format!("{base}/v2/geosubmit"), &reports())
        .await
        .unwrap();
    let seen = fake.requests();
    assert_eq!(seen.len(), 3, "500, 500, then 200");
    assert!(
        seen.iter()
            .all(|r| r.gunzip_json() == json!({"items": reports()}))
    );
}

#[tokio::test]
async fn geosubmit_gives_up_after_three_attempts() {
    let fake = FakeHttp::start(&[]).await;
    fake.answer(500, "");
    let base = fake.url();
    let exporter = fast(GeosubmitExporter::new(Duration::from_secs(10)).unwrap());
    let err = exporter
        .send("forward", &format!("{base}/v2/geosubmit"), &reports())
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::Status(500)), "{err:?}");
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn geosubmit_non_2xx_client_error_is_a_failure_too() {
    let fake = FakeHttp::start(&[]).await;
    fake.answer(400, "");
    let base = fake.url();
    let exporter = GeosubmitExporter::new(Duration::from_secs(10))
        .unwrap()
        .with_backoff(Vec::new());
    let err = exporter
        .send("forward", &format!("{base}/v2/geosubmit"), &reports())
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::Status(400)), "{err:?}");
    assert_eq!(fake.requests().len(), 1, "no waits: a single attempt");
}

#[tokio::test]
async fn geosubmit_closed_port_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let exporter = fast(GeosubmitExporter::new(Duration::from_secs(5)).unwrap());
    let err = exporter
        .send(
            "forward",
            &format!("http://{addr}/v2/geosubmit"),
            &reports(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::Request(_)), "{err:?}");
}

// ---- object store: file:// ----

#[tokio::test]
async fn file_export_writes_one_partitioned_object() {
    let tmp = TempDir::new("exporters-file");
    let url = format!(
        "file://{}/backups/{{source}}/{{api_key}}/{{year}}/{{month}}/{{day}}",
        tmp.as_str()
    );
    let exporter = ObjectExporter::new();
    let written = exporter
        .send(
            "backup",
            &url,
            "queue_export_backup:gnss:test",
            &reports(),
            day(),
        )
        .await
        .unwrap();

    let dir = tmp.join("backups/gnss/test/2015/7/5");
    let found = files(tmp.path());
    assert_eq!(found.len(), 1, "{found:?}");
    let file = &found[0];
    assert_eq!(file.parent().unwrap(), dir);
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(is_object_name(name), "{name}");
    assert_eq!(written, file.to_str().unwrap());
    assert_eq!(
        gunzip_json(&std::fs::read(file).unwrap()),
        json!({"items": reports()})
    );
}

#[tokio::test]
async fn file_export_no_key_partition_and_fresh_names() {
    let tmp = TempDir::new("exporters-nokey");
    let url = format!(
        "file://{}/backups/{{source}}/{{api_key}}/{{year}}/{{month}}/{{day}}/",
        tmp.as_str()
    );
    let exporter = ObjectExporter::new();
    let queue = "queue_export_backup:query:no_key";
    let a = exporter
        .send("backup", &url, queue, &reports()[..1], day())
        .await
        .unwrap();
    let b = exporter
        .send("backup", &url, queue, &reports()[1..], day())
        .await
        .unwrap();
    assert_ne!(a, b, "every batch gets its own object");
    let prefix = format!("{}/backups/query/no_key/2015/7/5/", tmp.as_str());
    for (path, items) in [(&a, &reports()[..1]), (&b, &reports()[1..])] {
        let name = path
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{path} not under {prefix}"));
        assert!(is_object_name(name), "{name}");
        assert_eq!(
            gunzip_json(&std::fs::read(path).unwrap()),
            json!({"items": items})
        );
    }
    assert_eq!(files(tmp.path()).len(), 2);
}

#[tokio::test]
async fn file_export_extra_leading_slash_and_flat_template() {
    let tmp = TempDir::new("exporters-flat");
    // `file:////tmp/...`: leading slashes collapse to one absolute path.
    let url = format!("file:///{}", tmp.as_str());
    let written = ObjectExporter::new()
        .send("flat", &url, "queue_export_flat:fused:k", &reports(), day())
        .await
        .unwrap();
    let found = files(tmp.path());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].parent().unwrap(), tmp.path());
    assert_eq!(written, found[0].to_str().unwrap());
}

#[tokio::test]
async fn object_export_rejects_bad_targets() {
    let exporter = ObjectExporter::new();
    let bad_url = exporter
        .send(
            "x",
            "ftp://host/dir",
            "queue_export_x:gnss:k",
            &reports(),
            day(),
        )
        .await;
    assert!(matches!(bad_url, Err(ExportError::InvalidTarget(_))));
    let bad_queue = exporter
        .send("x", "file:///tmp/x", "queue_export_x", &reports(), day())
        .await;
    assert!(matches!(bad_queue, Err(ExportError::InvalidTarget(_))));
}

// ---- object store: s3:// ----

#[test]
fn s3_url_and_key_layout() {
    let target = parse_target(
        "s3://bucket/backups/{source}/{api_key}/{year}/{month}/{day}",
        None,
    )
    .unwrap();
    let Target::S3 { bucket, template } = &target else {
        panic!("{target:?}")
    };
    assert_eq!(bucket, "bucket");
    let hex = "0123456789abcdef0123456789abcdef";
    let (source, key) = partition("queue_export_backup:gnss:test").unwrap();
    assert_eq!(
        object_key(template, source, key, day(), hex),
        format!("backups/gnss/test/2015/7/5/{hex}.json.gz"),
        "pipeline §2.8 example"
    );
    // Trailing slash kept single; unknown placeholders left alone; values are not re-expanded.
    assert_eq!(
        object_key("/a/{foo}/{api_key}/", "gnss", "{year}", day(), hex),
        format!("a/{{foo}}/{{year}}/{hex}.json.gz")
    );
    assert_eq!(
        object_key(
            "{year}-{month}-{day}",
            "s",
            "k",
            NaiveDate::from_ymd_opt(2024, 12, 31).unwrap(),
            hex
        ),
        format!("2024-12-31/{hex}.json.gz")
    );
    // Bucket root.
    assert_eq!(
        parse_target("s3://bucket", None).unwrap(),
        Target::S3 {
            bucket: "bucket".into(),
            template: String::new()
        }
    );
    assert_eq!(
        object_key("", "s", "k", day(), hex),
        format!("{hex}.json.gz")
    );
    assert_eq!(
        object_key("/", "s", "k", day(), hex),
        format!("{hex}.json.gz")
    );

    assert!(matches!(
        parse_target("s3:///nobucket", None),
        Err(ExportError::InvalidTarget(_))
    ));
    assert!(matches!(
        parse_target("https://host/x", None),
        Err(ExportError::InvalidTarget(_))
    ));
    assert!(matches!(
        parse_target("file://", None),
        Err(ExportError::InvalidTarget(_))
    ));
    assert_eq!(
        parse_target("file:///var/exports/{source}", None).unwrap(),
        Target::File {
            template: "/var/exports/{source}".into()
        }
    );
    let Target::File { template } = parse_target("file://rel/dir", None).unwrap() else {
        panic!("file target")
    };
    assert!(
        template.starts_with('/') && template.ends_with("/rel/dir"),
        "{template}"
    );
    // Under the configured exports_dir, whatever the working directory.
    assert_eq!(
        parse_target(
            "file://rel/{source}",
            Some(std::path::Path::new("/srv/ichnaea/exports"))
        )
        .unwrap(),
        Target::File {
            template: "/srv/ichnaea/exports/rel/{source}".into()
        }
    );
    assert_eq!(
        parse_target("file:///abs", Some(std::path::Path::new("/srv/x"))).unwrap(),
        Target::File {
            template: "/abs".into()
        }
    );

    assert_eq!(
        partition("queue_export_b:fused:no_key").unwrap(),
        ("fused", "no_key")
    );
    assert_eq!(
        partition("queue_export_b:gnss:key:with:colons").unwrap(),
        ("gnss", "key:with:colons")
    );
    assert!(partition("queue_export_b").is_err());
    assert!(partition("queue_export_b:gnss").is_err());
    assert!(partition("queue_export_b:gnss:").is_err());
}

#[tokio::test]
async fn s3_put_against_a_local_fake() {
    use object_store::aws::AmazonS3Builder;

    let fake = FakeHttp::start(&[]).await;
    let endpoint = fake.url();
    geosubmit::install_crypto_provider();
    // Explicit credentials: no credential chain, no instance-metadata lookup.
    let store = AmazonS3Builder::new()
        .with_bucket_name("bucket")
        .with_region("us-east-1")
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    let exporter = ObjectExporter::new();
    exporter.insert_s3_store("bucket", Arc::new(store));
    let key = exporter
        .send(
            "backup",
            "s3://bucket/backups/{source}/{api_key}/{year}/{month}/{day}",
            "queue_export_backup:gnss:test",
            &reports(),
            day(),
        )
        .await
        .unwrap();
    let name = key.strip_prefix("backups/gnss/test/2015/7/5/").unwrap();
    assert!(is_object_name(name), "{key}");

    let seen = fake.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let r = &seen[0];
    assert_eq!(r.method, Method::PUT);
    assert_eq!(r.path, format!("/bucket/{key}"));
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("content-encoding"), "gzip");
    assert!(
        r.header("authorization").starts_with("AWS4-HMAC-SHA256"),
        "signed request"
    );
    assert_eq!(r.gunzip_json(), json!({"items": reports()}));

    // A public cell export file is gzip itself: no Content-Encoding, so
    // downloads keep it packed.
    let written = exporter
        .put_file(
            "s3://bucket/export",
            "cells.csv.gz",
            b"gz".to_vec(),
            "application/gzip",
        )
        .await
        .unwrap();
    assert_eq!(written, "export/cells.csv.gz");
    let seen = fake.requests();
    let put = seen.last().unwrap();
    assert_eq!(put.header("content-type"), "application/gzip");
    assert_eq!(put.header("content-encoding"), "");
}
