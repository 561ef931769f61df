//! The site's static files, compiled into the binary: served under `/static/`
//! with a day of `Cache-Control`, a strong `ETag` and `If-None-Match`
//! revalidation, plus the icons browsers ask for at fixed paths.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use md5::{Digest, Md5};

use crate::SharedState;

/// Static files may be cached for a day.
const STATIC_MAX_AGE: u64 = 86_400;

/// One embedded file.
struct Asset {
    path: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset {
            path: $path,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $path)),
        }),*]
    };
}

/// Every file below `crates/web/assets/` that the pages use.
static ASSETS: &[Asset] = assets![
    "css/site.css",
    "js/map.js",
    "js/stats.js",
    "js/regions.js",
    "images/logo.svg",
    "images/favicon.png",
    "images/favicon.ico",
    "images/apple-touch-icon.png",
    "vendor/leaflet/leaflet.js",
    "vendor/leaflet/leaflet.css",
    "vendor/leaflet/LICENSE",
    "vendor/leaflet/images/layers.png",
    "vendor/leaflet/images/layers-2x.png",
    "vendor/leaflet/images/marker-icon.png",
    "vendor/uplot/uPlot.iife.min.js",
    "vendor/uplot/uPlot.min.css",
    "vendor/uplot/LICENSE",
];

/// An asset with its precomputed headers.
pub(crate) struct Served {
    pub bytes: &'static [u8],
    pub content_type: &'static str,
    pub etag: HeaderValue,
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

/// A strong entity tag of `bytes` (the first 16 hex digits of their MD5).
pub(crate) fn etag_of(bytes: &[u8]) -> HeaderValue {
    let digest = Md5::digest(bytes);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn table() -> &'static HashMap<&'static str, Served> {
    static TABLE: OnceLock<HashMap<&'static str, Served>> = OnceLock::new();
    TABLE.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                (
                    a.path,
                    Served {
                        bytes: a.bytes,
                        content_type: content_type(a.path),
                        etag: etag_of(a.bytes),
                    },
                )
            })
            .collect()
    })
}

/// The embedded file at `path` (relative to `/static/`).
pub(crate) fn get_asset(path: &str) -> Option<&'static Served> {
    table().get(path)
}

/// Whether the request's `If-None-Match` matches `etag`.
pub(crate) fn not_modified(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(value) = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let ours = etag.to_str().unwrap_or("");
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == ours || tag.strip_prefix("W/").is_some_and(|t| t == ours))
}

/// The response for `bytes` tagged `etag`: 304 when the client has it already.
pub(crate) fn conditional(
    request: &HeaderMap,
    bytes: impl Into<axum::body::Body>,
    content_type: &'static str,
    etag: &HeaderValue,
) -> Response {
    if not_modified(request, etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag.clone())]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::ETAG, etag.clone()),
        ],
        bytes.into(),
    )
        .into_response()
}

fn serve(request: &HeaderMap, path: &str, public: bool) -> Response {
    match get_asset(path) {
        Some(asset) => {
            let mut response = conditional(request, asset.bytes, asset.content_type, &asset.etag);
            super::cache_headers(&mut response, STATIC_MAX_AGE, public);
            response
        }
        None => crate::service::not_found_page(),
    }
}

async fn static_file(Path(path): Path<String>, request: HeaderMap) -> Response {
    serve(&request, &path, false)
}

async fn favicon(request: HeaderMap) -> Response {
    serve(&request, "images/favicon.ico", true)
}

async fn touch_icon(request: HeaderMap) -> Response {
    serve(&request, "images/apple-touch-icon.png", true)
}

pub(crate) fn routes() -> Router<SharedState> {
    Router::new()
        .route("/static/{*path}", get(static_file))
        .route("/favicon.ico", get(favicon))
        .route("/apple-touch-icon-precomposed.png", get(touch_icon))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_typed_and_tagged() {
        for a in ASSETS {
            let served = get_asset(a.path).expect("listed");
            assert!(!served.bytes.is_empty(), "{}", a.path);
            assert!(served.etag.to_str().unwrap().len() == 18, "{}", a.path);
        }
        assert_eq!(
            content_type("vendor/leaflet/leaflet.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type("vendor/uplot/LICENSE"),
            "text/plain; charset=utf-8"
        );
    }

    #[test]
    fn if_none_match_forms() {
        let etag = HeaderValue::from_static("\"abc\"");
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &etag));
        for v in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*"] {
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(v));
            assert!(not_modified(&h, &etag), "{v}");
        }
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abd\""));
        assert!(!not_modified(&h, &etag));
    }
}
