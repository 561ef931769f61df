//! `ichnaea datamap` through the real binary: the flag rules of pipeline
//! §4.2.5 and a create + upload run into a `file://` tile bucket.

use std::path::Path;

use serde_json::Value;

use ichnaea_testkit::relative_files;

use super::log_lines;

/// The PNG files below `dir`, by path relative to it, sorted.
fn pngs(dir: &Path) -> Vec<String> {
    relative_files(dir)
        .into_iter()
        .filter(|p| p.ends_with(".png"))
        .collect()
}

fn summary(stderr: &str) -> Value {
    let lines = log_lines(stderr);
    let found: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "canonical-log-line")
        .collect();
    assert_eq!(found.len(), 1, "one summary line:\n{stderr}");
    found[0].clone()
}

#[test]
fn datamap_flag_rules() {
    let dir = super::data_dir("datamap-flags");
    let help = dir.run(&["datamap"]).expect_code(0);
    assert!(
        help.stdout.contains("Usage: ichnaea datamap"),
        "{}",
        help.stdout
    );
    assert!(help.stdout.contains("--create") && help.stdout.contains("--upload"));

    let run = dir.run(&["datamap", "--create"]).expect_code(2);
    assert!(run.stderr.contains("--output"), "{}", run.stderr);

    let run = dir.run(&["datamap", "--upload"]).expect_code(2);
    assert!(run.stderr.contains("--output"), "{}", run.stderr);

    let work = dir.path.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let work_arg = work.to_str().unwrap();
    let run = dir
        .run(&["datamap", "--upload", "--output", work_arg])
        .expect_code(2);
    assert!(run.stderr.contains("tiles"), "{}", run.stderr);
    assert!(
        !dir.path.join("datamap").exists(),
        "nothing uploaded (the default bucket stays untouched)"
    );

    dir.run(&["datamap", "--create", "--upload", "--concurrency", "0"])
        .expect_code(2);
    // More threads than CPUs only compete: lowered, with a notice.
    let clamped = dir
        .run(&["datamap", "--create", "--upload", "--concurrency", "4096"])
        .expect_code(0);
    assert!(
        clamped.stderr.contains("--concurrency 4096: using"),
        "{}",
        clamped.stderr
    );
}

#[test]
fn datamap_create_and_upload_end_to_end() {
    let dir = super::data_dir("datamap-e2e");
    let run = dir
        .run(&["seed-datamap", "--count", "60", "--seed", "7"])
        .expect_code(0);
    assert_eq!(run.stdout.trim(), "wrote 60 datamap rows");

    // Create only, kept in --output.
    let work = dir.path.join("work");
    let work_arg = work.to_str().unwrap();
    let bucket = dir.path.join("bucket");
    let url = format!("file://{}/public", bucket.display());
    let env = [("ICHNAEA_TILES_URL", url.as_str())];
    let run = dir
        .run_with(&["datamap", "--create", "--output", work_arg], &env)
        .expect_code(0);
    let created = summary(&run.stderr);
    assert_eq!(created["success"], true);
    assert_eq!(created["grid_rows"], 60);
    let local = pngs(&work);
    assert_eq!(created["tile_count"], local.len());
    assert!(local.contains(&"tiles/0/0/0.png".to_string()));
    assert!(local.contains(&"tiles/0/0/0@2x.png".to_string()));
    assert!(local.iter().any(|p| p.starts_with("tiles/11/")));
    assert!(!bucket.exists(), "--create alone uploads nothing");

    // Upload only, from the kept directory.
    let run = dir
        .run_with(&["datamap", "--upload", "--output", work_arg], &env)
        .expect_code(0);
    let uploaded = summary(&run.stderr);
    assert_eq!(uploaded["success"], true);
    assert_eq!(uploaded["tile_new"], local.len());
    assert_eq!(pngs(&bucket.join("public")), local);
    let data: Value =
        serde_json::from_slice(&std::fs::read(bucket.join("public/tiles/data.json")).unwrap())
            .unwrap();
    assert!(data["updated"].is_string());
    assert_eq!(data["tile_new"], local.len());

    // Both steps in a temporary directory, to the same bucket: all unchanged.
    let run = dir
        .run_with(
            &["datamap", "--create", "--upload", "--concurrency", "1"],
            &env,
        )
        .expect_code(0);
    let both = summary(&run.stderr);
    assert_eq!(both["tiles_unchanged"], local.len(), "{both}");
    assert_eq!(both["tile_new"], 0);
    assert_eq!(both["tile_changed"], 0);
    assert_eq!(both["tile_deleted"], 0);
    // The one-line summary for people, on stdout.
    let line = run.stdout.trim();
    assert!(
        line.starts_with(&format!("datamap: 60 grid rows, {} tiles (", local.len()))
            && line.contains(&format!(
                "uploaded 0 new, 0 changed, {} unchanged, 0 deleted in ",
                local.len()
            )),
        "{line}"
    );

    // Default bucket: <data_dir>/datamap.
    dir.run(&["datamap", "--create", "--upload"]).expect_code(0);
    assert_eq!(pngs(&dir.path.join("datamap")), local);
}
