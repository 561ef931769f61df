//! Temporary directories and what tests find in them.

use std::path::{Path, PathBuf};

use crate::unique;

/// A directory of its own under the system temp dir, removed with everything in
/// it when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/ichnaea-<tag>-<unique>`.
    pub fn new(tag: &str) -> TempDir {
        let dir = TempDir::reserve(tag);
        std::fs::create_dir_all(&dir.0)
            .unwrap_or_else(|e| panic!("create {}: {e}", dir.0.display()));
        dir
    }

    /// Names `<tmp>/ichnaea-<tag>-<unique>` without creating it, for code under
    /// test that must create its directory itself.
    pub fn reserve(tag: &str) -> TempDir {
        TempDir(std::env::temp_dir().join(format!("ichnaea-{tag}-{}", unique())))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The directory as text, for URLs and arguments.
    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("the temp dir is UTF-8")
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file below `dir`, recursively, sorted; none when `dir` does not exist.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// [`files`] as paths relative to `dir`, with `/` between the parts.
pub fn relative_files(dir: &Path) -> Vec<String> {
    files(dir)
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).expect("below dir");
            rel.to_str().expect("UTF-8 file names").to_string()
        })
        .collect()
}

/// Whether `name` is an object name as the exporters write them: 32 lowercase
/// hex digits (a random UUID) and `.json.gz`.
pub fn is_object_name(name: &str) -> bool {
    name.strip_suffix(".json.gz").is_some_and(|stem| {
        stem.len() == 32
            && stem
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}
