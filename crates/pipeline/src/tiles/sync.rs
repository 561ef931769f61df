//! Syncs rendered tiles to the tile bucket (pipeline §4.2.5 steps 5–6):
//! `s3://bucket/prefix` in production, `file:///dir` when embedded, both
//! through `object_store` with the URL rules of the s3 exporter.
//!
//! Under `<prefix>/tiles/`: a local tile missing remotely is uploaded (new);
//! one of the same size and MD5 is left alone (unchanged; S3's ETag of a
//! single-part upload is the MD5, a local file is read back and hashed);
//! otherwise it is uploaded again (changed). Remote `.png` objects without a
//! local tile are deleted in batches of 100. Failed uploads and deletes are
//! counted, not retried. Then `tiles/data.json` records the run.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use md5::{Digest, Md5};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};

use super::TilesError;
use crate::export::geosubmit::install_crypto_provider;
use crate::export::s3::{Target, parse_target};

/// Objects per multi-delete request.
const DELETE_BATCH: usize = 100;
/// Cache lifetime of tiles and `data.json` at the CDN and in browsers.
const CACHE_CONTROL: &str = "max-age=3600, public";

/// The bucket (or directory) receiving the tiles.
pub struct TileTarget {
    store: Arc<dyn ObjectStore>,
    /// Key prefix without leading or trailing `/` (may be empty).
    prefix: String,
    /// S3 takes content attributes and reports MD5 ETags; a filesystem does neither.
    s3: bool,
}

/// Remote state of one tile.
struct Remote {
    size: u64,
    etag: Option<String>,
}

/// Counts of one sync run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Uploaded, not there before.
    pub tile_new: u64,
    /// Uploaded again: size or MD5 differed.
    pub tile_changed: u64,
    /// Same size and MD5 as the remote object.
    pub tile_unchanged: u64,
    /// Remote tiles without a local one, deleted.
    pub tile_deleted: u64,
    /// Uploads or deletes that failed (not retried).
    pub tile_failed: u64,
}

impl TileTarget {
    /// Opens `s3://bucket/prefix` (credentials, region and endpoint from the
    /// standard `AWS_*` environment) or `file:///dir`.
    pub fn open(url: &str) -> Result<TileTarget, TilesError> {
        let (store, prefix, s3) = open_directory(url)?;
        Ok(TileTarget { store, prefix, s3 })
    }

    /// A target on any store (tests: an in-memory or fake S3 store).
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: &str, s3: bool) -> TileTarget {
        TileTarget {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            s3,
        }
    }

    fn path(&self, relative: &str) -> Path {
        Path::from_iter(self.prefix.split('/').chain(relative.split('/')))
    }

    fn attributes(&self, content_type: &str) -> Attributes {
        if self.s3 {
            Attributes::from_iter([
                (Attribute::ContentType, content_type.to_string()),
                (Attribute::CacheControl, CACHE_CONTROL.to_string()),
            ])
        } else {
            // The local filesystem refuses attributes (NotImplemented).
            Attributes::new()
        }
    }

    /// Writes and deletes a `test-<uuid4>` object, so a missing permission
    /// fails the run before any tile is touched.
    pub async fn check_access(&self) -> Result<(), TilesError> {
        let path = self.path(&format!("test-{}", uuid::Uuid::new_v4().simple()));
        self.store.put(&path, PutPayload::from_static(b"")).await?;
        self.store.delete(&path).await?;
        Ok(())
    }

    /// Writes `tiles/data.json`.
    pub async fn write_data_json(&self, value: &serde_json::Value) -> Result<(), TilesError> {
        let body = serde_json::to_vec(value).map_err(|e| TilesError::Target(e.to_string()))?;
        self.store
            .put_opts(
                &self.path("tiles/data.json"),
                PutPayload::from(body),
                PutOptions::from(self.attributes("application/json")),
            )
            .await?;
        Ok(())
    }

    /// `tiles/…png` keys (relative to the prefix) and their size and ETag.
    async fn list_tiles(&self) -> Result<HashMap<String, Remote>, TilesError> {
        let root = self.path("tiles");
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut out = HashMap::new();
        let mut listing = self.store.list(Some(&root));
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            let key = meta.location.to_string();
            if !key.ends_with(".png") {
                continue;
            }
            let relative = key.strip_prefix(&strip).unwrap_or(&key).to_string();
            out.insert(
                relative,
                Remote {
                    size: meta.size,
                    etag: meta.e_tag,
                },
            );
        }
        Ok(out)
    }

    /// Whether the remote object equals `local` (already known to have its size).
    async fn same_content(
        &self,
        relative: &str,
        remote: &Remote,
        local: &[u8],
    ) -> Result<bool, TilesError> {
        let digest = md5_hex(local);
        if self.s3 {
            return Ok(remote
                .etag
                .as_deref()
                .is_some_and(|e| e.trim_matches('"').eq_ignore_ascii_case(&digest)));
        }
        let bytes = self.store.get(&self.path(relative)).await?.bytes().await?;
        Ok(md5_hex(&bytes) == digest)
    }

    async fn upload(&self, relative: &str, body: Vec<u8>) -> Result<(), TilesError> {
        self.store
            .put_opts(
                &self.path(relative),
                PutPayload::from(body),
                PutOptions::from(self.attributes("image/png")),
            )
            .await?;
        Ok(())
    }
}

