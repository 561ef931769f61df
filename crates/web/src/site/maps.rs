//! The map page and `/map.json`: where the coverage tiles are (live from this
//! server, or from the asset bucket when `asset_url` is set) and which base
//! layer the page draws under them.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::{Json, Response};
use axum::routing::get;
use serde_json::json;

use super::pages::{Layout, render};
use super::{SiteConfig, page_response};
use crate::SharedState;

/// Path of the live tiles of this server.
pub(crate) const LIVE_TILES: &str = "/tiles/";

/// The base of the coverage tiles, ending in `/`: `<asset_url>/tiles/` or the
/// live `/tiles/`.
pub(crate) fn tiles_base(config: &SiteConfig) -> String {
    match config.asset_url.as_deref().filter(|u| !u.is_empty()) {
        Some(base) => {
            let sep = if base.ends_with('/') { "" } else { "/" };
            format!("{base}{sep}tiles/")
        }
        None => LIVE_TILES.to_string(),
    }
}

/// The coverage tiles' URL template.
pub(crate) fn tiles_template(config: &SiteConfig) -> String {
    format!("{}{{z}}/{{x}}/{{y}}.png", tiles_base(config))
}

/// A tile URL of `template` (`{s}` = the first subdomain, `{r}` = none).
pub(crate) fn fill_template(template: &str, z: u32, x: u32, y: &str) -> String {
    template
        .replace("{z}", &z.to_string())
        .replace("{x}", &x.to_string())
        .replace("{y}", y)
        .replace("{s}", "a")
        .replace("{r}", "")
}

#[derive(Template)]
#[template(path = "map.html")]
struct MapPage<'a> {
    l: Layout<'a>,
    map_enabled: bool,
    tiles_url: String,
    base_url: &'a str,
    base_attribution: &'a str,
}

async fn map_page(State(state): State<SharedState>) -> Response {
    let site = &state.site;
    let mut l = site.layout("Map", "/map");
    let map_enabled = site.map_enabled();
    if map_enabled {
        l.css = &["/static/vendor/leaflet/leaflet.css"];
        l.js = &["/static/vendor/leaflet/leaflet.js", "/static/js/map.js"];
    }
    render(&MapPage {
        l,
        map_enabled,
        tiles_url: tiles_template(&site.config),
        base_url: &site.config.map_base_url,
        base_attribution: &site.config.map_base_attribution,
    })
}

async fn map_json(State(state): State<SharedState>) -> Response {
    page_response(Json(json!({"tiles_url": tiles_base(&state.site.config)})))
}

pub(crate) fn routes() -> Router<SharedState> {
    Router::new()
        .route("/map", get(map_page))
        .route("/map.json", get(map_json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_urls() {
        let mut c = SiteConfig::default();
        assert_eq!(tiles_template(&c), "/tiles/{z}/{x}/{y}.png");
        c.asset_url = Some("http://127.0.0.1:9/static".into());
        assert_eq!(
            tiles_template(&c),
            "http://127.0.0.1:9/static/tiles/{z}/{x}/{y}.png"
        );
        assert_eq!(tiles_base(&c), "http://127.0.0.1:9/static/tiles/");
        c.asset_url = Some("https://cdn.example/".into());
        assert_eq!(tiles_base(&c), "https://cdn.example/tiles/");
        assert_eq!(
            fill_template(&tiles_template(&c), 0, 0, "0@2x"),
            "https://cdn.example/tiles/0/0/0@2x.png"
        );
        assert_eq!(
            fill_template("https://{s}.t.example/{z}/{x}/{y}{r}.png", 3, 4, "5"),
            "https://a.t.example/3/4/5.png"
        );
    }
}
