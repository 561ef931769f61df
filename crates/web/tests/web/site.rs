//! The public site through the real router: pages, assets, headers, caching.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::Datelike;
use ichnaea_web::site::{Operator, Site, SiteConfig};
use ichnaea_web::{AppState, router};
use serde_json::json;

use crate::{Fx, Reply, backend_tests, call, state};

/// The state of `fx` with the site built from `config`.
pub(crate) fn site_state(fx: &Fx, config: SiteConfig) -> AppState {
    AppState {
        site: Arc::new(Site::new(config)),
        ..state(fx, false)
    }
}

/// The configuration of spec's site tests: an asset host and a base layer of
/// our own.
pub(crate) fn spec_config() -> SiteConfig {
    SiteConfig {
        asset_url: Some("http://127.0.0.1:9/static".into()),
        map_base_url: "http://127.0.0.1:9/base/{z}/{x}/{y}.png".into(),
        ..SiteConfig::default()
    }
}

/// `method uri` with extra request headers and an optional body.
pub(crate) async fn request(
    app: &axum::Router,
    method: Method,
    uri: &str,
    headers: &[(header::HeaderName, &str)],
    body: Option<Vec<u8>>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        req = req.header(name, *value);
    }
    let body = body.map_or_else(Body::empty, Body::from);
    crate::send_request(app, req.body(body).unwrap()).await
}

/// GET `uri` with extra request headers.
pub(crate) async fn get_with(
    app: &axum::Router,
    uri: &str,
    headers: &[(header::HeaderName, &str)],
) -> Reply {
    request(app, Method::GET, uri, headers, None).await
}

pub(crate) async fn get(app: &axum::Router, uri: &str) -> Reply {
    call(app, Method::GET, uri, None, None).await
}

impl Reply {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
}

/// The `<title>` of an HTML page.
fn title(r: &Reply) -> String {
    let text = r.text();
    let start = text.find("<title>").expect("a title") + 7;
    let end = text[start..].find("</title>").unwrap() + start;
    text[start..end].to_string()
}

fn assert_html_page(r: &Reply, want_title: &str) {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.header(header::CONTENT_TYPE),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(title(r), want_title);
    assert!(
        r.text().contains(&format!(
            "<h1 id=\"main-title\">{}</h1>",
            want_title.split(" - ").nth(1).unwrap()
        )),
        "{want_title}"
    );
    assert_eq!(r.header(header::CACHE_CONTROL), Some("max-age=3600"));
    assert!(r.header(header::EXPIRES).is_some());
    assert!(
        !r.text().contains("Mozilla"),
        "this project's identity, not Mozilla's"
    );
}

async fn home_page_shows_the_map_callout_without_touching_the_database(fx: Fx) {
    let app = router(site_state(&fx, spec_config()));
    // A closed store fails every query: the page must not make one.
    fx.store.close().await;
    let r = get(&app, "/").await;
    assert_html_page(&r, "ichnaea - Overview");
    let text = r.text();
    assert!(
        text.contains("src=\"http://127.0.0.1:9/base/0/0/0.png\""),
        "{text}"
    );
    assert!(
        text.contains("src=\"http://127.0.0.1:9/static/tiles/0/0/0@2x.png\""),
        "{text}"
    );
    assert!(text.contains("href=\"/map\""));
    assert!(text.contains("Detailed data map"));
}

async fn no_base_layer_turns_the_maps_off(fx: Fx) {
    let app = router(site_state(
        &fx,
        SiteConfig {
            map_base_url: String::new(),
            ..spec_config()
        },
    ));
    let home = get(&app, "/").await;
    assert_html_page(&home, "ichnaea - Overview");
    assert!(!home.text().contains("Detailed data map"));
    let map = get(&app, "/map").await;
    assert_html_page(&map, "ichnaea - Map");
    assert!(map.text().contains("There is no map information to show."));
    assert!(!map.text().contains("id=\"map\""));
    assert!(!map.text().contains("leaflet.js"));
}

async fn map_page_points_at_the_tiles(fx: Fx) {
    let app = router(site_state(&fx, spec_config()));
    let r = get(&app, "/map").await;
    assert_html_page(&r, "ichnaea - Map");
    let text = r.text();
    assert!(
        text.contains("data-map_tiles_url=\"http://127.0.0.1:9/static/tiles/{z}/{x}/{y}.png\""),
        "{text}"
    );
    assert!(text.contains("data-map_base_url=\"http://127.0.0.1:9/base/{z}/{x}/{y}.png\""));
    assert!(
        text.contains("OpenStreetMap</a> contributors"),
        "attribution"
    );
    for asset in [
        "/static/vendor/leaflet/leaflet.css",
        "/static/vendor/leaflet/leaflet.js",
        "/static/js/map.js",
    ] {
        assert!(text.contains(asset), "{asset}");
        assert_eq!(get(&app, asset).await.status, StatusCode::OK, "{asset}");
    }
    let json = get(&app, "/map.json").await;
    assert_eq!(json.status, StatusCode::OK);
    assert_eq!(
        json.json(),
        json!({"tiles_url": "http://127.0.0.1:9/static/tiles/"})
    );
    assert_eq!(json.header(header::CACHE_CONTROL), Some("max-age=3600"));

    // Without an asset host the tiles are live from this server.
    let app = router(site_state(&fx, SiteConfig::default()));
    let r = get(&app, "/map").await;
    assert!(
        r.text()
            .contains("data-map_tiles_url=\"/tiles/{z}/{x}/{y}.png\"")
    );
    assert!(
        r.text()
            .contains("data-map_base_url=\"https://tile.openstreetmap.org/{z}/{x}/{y}.png\"")
    );
    assert_eq!(
        get(&app, "/map.json").await.json(),
        json!({"tiles_url": "/tiles/"})
    );
}

