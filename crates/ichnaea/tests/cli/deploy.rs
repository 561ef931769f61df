//! The deployment files stay in step with the binary: `serve` starts with the
//! example production configuration (`deploy/ichnaea.example.toml`) and puts
//! every key of it into effect, and every `ICHNAEA_*` variable that
//! `compose.yaml`, the `Dockerfile` and the systemd units set is one the binary
//! knows.

use std::path::{Path, PathBuf};

use ichnaea_testkit::binary::Server;
use serde_json::Value;

/// A file of the repository.
fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Every `ICHNAEA_<NAME>` in `text`, as `name` in lower case.
fn variables(text: &str) -> Vec<String> {
    text.match_indices("ICHNAEA_")
        .map(|(at, prefix)| {
            text[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
                .to_ascii_lowercase()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn deployment_files_match_the_configuration() {
    let example = repo_file("deploy/ichnaea.example.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let file: toml::Table = toml::from_str(&text).unwrap();

    // The example's PostgreSQL, Redis and buckets do not exist here: the
    // environment points the run at the embedded backend and local
    // directories, as variables override the file in production.
    let dir = crate::data_dir("deploy");
    let local = format!("file://{}/public", dir.path.display());
    let env = [
        ("ICHNAEA_DATABASE_URL", ""),
        ("ICHNAEA_REDIS_URL", ""),
        ("ICHNAEA_CELL_EXPORT_URL", local.as_str()),
        ("ICHNAEA_TILES_URL", local.as_str()),
    ];
    let overridden = [
        "data_dir",
        "database_url",
        "redis_url",
        "cell_export_url",
        "tiles_url",
        "listen",
        "metrics_listen",
    ];
    // `--config`, as the units pass it (`ICHNAEA_CONFIG` works too, but
    // `serve` warns about it as an unknown setting).
    let mut command = dir.command();
    command.arg("--config").arg(&example);
    let mut server = Server::start_command(command, &env, "web");
    assert_eq!(server.get("/__heartbeat__").status, 200);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status}\n{stderr}");

    let lines = crate::log_lines(&stderr);
    assert!(
        !crate::has_message(&lines, "unknown ICHNAEA_ variable"),
        "{stderr}"
    );
    let effective = lines
        .iter()
        .find(|l| l["message"] == "effective configuration")
        .map(|l| l["config"].clone())
        .expect("the effective configuration is logged");
    for (key, value) in &file {
        if overridden.contains(&key.as_str()) {
            continue;
        }
        assert_eq!(
            effective[key.as_str()],
            serde_json::to_value(value).unwrap(),
            "{key} of {} is not in effect",
            example.display()
        );
    }
    // The overridden URLs are still ones the binary can open.
    for key in ["cell_export_url", "tiles_url"] {
        let url = file[key].as_str().unwrap();
        assert!(
            ichnaea_pipeline::tiles::sync::open_directory(url).is_ok(),
            "{key} = {url}"
        );
    }

    // Variables of the other deployment files: keys of the configuration,
    // `ICHNAEA_INTERVAL_<TASK>` or the build's version (Dockerfile).
    let Value::Object(keys) = &effective else {
        panic!("configuration is not an object: {effective}")
    };
    let mut files = vec![
        repo_file("compose.yaml"),
        repo_file("Dockerfile"),
        example.clone(),
    ];
    let units = std::fs::read_dir(repo_file("deploy/systemd")).unwrap();
    files.extend(units.map(|entry| entry.unwrap().path()));
    let mut checked = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for name in variables(&text) {
            let known = keys.contains_key(&name)
                || name.starts_with("interval_")
                || name == "git_commit"
                || name == "build";
            assert!(
                known,
                "ICHNAEA_{} in {} is no setting",
                name.to_ascii_uppercase(),
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} variables found");
}
