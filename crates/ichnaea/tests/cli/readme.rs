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

/// Section numbers of the headings of `docs/reference/<doc>.md` (`2`, `2.8`, …).
fn sections(root: &Path, doc: &str) -> std::collections::BTreeSet<String> {
    let text = std::fs::read_to_string(root.join(format!("docs/reference/{doc}.md")))
        .unwrap_or_else(|e| panic!("docs/reference/{doc}.md: {e}"));
    text.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| {
            let number = l.trim_start_matches('#').split_whitespace().next()?;
            let number = number.trim_end_matches('.');
            (!number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || c == '.'))
                .then(|| number.to_string())
        })
        .collect()
}

fn source_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("rs" | "py" | "toml" | "md")
        ) {
            out.push(path);
        }
    }
}

/// Every `§` in the code cites a section that exists in `docs/reference/`:
/// either named (`pipeline §3.2`) or through the file's "Sections (§) refer to
/// docs/reference/X.md" line; RFC sections are left alone.
#[test]
fn section_references_resolve_inside_the_repository() {
    const DOCS: [&str; 5] = ["api", "pipeline", "locate", "website", "clients"];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let known: std::collections::BTreeMap<&str, _> =
        DOCS.iter().map(|d| (*d, sections(&root, d))).collect();
    let mut files = Vec::new();
    source_files(&root.join("crates"), &mut files);
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in files {
        if file.ends_with("cli/readme.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let default = DOCS
            .iter()
            .copied()
            .find(|d| text.contains(&format!("Sections (§) refer to docs/reference/{d}.md")));
        let mut previous: Option<&str> = None;
        for (at, _) in text.match_indices('§') {
            let before = &text[..at];
            // The words before the sign, across a comment line break.
            let words: Vec<&str> = before
                .rsplit(|c: char| c.is_whitespace() || "(/[\"".contains(c))
                .filter(|w| !w.is_empty() && *w != "!")
                .take(2)
                .collect();
            let after = &text[at + '§'.len_utf8()..];
            let number: String = after
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let number = number.trim_end_matches('.').to_string();
            if words.get(1).is_some_and(|w| *w == "RFC") || after.starts_with(')') {
                // An RFC's section, or the "Sections (§) refer to" line itself.
                continue;
            }
            let named = words
                .first()
                .and_then(|w| DOCS.iter().copied().find(|d| w == d));
            let continued = before.ends_with('–')
                || before.ends_with('-')
                || before.ends_with(", ")
                || before.ends_with(" and ");
            let doc = named
                .or(if continued { previous } else { None })
                .or(default);
            let line = before.matches('\n').count() + 1;
            let place = format!(
                "{}:{line}",
                file.strip_prefix(&root).unwrap_or(&file).display()
            );
            match doc {
                None => problems.push(format!("{place}: § without a document")),
                Some(doc) if !known[doc].contains(&number) => {
                    problems.push(format!("{place}: {doc} §{number} does not exist"))
                }
                Some(doc) => {
                    previous = Some(doc);
                    checked += 1;
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(checked > 100, "only {checked} references found");
}
