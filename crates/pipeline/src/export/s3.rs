//! Exporter `s3` (pipeline §2.8): writes each batch as one gzip JSON
//! object `{"items": [report, …]}` to S3 (`s3://bucket/template`) or to a
//! local directory (`file:///dir/template`).
//!
//! Object names follow the original: the path template with its leading `/`
//! removed and a trailing `/` ensured, the placeholders `{source}`,
//! `{api_key}`, `{year}`, `{month}`, `{day}` filled in (date parts as plain
//! integers, `2015/7/5`), then 32 lower-case hex digits of a time-based UUID
//! and `.json.gz`. The UUID is version 7 rather than the original's version 1
//! (the `uuid` crate's v1 needs a node id); both are time-based and unique.
//!
//! Sections (§) refer to docs/reference/pipeline.md.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chrono::{Datelike, NaiveDate};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
use serde_json::Value;

use super::geosubmit::{ExportError, gzip_items, install_crypto_provider};

/// Gzip level of exported objects (pipeline §2.8).
const S3_GZIP_LEVEL: u32 = 7;

/// Where an object-store target writes, parsed from its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `s3://<bucket>/<template>`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key template, as written after the bucket (leading `/` included).
        template: String,
    },
    /// `file://<path template>`: an absolute template on the local filesystem
    /// (a relative one is taken relative to `exports_dir`).
    File {
        /// Absolute path template.
        template: String,
    },
}

/// Parses an `s3://` or `file://` export URL. A relative `file://dir` is taken
/// relative to `root` (the configured `exports_dir`), or to the working
/// directory when there is none.
pub(crate) fn parse_target(
    url: &str,
    root: Option<&std::path::Path>,
) -> Result<Target, ExportError> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, template) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if bucket.is_empty() {
            return Err(ExportError::InvalidTarget(format!(
                "{url:?} names no bucket"
            )));
        }
        return Ok(Target::S3 {
            bucket: bucket.to_string(),
            template: template.to_string(),
        });
    }
    if let Some(rest) = url.strip_prefix("file://") {
        if rest.is_empty() {
            return Err(ExportError::InvalidTarget(format!(
                "{url:?} names no directory"
            )));
        }
        let template = if rest.starts_with('/') {
            rest.to_string()
        } else {
            let base = match root {
                Some(root) => std::path::absolute(root),
                None => std::env::current_dir(),
            }
            .map_err(|e| {
                ExportError::InvalidTarget(format!(
                    "{url:?} is relative and its base directory is unknown: {e}"
                ))
            })?;
            let abs = base.join(rest);
            abs.to_str()
                .ok_or_else(|| {
                    ExportError::InvalidTarget(format!("{url:?}: base directory is not UTF-8"))
                })?
                .to_string()
        };
        return Ok(Target::File { template });
    }
    Err(ExportError::InvalidTarget(format!(
        "{url:?} is neither s3://bucket/path nor file:///path"
    )))
}

/// The `(source, api_key)` partition of an s3 export queue
/// `queue_export_<name>:<source>:<api_key|no_key>`.
pub(crate) fn partition(queue: &str) -> Result<(&str, &str), ExportError> {
    let mut parts = queue.splitn(3, ':');
    let _name = parts.next();
    match (parts.next(), parts.next()) {
        (Some(source), Some(key)) if !source.is_empty() && !key.is_empty() => Ok((source, key)),
        _ => Err(ExportError::InvalidTarget(format!(
            "queue {queue:?} is not queue_export_<name>:<source>:<api_key>"
        ))),
    }
}

/// How an object's bytes are encoded on the wire (S3's Content-Encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    /// Stored gzip, served unpacked to clients that accept gzip (report batches).
    Gzip,
    /// Stored and served as it is (a `.csv.gz` file is the download itself).
    None,
}

/// How a written object is named in logs and results: its key on S3, its
/// absolute path for files.
fn location(target: &Target, path: &Path) -> String {
    match target {
        Target::S3 { .. } => path.to_string(),
        Target::File { .. } => format!("/{path}"),
    }
}