/// The object store and key prefix (no leading or trailing `/`) of a
/// directory URL, `s3://bucket/prefix` or `file:///dir`, and whether it is S3.
/// Also how the binary hands the tile output and the cell export directory to
/// the web role's site.
pub fn open_directory(url: &str) -> Result<(Arc<dyn ObjectStore>, String, bool), TilesError> {
    let target = parse_target(url, None).map_err(|e| TilesError::Target(e.to_string()))?;
    Ok(match target {
        Target::S3 { bucket, template } => {
            install_crypto_provider();
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(&bucket)
                .build()?;
            (
                Arc::new(store),
                template.trim_matches('/').to_string(),
                true,
            )
        }
        // Rooted at `/`, like the s3 exporter's file targets.
        Target::File { template } => (
            Arc::new(LocalFileSystem::new()),
            template.trim_matches('/').to_string(),
            false,
        ),
    })
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every `*.png` below `<dir>/tiles`, keyed `tiles/<z>/<x>/<y>.png`.
pub fn local_tiles(dir: &FsPath) -> Result<BTreeMap<String, PathBuf>, TilesError> {
    let mut out = BTreeMap::new();
    let root = dir.join("tiles");
    let mut stack = vec![root.clone()];
    while let Some(current) = stack.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| TilesError::io(&current, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| TilesError::io(&current, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| TilesError::io(&path, e))?;
            if kind.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "png") {
                let relative = path
                    .strip_prefix(dir)
                    .ok()
                    .and_then(|p| p.to_str())
                    .map(|p| p.replace(std::path::MAIN_SEPARATOR, "/"));
                if let Some(relative) = relative {
                    out.insert(relative, path);
                }
            }
        }
    }
    Ok(out)
}

enum Outcome {
    New,
    Changed,
    Unchanged,
    Failed,
}

/// Syncs `<dir>/tiles` to the target with `workers` uploads in flight.
pub async fn sync(
    target: &TileTarget,
    dir: &FsPath,
    workers: usize,
) -> Result<SyncStats, TilesError> {
    let local = {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || local_tiles(&dir))
            .await
            .map_err(|e| TilesError::Task(e.to_string()))??
    };
    let mut remote = target.list_tiles().await?;
    let mut stats = SyncStats::default();

    let jobs: Vec<(String, PathBuf, Option<Remote>)> = local
        .into_iter()
        .map(|(key, path)| {
            let existing = remote.remove(&key);
            (key, path, existing)
        })
        .collect();
    let mut outcomes = futures_util::stream::iter(jobs)
        .map(|(key, path, existing)| async move {
            let result: Result<Outcome, TilesError> = async {
                let body = tokio::fs::read(&path)
                    .await
                    .map_err(|e| TilesError::io(&path, e))?;
                let outcome = match &existing {
                    None => Outcome::New,
                    Some(r)
                        if r.size == body.len() as u64
                            && target.same_content(&key, r, &body).await? =>
                    {
                        return Ok(Outcome::Unchanged);
                    }
                    Some(_) => Outcome::Changed,
                };
                target.upload(&key, body).await?;
                Ok(outcome)
            }
            .await;
            result.unwrap_or_else(|e| {
                tracing::warn!(tile = %key, error = %e, "tile upload failed");
                Outcome::Failed
            })
        })
        .buffer_unordered(workers.max(1));
    while let Some(outcome) = outcomes.next().await {
        match outcome {
            Outcome::New => stats.tile_new += 1,
            Outcome::Changed => stats.tile_changed += 1,
            Outcome::Unchanged => stats.tile_unchanged += 1,
            Outcome::Failed => stats.tile_failed += 1,
        }
    }
    drop(outcomes);

    // What is left remotely has no local tile: delete it, 100 keys a request.
    let mut orphans: Vec<String> = remote.into_keys().collect();
    orphans.sort();
    for batch in orphans.chunks(DELETE_BATCH) {
        let paths: Vec<object_store::Result<Path>> =
            batch.iter().map(|k| Ok(target.path(k))).collect();
        let mut deleted = target
            .store
            .delete_stream(futures_util::stream::iter(paths).boxed());
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) => stats.tile_deleted += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "tile delete failed");
                    stats.tile_failed += 1;
                }
            }
        }
    }
    Ok(stats)
}
