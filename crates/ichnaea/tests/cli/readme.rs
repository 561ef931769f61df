//! The README's walkthroughs, run verbatim: every ```sh block that follows a
//! `<!-- walkthrough: … -->` marker is executed by bash (`set -e`), with
//! `ichnaea` on the PATH (this build's binary), against a running `serve` in a
//! fresh data directory. The only change made to the text is the port: the
//! blocks say 127.0.0.1:8000 and the test's server listens on a free port.

use std::path::Path;
use std::process::Command;

use ichnaea_testkit::binary::Server;

/// The walkthrough blocks of README.md: (name, shell text).
fn walkthroughs() -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("<!-- walkthrough: ") else {
            continue;
        };
        let name = rest.split_whitespace().next().unwrap().to_string();
        assert_eq!(lines.next(), Some("```sh"), "{name}: a ```sh block follows");
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        out.push((name, body.join("\n")));
    }
    out
}

fn run_block(name: &str, text: &str, cwd: &Path, data_dir: &Path, port: u16) -> String {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ichnaea")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!(
        "set -euo pipefail\n{}\n",
        text.replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"))
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", path)
        .env("ICHNAEA_DATA_DIR", data_dir)
        .env("ICHNAEA_LOG_FORMAT", "json")
        .env("ICHNAEA_METRICS_LISTEN", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "walkthrough {name} failed ({}):\n--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn readme_walkthroughs_work_verbatim() {
    let blocks = walkthroughs();
    let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["first-steps", "administration", "accuracy"]);
    let dir = super::data_dir("readme");
    let server = Server::start(&dir, &[("ICHNAEA_LOG_LEVEL", "warn")]);
    let cwd = dir.path.parent().unwrap().join(format!(
        "{}-cwd",
        dir.path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::create_dir_all(&cwd).unwrap();
    for (name, text) in &blocks {
        let stdout = run_block(name, text, &cwd, &dir.path, server.port);
        match name.as_str() {
            "first-steps" => {
                // The geolocate answer is the last line: the submitted place.
                let answer: serde_json::Value =
                    serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
                let lat = answer["location"]["lat"].as_f64().unwrap();
                let lng = answer["location"]["lng"].as_f64().unwrap();
                assert!(
                    (lat - 52.5163).abs() < 1e-3 && (lng - 13.3777).abs() < 1e-3,
                    "{stdout}"
                );
            }
            "accuracy" => {
                for kind in ["wifi", "cell", "mixed"] {
                    assert!(
                        stdout.lines().any(|l| l.starts_with(kind)),
                        "{kind} row missing:\n{stdout}"
                    );
                }
            }
            _ => {}
        }
    }
    let _ = std::fs::remove_dir_all(&cwd);
}
