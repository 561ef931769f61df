//! Export targets: the `export_config` table's row, validation and the
//! `allowed(api_key, source)` rule of the multiplexer.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::apikey::{double_option, is_http_url};
use crate::source::ReportSource;
use crate::validation::{FieldError, check_len};

/// Page-data cache entry of the downloads page (the listing of the public
/// cell export): the export task drops it after writing a file, so the page
/// lists the new file at once.
pub const DOWNLOADS_CACHE_KEY: &str = "cache:downloads:4";

/// Which exporter consumes a target's queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ExportSchema {
    /// Discards batches (tests, smoke checks).
    Dummy,
    /// POSTs gzip JSON to another geosubmit endpoint.
    Geosubmit,
    /// Feeds this service's own station tables.
    Internal,
    /// Writes gzip JSON objects to S3 (`s3://`) or a local directory (`file://`).
    S3,
    /// A value the service does not know (only reachable through manual SQL): the
    /// target's queue is filled but never consumed, as in the original.
    Unknown(String),
}

impl ExportSchema {
    /// The schemas an administrator may choose.
    pub const KNOWN: [ExportSchema; 4] = [
        ExportSchema::Dummy,
        ExportSchema::Geosubmit,
        ExportSchema::Internal,
        ExportSchema::S3,
    ];

    /// Stored text.
    pub fn as_str(&self) -> &str {
        match self {
            ExportSchema::Dummy => "dummy",
            ExportSchema::Geosubmit => "geosubmit",
            ExportSchema::Internal => "internal",
            ExportSchema::S3 => "s3",
            ExportSchema::Unknown(s) => s,
        }
    }

    /// Parses stored text; anything unknown is kept as [`ExportSchema::Unknown`].
    pub fn parse(text: &str) -> ExportSchema {
        match text {
            "dummy" => ExportSchema::Dummy,
            "geosubmit" => ExportSchema::Geosubmit,
            "internal" => ExportSchema::Internal,
            "s3" => ExportSchema::S3,
            other => ExportSchema::Unknown(other.to_string()),
        }
    }
}

impl fmt::Display for ExportSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ExportSchema {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ExportSchema {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| ExportSchema::parse(&s))
    }
}

/// One row of `export_config` (api §8).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportConfig {
    /// Unique target name; part of its queue names and metric tags.
    pub name: String,
    /// Reports per export batch; 0 = everything available.
    pub batch: i64,
    /// Exporter kind.
    pub schema: ExportSchema,
    /// Target: the geosubmit URL, or `s3://bucket/template` / `file://dir/template`.
    pub url: Option<String>,
    /// API keys whose reports are not sent here. `None` is NULL; `Some([])` is `''`.
    pub skip_keys: Option<Vec<String>>,
    /// Sources whose reports are not sent here.
    pub skip_sources: Option<Vec<ReportSource>>,
}

/// Joins a set for its comma-separated column.
pub fn join_set<T: AsRef<str>>(set: &[T]) -> String {
    set.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(",")
}