async fn text_pages_carry_the_operators_identity(fx: Fx) {
    let config = SiteConfig {
        site_name: "Geo Test".into(),
        operator: Operator {
            name: Some("Example Operator".into()),
            email: Some("geo@example.org".into()),
            url: Some("https://example.org/".into()),
            address: Some("1 Example Street, Exampleton".into()),
        },
        ..spec_config()
    };
    let app = router(site_state(&fx, config));
    fx.store.close().await;
    for (path, title) in [
        ("/contact", "Geo Test - Contact"),
        ("/optout", "Geo Test - Opt-Out"),
        ("/privacy", "Geo Test - Privacy Notice"),
        ("/terms", "Geo Test - Terms of Service"),
    ] {
        let r = get(&app, path).await;
        assert_html_page(&r, title);
        assert!(
            r.text().contains("Example Operator"),
            "{path}: footer credit"
        );
    }
    let contact = get(&app, "/contact").await.text();
    assert!(contact.contains("href=\"mailto:geo@example.org\""));
    assert!(contact.contains("https://example.org/"));
    assert!(contact.contains("1 Example Street, Exampleton"));
    let optout = get(&app, "/optout").await.text();
    assert!(optout.contains("MyWirelessNetwork_nomap"));
    let privacy = get(&app, "/privacy").await.text();
    assert!(privacy.contains("Wi-Fi"), "says what is collected");
    assert!(privacy.contains("/downloads"), "says what is published");

    // Without operator details the contact page says so.
    let app = router(site_state(&fx, SiteConfig::default()));
    let contact = get(&app, "/contact").await;
    assert_html_page(&contact, "ichnaea - Contact");
    assert!(contact.text().contains("has not published contact details"));
}

async fn operator_files_replace_the_default_texts(fx: Fx) {
    let dir = std::env::temp_dir().join(format!(
        "ichnaea-site-content-{}",
        ichnaea_testkit::unique()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("privacy.html"),
        "<p id=\"own\">Our own privacy text.</p>",
    )
    .unwrap();
    std::fs::write(dir.join("terms.html"), "<p>Our terms &amp; conditions.</p>").unwrap();
    let app = router(site_state(
        &fx,
        SiteConfig {
            content_dir: Some(dir.clone()),
            ..SiteConfig::default()
        },
    ));
    std::fs::remove_dir_all(&dir).unwrap();
    let privacy = get(&app, "/privacy").await;
    assert_html_page(&privacy, "ichnaea - Privacy Notice");
    assert!(
        privacy
            .text()
            .contains("<p id=\"own\">Our own privacy text.</p>")
    );
    assert!(!privacy.text().contains("What contributors send"));
    assert!(
        get(&app, "/terms")
            .await
            .text()
            .contains("Our terms &amp; conditions.")
    );
    // Pages without a file keep the default text.
    assert!(get(&app, "/optout").await.text().contains("_nomap"));
}

async fn layout_has_the_navigation_and_this_years_footer(fx: Fx) {
    let app = router(site_state(&fx, spec_config()));
    let text = get(&app, "/privacy").await.text();
    let nav_start = text.find("<nav").unwrap();
    let nav_end = text.find("</nav>").unwrap();
    let nav = &text[nav_start..nav_end];
    let hrefs: Vec<&str> = nav
        .split("href=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert_eq!(
        hrefs,
        [
            "/",
            "/api",
            "/downloads",
            "/map",
            "/stats/regions",
            "/stats"
        ]
    );
    let year = chrono::Utc::now().year();
    assert!(text.contains(&format!("&copy;{year} ichnaea")), "{text}");
    assert!(
        text.contains("OpenStreetMap</a> contributors, available under the Open Database License")
    );
}

async fn unknown_paths_are_a_404_page_without_metrics(fx: Fx) {
    let app = router(site_state(&fx, spec_config()));
    let r = get(&app, "/nobody-is-home").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, b"<h1>404 Not Found</h1>");
    assert!(r.header(header::CONTENT_SECURITY_POLICY).is_some());
    assert_eq!(r.header(header::X_FRAME_OPTIONS), Some("DENY"));
    let missing = get(&app, "/static/css/nothing.css").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body, b"<h1>404 Not Found</h1>");
    // Small files and static files are not counted either.
    for path in [
        "/favicon.ico",
        "/apple-touch-icon-precomposed.png",
        "/robots.txt",
        "/static/images/logo.svg",
    ] {
        assert_eq!(get(&app, path).await.status, StatusCode::OK, "{path}");
    }
    let metrics = ichnaea_web::metrics::prometheus_handle().render();
    for label in [
        "path=\"unknown\"",
        "path=\"nobody-is-home\"",
        "path=\"favicon.ico\"",
        "path=\"robots.txt\"",
        "path=\"apple-touch-icon-precomposed.png\"",
        "path=\"static.",
    ] {
        assert!(!metrics.contains(label), "{label} in {metrics}");
    }
}

