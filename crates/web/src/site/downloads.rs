//! The downloads page: the public cell export files (`cell_export_url`),
//! newest first with their sizes, and the files themselves under
//! `/downloads/<name>` (with `Content-Length` and single-range requests)
//! unless they are on S3 and `asset_url` names a public host for them.

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use ichnaea_core::export::DOWNLOADS_CACHE_KEY;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use super::cache::cached;
use super::pages::{Layout, render};
use super::ranges::{Requested, requested};
use super::{ObjectDir, SiteConfig};
use crate::SharedState;

/// The listing is cached for half an hour (the export task drops it sooner).
const DOWNLOADS_TTL: u64 = 1800;
/// Path of the files served by this server.
const DOWNLOAD_PATH: &str = "/downloads/";

/// One export file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Download {
    pub name: String,
    pub path: String,
    /// Kilobytes, rounded half to even.
    pub size: u64,
}

/// The page's three lists.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Downloads {
    pub full: Vec<Download>,
    pub diff1: Vec<Download>,
    pub diff2: Vec<Download>,
}

/// `bytes` in kilobytes, rounded half to even (512 B → 0, 1 536 B → 2).
pub(crate) fn kilobytes(bytes: u64) -> u64 {
    let (whole, rest) = (bytes / 1024, bytes % 1024);
    if rest > 512 || (rest == 512 && whole % 2 == 1) {
        whole + 1
    } else {
        whole
    }
}

/// Whether `name` is a file this page lists and serves: an export file name
/// of safe characters only (so it can never leave the directory).
fn export_name(name: &str) -> bool {
    !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && (name.contains("full-") || name.contains("diff-"))
}

/// Where the page links a file.
fn link(config: &SiteConfig, dir: &ObjectDir, name: &str) -> String {
    match config.asset_url.as_deref().filter(|_| dir.s3) {
        Some(base) => {
            let sep = if base.ends_with('/') { "" } else { "/" };
            format!("{base}{sep}{}", dir.path(name))
        }
        None => format!("{DOWNLOAD_PATH}{name}"),
    }
}

/// Lists the export directory.
async fn list(config: &SiteConfig) -> Result<Downloads, object_store::Error> {
    let Some(dir) = &config.exports else {
        return Ok(Downloads::default());
    };
    let root = dir.path("");
    let mut full = Vec::new();
    let mut diff = Vec::new();
    let mut listing = dir.store.list(Some(&root));
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        let Some(name) = meta.location.filename().map(str::to_string) else {
            continue;
        };
        if !export_name(&name) {
            continue;
        }
        let item = Download {
            path: link(config, dir, &name),
            size: kilobytes(meta.size),
            name,
        };
        if item.name.contains("diff-") {
            diff.push(item);
        } else {
            full.push(item);
        }
    }
    // Names carry their time: descending is newest first.
    full.sort_by(|a, b| b.name.cmp(&a.name));
    diff.sort_by(|a, b| b.name.cmp(&a.name));
    let diff2 = diff.split_off(diff.len().div_ceil(2));
    Ok(Downloads {
        full,
        diff1: diff,
        diff2,
    })
}

#[derive(Template)]
#[template(path = "downloads.html")]
struct DownloadsPage<'a> {
    l: Layout<'a>,
    downloads: Downloads,
    enabled: bool,
}

async fn downloads_page(State(state): State<SharedState>) -> Response {
    let site = &state.site;
    let listed = cached(&state.counters, DOWNLOADS_CACHE_KEY, DOWNLOADS_TTL, || {
        list(&site.config)
    })
    .await;
    let downloads = listed.unwrap_or_else(|e| {
        // Not cached: the next request tries again.
        tracing::error!(error = %e, "cannot list the cell export files");
        Downloads::default()
    });
    render(&DownloadsPage {
        l: site.layout("Downloads", "/downloads"),
        downloads,
        enabled: site.config.exports.is_some(),
    })
}

fn status(code: StatusCode) -> Response {
    code.into_response()
}

async fn download(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    request: HeaderMap,
) -> Response {
    let Some(dir) = &state.site.config.exports else {
        return crate::service::not_found_page();
    };
    if !export_name(&name) {
        return crate::service::not_found_page();
    }
    let path = dir.path(&name);
    let meta = match dir.store.head(&path).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => return crate::service::not_found_page(),
        Err(e) => {
            tracing::error!(error = %e, file = %name, "cannot read an export file");
            return status(StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let size = meta.size;
    let range = request.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (code, range) = match requested(range, size) {
        Requested::Whole => (StatusCode::OK, None),
        Requested::Part { start, end } => (StatusCode::PARTIAL_CONTENT, Some((start, end))),
        Requested::Unsatisfiable => {
            let mut response = status(StatusCode::RANGE_NOT_SATISFIABLE);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return response;
        }
    };
    let options = GetOptions {
        range: range.map(|(start, end)| GetRange::Bounded(start..end + 1)),
        ..GetOptions::default()
    };
    let body = match dir.store.get_opts(&path, options).await {
        Ok(found) => found.into_stream(),
        Err(object_store::Error::NotFound { .. }) => return crate::service::not_found_page(),
        Err(e) => {
            tracing::error!(error = %e, file = %name, "cannot read an export file");
            return status(StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let length = range.map_or(size, |(start, end)| end + 1 - start);
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/gzip"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some((start, end)) = range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}"))
    {
        headers.insert(header::CONTENT_RANGE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    super::cache_headers(&mut response, 3600, true);
    response
}

pub(crate) fn routes() -> Router<SharedState> {
    Router::new()
        .route("/downloads", get(downloads_page))
        .route("/downloads/{name}", get(download))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_half_to_even() {
        assert_eq!(kilobytes(1000), 1);
        assert_eq!(kilobytes(8192), 8);
        assert_eq!(kilobytes(512), 0);
        assert_eq!(kilobytes(1536), 2);
        assert_eq!(kilobytes(2560), 2);
        assert_eq!(kilobytes(0), 0);
    }

    #[test]
    fn only_export_names_are_served() {
        assert!(export_name("MLS-full-cell-export-2016-02-26T000000.csv.gz"));
        assert!(export_name("MLS-diff-cell-export-2016-02-26T100000.csv.gz"));
        for bad in [
            "../MLS-full-x",
            "..",
            ".full-hidden",
            "full-/x",
            "full-%2e%2e",
            "readme.txt",
            "MLS-full cell",
        ] {
            assert!(!export_name(bad), "{bad}");
        }
    }
}