/// Splits a comma-separated set column; empty parts are dropped.
pub fn split_set(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses a comma-separated list of source names, naming the field on error.
pub fn parse_sources(field: &'static str, text: &str) -> Result<Vec<ReportSource>, FieldError> {
    let mut out = Vec::new();
    for name in split_set(text) {
        let source = ReportSource::from_name(&name).ok_or_else(|| {
            FieldError::new(
                field,
                format!("{name:?} is not one of fixed, gnss, fused, query"),
            )
        })?;
        if !out.contains(&source) {
            out.push(source);
        }
    }
    out.sort();
    Ok(out)
}

impl ExportConfig {
    /// A target with the given name and schema, batch 0 and no URL or skips.
    pub fn new(name: impl Into<String>, schema: ExportSchema) -> ExportConfig {
        ExportConfig {
            name: name.into(),
            batch: 0,
            schema,
            url: None,
            skip_keys: None,
            skip_sources: None,
        }
    }

    /// The row every fresh database gets, so submitted data reaches the station
    /// tables without an admin step.
    pub fn default_internal() -> ExportConfig {
        ExportConfig {
            batch: 100,
            ..ExportConfig::new("internal", ExportSchema::Internal)
        }
    }

    /// Whether reports of this key and source go to this target.
    pub fn allowed(&self, api_key: Option<&str>, source: ReportSource) -> bool {
        let key_skipped = match (api_key, &self.skip_keys) {
            (Some(key), Some(skip)) => skip.iter().any(|k| k == key),
            _ => false,
        };
        let source_skipped = self
            .skip_sources
            .as_ref()
            .is_some_and(|skip| skip.contains(&source));
        !key_skipped && !source_skipped
    }

    /// Refuses a second `internal` target next to the stored `targets` (this
    /// row's own stored version, found by name, does not count): every internal
    /// target applies every report to the station tables, so two would count
    /// each observation twice.
    pub fn validate_among(&self, targets: &[ExportConfig]) -> Result<(), FieldError> {
        if self.schema != ExportSchema::Internal {
            return Ok(());
        }
        match targets
            .iter()
            .find(|t| t.schema == ExportSchema::Internal && t.name != self.name)
        {
            Some(other) => Err(FieldError::new(
                "schema",
                format!(
                    "{:?} is already the internal target: only one may write to the station tables",
                    other.name
                ),
            )),
            None => Ok(()),
        }
    }

    /// Refuses values the pipeline could not use, naming the first bad column.
    pub fn validate(&self) -> Result<(), FieldError> {
        let name_ok = (1..=40).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !name_ok {
            return Err(FieldError::new(
                "name",
                "must be 1 to 40 characters of A-Z, a-z, 0-9, -, _ and .",
            ));
        }
        if self.batch < 0 {
            return Err(FieldError::new(
                "batch",
                format!("{} must not be negative", self.batch),
            ));
        }
        if let ExportSchema::Unknown(s) = &self.schema {
            return Err(FieldError::new(
                "schema",
                format!("{s:?} is not one of dummy, geosubmit, internal, s3"),
            ));
        }
        check_len("url", self.url.as_deref(), 512)?;
        match (&self.schema, self.url.as_deref()) {
            (ExportSchema::Geosubmit, Some(url)) if is_http_url(url) => {}
            (ExportSchema::Geosubmit, _) => {
                return Err(FieldError::new(
                    "url",
                    "a geosubmit target needs an http(s) URL",
                ));
            }
            (ExportSchema::S3, Some(url)) if valid_object_url(url) => {}
            (ExportSchema::S3, _) => {
                return Err(FieldError::new(
                    "url",
                    "an s3 target needs s3://bucket/path or file:///directory/path",
                ));
            }
            _ => {}
        }
        if let Some(keys) = &self.skip_keys {
            check_len("skip_keys", Some(&join_set(keys)), 1024)?;
            // No key contains a comma or white space: such an entry is a typo
            // (`a b` for `a,b`) that would never match.
            let not_a_key =
                |k: &&String| k.is_empty() || k.contains(|c: char| c == ',' || c.is_whitespace());
            if let Some(bad) = keys.iter().find(not_a_key) {
                return Err(FieldError::new(
                    "skip_keys",
                    format!("{bad:?} is not a key (keys have no commas or spaces)"),
                ));
            }
        }
        Ok(())
    }
}

fn valid_object_url(url: &str) -> bool {
    if let Some(rest) = url.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or("");
        return !bucket.is_empty();
    }
    url.strip_prefix("file://").is_some_and(|p| p.len() > 1)
}

/// A partial update of an [`ExportConfig`], shared by the CLI and the admin API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ExportConfigPatch {
    pub batch: Option<i64>,
    pub schema: Option<ExportSchema>,
    #[serde(default, deserialize_with = "double_option")]
    pub url: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub skip_keys: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double_option")]
    pub skip_sources: Option<Option<Vec<ReportSource>>>,
}

impl ExportConfigPatch {
    /// Applies the patch to `row` (validation is the caller's next step).
    pub fn apply(&self, row: &mut ExportConfig) {
        if let Some(v) = self.batch {
            row.batch = v;
        }
        if let Some(v) = &self.schema {
            row.schema = v.clone();
        }
        if let Some(v) = &self.url {
            row.url = v.clone();
        }
        if let Some(v) = &self.skip_keys {
            row.skip_keys = v.clone();
        }
        if let Some(v) = &self.skip_sources {
            row.skip_sources = v.clone();
        }
    }
}