async fn html_carries_the_content_security_policy_json_does_not(fx: Fx) {
    let app = router(site_state(&fx, spec_config()));
    let r = get(&app, "/").await;
    let csp = r
        .header(header::CONTENT_SECURITY_POLICY)
        .unwrap()
        .to_string();
    let directive = |name: &str| -> Vec<String> {
        csp.split(';')
            .map(str::trim)
            .find(|d| d.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {csp}"))
            .split_whitespace()
            .skip(1)
            .map(String::from)
            .collect()
    };
    assert_eq!(directive("default-src"), ["'self'"]);
    assert_eq!(directive("connect-src"), ["'self'", "http://127.0.0.1:9"]);
    assert_eq!(directive("img-src"), ["'self'", "http://127.0.0.1:9"]);
    assert_eq!(directive("script-src"), ["'self'"]);
    assert_eq!(directive("style-src"), ["'self'"]);
    assert_eq!(r.header(header::X_FRAME_OPTIONS), Some("DENY"));
    assert_eq!(r.header(header::X_XSS_PROTECTION), Some("1; mode=block"));
    crate::assert_security_headers(&r);

    // The default base layer's host is the only other one listed.
    let app = router(site_state(&fx, SiteConfig::default()));
    let r = get(&app, "/map").await;
    let csp = r.header(header::CONTENT_SECURITY_POLICY).unwrap();
    assert!(
        csp.contains("img-src 'self' https://tile.openstreetmap.org;"),
        "{csp}"
    );
    assert!(csp.contains("connect-src 'self';"), "{csp}");

    for path in ["/map.json", "/__version__"] {
        let r = get(&app, path).await;
        assert_eq!(r.status, StatusCode::OK);
        crate::assert_security_headers(&r);
        assert_eq!(r.header(header::CONTENT_SECURITY_POLICY), None, "{path}");
        assert_eq!(r.header(header::X_FRAME_OPTIONS), None, "{path}");
    }
}

async fn static_files_are_cached_and_revalidated(fx: Fx) {
    let app = router(site_state(&fx, spec_config()));
    let css = get(&app, "/static/css/site.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(
        css.header(header::CONTENT_TYPE),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(css.header(header::CACHE_CONTROL), Some("max-age=86400"));
    assert!(css.header(header::EXPIRES).is_some());
    let etag = css.header(header::ETAG).unwrap().to_string();
    let again = get_with(
        &app,
        "/static/css/site.css",
        &[(header::IF_NONE_MATCH, &etag)],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.header(header::ETAG), Some(etag.as_str()));
    let other = get_with(
        &app,
        "/static/css/site.css",
        &[(header::IF_NONE_MATCH, "\"0\"")],
    )
    .await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.body, css.body);

    let icon = get(&app, "/favicon.ico").await;
    assert_eq!(icon.status, StatusCode::OK);
    assert_eq!(icon.header(header::CONTENT_TYPE), Some("image/x-icon"));
    assert_eq!(
        icon.header(header::CACHE_CONTROL),
        Some("max-age=86400, public")
    );
    assert_eq!(&icon.body[..4], &[0, 0, 1, 0], "an ICO file");
    let touch = get(&app, "/apple-touch-icon-precomposed.png").await;
    assert_eq!(touch.status, StatusCode::OK);
    assert_eq!(touch.header(header::CONTENT_TYPE), Some("image/png"));
    assert_eq!(&touch.body[1..4], b"PNG");
    assert_eq!(
        touch.header(header::CACHE_CONTROL),
        Some("max-age=86400, public")
    );
    // Vendored libraries ship with their licences.
    for licence in [
        "/static/vendor/leaflet/LICENSE",
        "/static/vendor/uplot/LICENSE",
    ] {
        let r = get(&app, licence).await;
        assert_eq!(r.status, StatusCode::OK, "{licence}");
        assert!(r.text().contains("Copyright"), "{licence}");
    }
    let head = call(&app, Method::HEAD, "/static/css/site.css", None, None).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
}

backend_tests!(
    home_page_shows_the_map_callout_without_touching_the_database,
    no_base_layer_turns_the_maps_off,
    map_page_points_at_the_tiles,
    text_pages_carry_the_operators_identity,
    operator_files_replace_the_default_texts,
    layout_has_the_navigation_and_this_years_footer,
    unknown_paths_are_a_404_page_without_metrics,
    html_carries_the_content_security_policy_json_does_not,
    static_files_are_cached_and_revalidated,
);