/// The object of `file_name` under the directory `dir`.
fn file_path(dir: &str, file_name: &str) -> Path {
    let key = format!("{}/{file_name}", dir.trim_end_matches('/'));
    Path::from_iter(key.split('/'))
}

/// The object name for a template, partition, date and hex id (§2.8).
pub(crate) fn object_key(
    template: &str,
    source: &str,
    api_key: &str,
    date: NaiveDate,
    id_hex: &str,
) -> String {
    let mut path = template.trim_start_matches('/').to_string();
    if !path.ends_with('/') {
        path.push('/');
    }
    if path == "/" {
        // Empty template: objects at the bucket root, not under an empty segment.
        path.clear();
    }
    let mut out = String::with_capacity(path.len() + id_hex.len() + 16);
    let mut rest = path.as_str();
    // One pass, so placeholder-like text inside a value is not expanded again.
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let value = match &after[..close] {
                "source" => source.to_string(),
                "api_key" => api_key.to_string(),
                "year" => date.year().to_string(),
                "month" => date.month().to_string(),
                "day" => date.day().to_string(),
                _ => return None,
            };
            Some((value, close))
        });
        match value {
            Some((value, close)) => {
                out.push_str(&value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.push_str(id_hex);
    out.push_str(".json.gz");
    out
}

/// Writes export batches to S3 buckets or local directories; the stores are
/// built on first use and cached per bucket.
pub struct ObjectExporter {
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    /// Base of relative `file://` URLs (`exports_dir`).
    root: Option<std::path::PathBuf>,
}

impl Default for ObjectExporter {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectExporter {
    /// An exporter with no store opened yet.
    pub fn new() -> Self {
        ObjectExporter {
            stores: Mutex::new(HashMap::new()),
            root: None,
        }
    }

    /// An exporter that resolves relative `file://dir` URLs under `root`
    /// (the configured `exports_dir`) instead of the working directory.
    pub fn with_root(root: std::path::PathBuf) -> Self {
        ObjectExporter {
            root: Some(root),
            ..Self::new()
        }
    }

    /// Writes one gzip (level 7) JSON object `{"items": reports}` for the
    /// partition of `queue` (`queue_export_<name>:<source>:<api_key|no_key>`)
    /// under the template of `url`, dated `today`.
    ///
    /// `s3://bucket/template` uses S3 with credentials, region and endpoint
    /// from the standard `AWS_*` environment (read when the bucket is first
    /// used), and stores the object with `Content-Type: application/json` and
    /// `Content-Encoding: gzip`. `file:///dir/template` writes a file (parent
    /// directories created; no content attributes on a filesystem).
    ///
    /// Returns the S3 object key, or the absolute path of the written file.
    /// Counts `data.export.upload` (tags `key:<name>`,
    /// `status:success|failure`) and times the attempt in
    /// `data.export.upload.timing` (milliseconds, tag `key:<name>`).
    pub async fn send(
        &self,
        name: &str,
        url: &str,
        queue: &str,
        reports: &[Value],
        today: NaiveDate,
    ) -> Result<String, ExportError> {
        let start = Instant::now();
        let result = self.put(url, queue, reports, today).await;
        metrics::histogram!("data.export.upload.timing", "key" => name.to_string())
            .record(start.elapsed().as_secs_f64() * 1000.0);
        let status = if result.is_ok() { "success" } else { "failure" };
        metrics::counter!("data.export.upload", "key" => name.to_string(), "status" => status)
            .increment(1);
        result
    }

    async fn put(
        &self,
        url: &str,
        queue: &str,
        reports: &[Value],
        today: NaiveDate,
    ) -> Result<String, ExportError> {
        let target = parse_target(url, self.root.as_deref())?;
        let (source, api_key) = partition(queue)?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let body = gzip_items(reports, S3_GZIP_LEVEL)?;
        let (store, template, attributes) =
            self.destination(&target, "application/json", Encoding::Gzip)?;
        let key = object_key(&template, source, api_key, today, &id);
        // Empty segments are dropped; `.`/`..` and unsafe characters are escaped.
        let path = Path::from_iter(key.split('/'));
        store
            .put_opts(&path, PutPayload::from(body), PutOptions::from(attributes))
            .await?;
        Ok(match target {
            Target::S3 { .. } => path.to_string(),
            Target::File { .. } => format!("/{path}"),
        })
    }

    /// Writes one object named `file_name` under the directory URL `dir_url`
    /// (`s3://bucket/prefix` or `file:///dir`); returns where it went. Used by the
    /// public cell export.
    pub async fn put_file(
        &self,
        dir_url: &str,
        file_name: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<String, ExportError> {
        let target = parse_target(dir_url, self.root.as_deref())?;
        // A file that is itself gzip (`.csv.gz`): downloaded as it is, so no
        // Content-Encoding that would make clients unpack it on the way.
        let (store, dir, attributes) = self.destination(&target, content_type, Encoding::None)?;
        let path = file_path(&dir, file_name);
        store
            .put_opts(&path, PutPayload::from(body), PutOptions::from(attributes))
            .await?;
        Ok(location(&target, &path))
    }

    /// Where `file_name` under the directory URL `dir_url` is (as
    /// [`ObjectExporter::put_file`] says), if it exists.
    pub async fn existing_file(
        &self,
        dir_url: &str,
        file_name: &str,
    ) -> Result<Option<String>, ExportError> {
        let target = parse_target(dir_url, self.root.as_deref())?;
        let (store, dir, _) = self.destination(&target, "", Encoding::None)?;
        let path = file_path(&dir, file_name);
        match store.head(&path).await {
            Ok(_) => Ok(Some(location(&target, &path))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The store, path template and object attributes of a target: S3 objects
    /// carry their content type and gzip encoding; the local filesystem refuses
    /// attributes (NotImplemented), so files get none.
    fn destination(
        &self,
        target: &Target,
        content_type: &str,
        encoding: Encoding,
    ) -> Result<(Arc<dyn ObjectStore>, String, Attributes), ExportError> {
        Ok(match target {
            Target::S3 { bucket, template } => {
                let mut attributes =
                    Attributes::from_iter([(Attribute::ContentType, content_type.to_string())]);
                if encoding == Encoding::Gzip {
                    attributes.insert(Attribute::ContentEncoding, "gzip".into());
                }
                (self.s3_store(bucket)?, template.clone(), attributes)
            }
            Target::File { template } => (self.file_store()?, template.clone(), Attributes::new()),
        })
    }

    /// Uses `store` for `s3://<bucket>` targets (tests: a store pointed at a
    /// local fake S3 without touching the process environment).
    #[cfg(test)]
    #[allow(
        dead_code,
        reason = "used by tests/exporters.rs, which includes this file"
    )]
    pub(crate) fn insert_s3_store(&self, bucket: &str, store: Arc<dyn ObjectStore>) {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        stores.insert(format!("s3://{bucket}"), store);
    }

    fn cached(
        &self,
        id: &str,
        make: impl FnOnce() -> Result<Arc<dyn ObjectStore>, ExportError>,
    ) -> Result<Arc<dyn ObjectStore>, ExportError> {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = stores.get(id) {
            return Ok(Arc::clone(store));
        }
        let store = make()?;
        stores.insert(id.to_string(), Arc::clone(&store));
        Ok(store)
    }

    fn s3_store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, ExportError> {
        self.cached(&format!("s3://{bucket}"), || {
            install_crypto_provider();
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()?;
            Ok(Arc::new(store))
        })
    }

    fn file_store(&self) -> Result<Arc<dyn ObjectStore>, ExportError> {
        // Rooted at `/`: object paths are absolute paths without their leading `/`.
        self.cached("file://", || Ok(Arc::new(LocalFileSystem::new())))
    }
}