impl ExportSchema {
    /// Whether batches of this schema leave the service (geosubmit, s3/file):
    /// such targets may hang or fail, so the worker sends to them in tasks of
    /// their own with a back-off, never inline with the station updates.
    pub fn is_remote(&self) -> bool {
        matches!(self, ExportSchema::Geosubmit | ExportSchema::S3)
    }
}

/// The state of a remote export target as the worker last saw it, shared with
/// the web tier's `/__heartbeat__` through the counters' cache (Redis in a
/// cluster, process memory in embedded mode) under [`export_health_key`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExportHealth {
    /// The last attempt succeeded (or nothing failed yet).
    pub up: bool,
    /// Failed attempts in a row since the last success.
    pub consecutive_failures: u32,
    /// Seconds until the next attempt (the back-off), 0 when not backing off.
    pub retry_in_seconds: u64,
    /// Why the last attempt failed, when it did.
    pub last_error: Option<String>,
    /// When this state was recorded, RFC 3339 (UTC).
    pub checked_at: String,
}

/// The counters-cache key holding the [`ExportHealth`] (JSON) of target `name`.
pub fn export_health_key(name: &str) -> Vec<u8> {
    format!("export_health:{name}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_rule() {
        let mut c = ExportConfig::new("backup", ExportSchema::Dummy);
        assert!(c.allowed(None, ReportSource::Gnss));
        c.skip_keys = Some(vec!["partner".into()]);
        c.skip_sources = Some(vec![ReportSource::Query]);
        assert!(!c.allowed(Some("partner"), ReportSource::Gnss));
        assert!(c.allowed(Some("other"), ReportSource::Gnss));
        assert!(
            c.allowed(None, ReportSource::Fused),
            "anonymous is never skipped by key"
        );
        assert!(!c.allowed(None, ReportSource::Query));
    }

    #[test]
    fn one_internal_target_at_most() {
        let internal = ExportConfig::default_internal();
        let stored = vec![
            internal.clone(),
            ExportConfig::new("bk", ExportSchema::Dummy),
        ];
        let second = ExportConfig::new("internal2", ExportSchema::Internal);
        let e = second.validate_among(&stored).unwrap_err();
        assert_eq!(e.field, "schema");
        assert!(e.message.contains("\"internal\""), "{}", e.message);
        // The stored internal target itself may be updated.
        assert_eq!(internal.validate_among(&stored), Ok(()));
        // So may others, and a new internal target when none is stored.
        let mut bk = ExportConfig::new("bk", ExportSchema::Dummy);
        assert_eq!(bk.validate_among(&stored), Ok(()));
        assert_eq!(second.validate_among(&stored[1..]), Ok(()));
        // Turning another target into a second internal one is refused too.
        bk.schema = ExportSchema::Internal;
        assert_eq!(bk.validate_among(&stored).unwrap_err().field, "schema");
    }

    #[test]
    fn validation() {
        assert_eq!(ExportConfig::default_internal().validate(), Ok(()));
        let mut c = ExportConfig::new("up", ExportSchema::Geosubmit);
        assert_eq!(c.validate().unwrap_err().field, "url");
        c.url = Some("https://example.org/v2/geosubmit?key=k".into());
        assert_eq!(c.validate(), Ok(()));
        let mut s = ExportConfig::new("bk", ExportSchema::S3);
        s.url = Some("file:///var/exports/{source}/{year}".into());
        assert_eq!(s.validate(), Ok(()));
        s.url = Some("s3:///nobucket".into());
        assert_eq!(s.validate().unwrap_err().field, "url");
        let bad = ExportConfig::new("a:b", ExportSchema::Dummy);
        assert_eq!(bad.validate().unwrap_err().field, "name");
        let unknown = ExportConfig::new("x", ExportSchema::parse("ftp"));
        assert_eq!(unknown.validate().unwrap_err().field, "schema");
        assert_eq!(
            parse_sources("skip_sources", "query, fused").unwrap(),
            vec![ReportSource::Fused, ReportSource::Query]
        );
        assert_eq!(
            parse_sources("skip_sources", "gps").unwrap_err().field,
            "skip_sources"
        );
    }
}
