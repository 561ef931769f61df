//! The public web site: server-rendered pages (askama templates compiled into
//! the binary), the static assets embedded with them, the JSON behind the
//! charts and the map, the live coverage tiles, the downloads of the public
//! cell export and the API reference.
//!
//! Everything an operator can change comes in through [`SiteConfig`]; the
//! texts of the legal pages can be replaced by files of a content directory.

mod assets;
mod cache;
mod content;
mod csp;
mod downloads;
mod maps;
mod openapi;
mod pages;
mod ranges;
mod stats;
pub mod tiles;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use object_store::ObjectStore;

use crate::SharedState;

pub use csp::content_security_policy;
pub use tiles::TileSettings;

/// A directory of an object store: a `file://` directory or an S3 prefix, as
/// opened by the binary from a URL (the site only reads from it).
#[derive(Clone, Debug)]
pub struct ObjectDir {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix of the directory, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// Whether this is S3 (objects can be linked through `asset_url`) rather
    /// than a local directory (served by the web role itself).
    pub s3: bool,
}

impl ObjectDir {
    /// The object path of `relative` (slash-separated) below the prefix.
    pub fn path(&self, relative: &str) -> object_store::path::Path {
        object_store::path::Path::from_iter(
            self.prefix
                .split('/')
                .chain(relative.split('/'))
                .filter(|s| !s.is_empty()),
        )
    }
}

/// Who runs this instance, shown on the contact page and in the footer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Operator {
    /// Person or organisation.
    pub name: Option<String>,
    /// Contact address for questions and requests.
    pub email: Option<String>,
    /// Web site of the operator.
    pub url: Option<String>,
    /// Postal address for formal notices.
    pub address: Option<String>,
}

/// What the operator configures about the site.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// Name shown in titles, the header and the texts.
    pub site_name: String,
    /// Who runs the instance.
    pub operator: Operator,
    /// Where the source code of this instance is published; no link when unset.
    pub source_url: Option<String>,
    /// Directory whose `home.html`, `privacy.html`, `terms.html`,
    /// `contact.html`, `optout.html` (HTML fragments) replace the default
    /// texts of those pages.
    pub content_dir: Option<PathBuf>,
    /// URL template of the map's base layer (`{z}`, `{x}`, `{y}`, optional
    /// `{s}`); empty turns the maps off.
    pub map_base_url: String,
    /// Attribution of the base layer (HTML).
    pub map_base_attribution: String,
    /// Public HTTP base of the asset bucket (tiles under `tiles/`, exports
    /// under their key); unset: tiles are served live by this server.
    pub asset_url: Option<String>,
    /// The public cell export directory (`cell_export_url`), listed on
    /// `/downloads`; `None` when the export is off.
    pub exports: Option<ObjectDir>,
    /// Coverage tiles.
    pub tiles: TileSettings,
}

/// The OpenStreetMap standard tile server.
pub const OSM_TILES: &str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";
/// Its required attribution.
pub const OSM_ATTRIBUTION: &str =
    "&copy; <a href=\"https://www.openstreetmap.org/copyright\">OpenStreetMap</a> contributors";

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            site_name: "ichnaea".into(),
            operator: Operator::default(),
            source_url: None,
            content_dir: None,
            map_base_url: OSM_TILES.into(),
            map_base_attribution: OSM_ATTRIBUTION.into(),
            asset_url: None,
            exports: None,
            tiles: TileSettings::default(),
        }
    }
}

/// The site's state: its configuration, the texts loaded at start and the
/// tile renderer with its caches.
pub struct Site {
    pub(crate) config: SiteConfig,
    pub(crate) content: content::Content,
    pub(crate) csp: HeaderValue,
    pub(crate) tiles: tiles::Tiles,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("site_name", &self.config.site_name)
            .finish_non_exhaustive()
    }
}

impl Site {
    /// Builds the site: reads the operator's text files (a missing or
    /// unreadable one keeps the default text, with a warning) and prepares the
    /// Content-Security-Policy naming exactly the hosts the pages use.
    pub fn new(config: SiteConfig) -> Site {
        let content = content::Content::load(config.content_dir.as_deref());
        let csp = content_security_policy(&config);
        let csp = HeaderValue::from_str(&csp).unwrap_or_else(|_| {
            tracing::warn!(
                "the map or asset URL makes an invalid Content-Security-Policy; using 'self' only"
            );
            HeaderValue::from_static("default-src 'self'")
        });
        let tiles = tiles::Tiles::new(config.tiles.clone());
        Site {
            config,
            content,
            csp,
            tiles,
        }
    }

    /// Whether the pages show maps (a base layer is configured).
    pub fn map_enabled(&self) -> bool {
        !self.config.map_base_url.is_empty()
    }

    /// Live tiles rendered so far by this process (also the `tiles.render`
    /// metric).
    pub fn tile_renders(&self) -> u64 {
        self.tiles.renders()
    }
}

impl Default for Site {
    fn default() -> Self {
        Site::new(SiteConfig::default())
    }
}

/// The site's routes.
pub(crate) fn routes() -> Router<SharedState> {
    Router::new()
        .merge(pages::routes())
        .merge(assets::routes())
        .merge(stats::routes())
        .merge(maps::routes())
        .merge(tiles::routes())
        .merge(downloads::routes())
        .merge(openapi::routes())
}

/// Pages and page data may be cached for an hour.
const PAGE_MAX_AGE: u64 = 3600;

/// `Cache-Control: max-age=<secs>` (with `, public` when `public`) and the
/// matching `Expires`.
pub(crate) fn cache_headers(response: &mut Response, secs: u64, public: bool) {
    let control = if public {
        format!("max-age={secs}, public")
    } else {
        format!("max-age={secs}")
    };
    let expires = chrono::Utc::now() + chrono::Duration::seconds(secs as i64);
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&control) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(&expires.format("%a, %d %b %Y %H:%M:%S GMT").to_string()) {
        headers.insert(header::EXPIRES, v);
    }
}

/// A page or page-data response cached for an hour.
pub(crate) fn page_response(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    cache_headers(&mut response, PAGE_MAX_AGE, false);
    response
}
