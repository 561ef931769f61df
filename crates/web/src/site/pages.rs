//! The HTML pages without page data: home, privacy, terms, contact, opt-out,
//! and the layout every page shares.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::Datelike;

use super::{Operator, Site, maps, page_response};
use crate::SharedState;

/// One link of the main navigation.
pub(crate) struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The main navigation, in order.
const NAV: [(&str, &str); 6] = [
    ("/", "Home"),
    ("/api", "API"),
    ("/downloads", "Downloads"),
    ("/map", "Map"),
    ("/stats/regions", "Regions"),
    ("/stats", "Statistics"),
];

/// What the shared layout (`base.html`) shows.
pub(crate) struct Layout<'a> {
    pub site_name: &'a str,
    pub title: &'a str,
    pub nav: Vec<NavItem>,
    /// Who the footer credits: the operator, or the site when none is named.
    pub operator: &'a str,
    pub year: i32,
    pub source_url: Option<&'a str>,
    /// Extra stylesheets and scripts of the page.
    pub css: &'static [&'static str],
    pub js: &'static [&'static str],
}

impl Site {
    /// The layout of the page at `path` titled `title`.
    pub(crate) fn layout<'a>(&'a self, title: &'a str, path: &str) -> Layout<'a> {
        Layout {
            site_name: &self.config.site_name,
            title,
            nav: NAV
                .iter()
                .map(|&(href, label)| NavItem {
                    href,
                    label,
                    current: href == path,
                })
                .collect(),
            operator: self
                .config
                .operator
                .name
                .as_deref()
                .unwrap_or(&self.config.site_name),
            year: chrono::Utc::now().year(),
            source_url: self.config.source_url.as_deref(),
            css: &[],
            js: &[],
        }
    }
}

/// Renders a template as an hour-cacheable HTML page (a template error is a
/// logged 500: it cannot happen with compile-checked templates, short of a
/// formatting failure).
pub(crate) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => page_response(Html(html)),
        Err(e) => {
            tracing::error!(error = %e, "page template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<h1>500 Internal Server Error</h1>"),
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    l: Layout<'a>,
    custom: Option<&'a str>,
    map_enabled: bool,
    map_image_base_url: String,
    map_image_url: String,
}

async fn home(State(state): State<SharedState>) -> Response {
    let site = &state.site;
    render(&HomePage {
        l: site.layout("Overview", "/"),
        custom: site.content.home.as_deref(),
        map_enabled: site.map_enabled(),
        map_image_base_url: maps::fill_template(&site.config.map_base_url, 0, 0, "0"),
        map_image_url: maps::fill_template(&maps::tiles_template(&site.config), 0, 0, "0@2x"),
    })
}

#[derive(Template)]
#[template(path = "privacy.html")]
struct PrivacyPage<'a> {
    l: Layout<'a>,
    custom: Option<&'a str>,
}

async fn privacy(State(state): State<SharedState>) -> Response {
    let site = &state.site;
    render(&PrivacyPage {
        l: site.layout("Privacy Notice", "/privacy"),
        custom: site.content.privacy.as_deref(),
    })
}

#[derive(Template)]
#[template(path = "terms.html")]
struct TermsPage<'a> {
    l: Layout<'a>,
    custom: Option<&'a str>,
}

async fn terms(State(state): State<SharedState>) -> Response {
    let site = &state.site;
    render(&TermsPage {
        l: site.layout("Terms of Service", "/terms"),
        custom: site.content.terms.as_deref(),
    })
}

#[derive(Template)]
#[template(path = "contact.html")]
struct ContactPage<'a> {
    l: Layout<'a>,
    custom: Option<&'a str>,
    has_operator: bool,
    operator: &'a Operator,
}

async fn contact(State(state): State<SharedState>) -> Response {
    let site = &state.site;
    let operator = &site.config.operator;
    render(&ContactPage {
        l: site.layout("Contact", "/contact"),
        custom: site.content.contact.as_deref(),
        has_operator: operator.name.is_some()
            || operator.email.is_some()
            || operator.url.is_some()
            || operator.address.is_some(),
        operator,
    })
}

#[derive(Template)]
#[template(path = "optout.html")]
struct OptoutPage<'a> {
    l: Layout<'a>,
    custom: Option<&'a str>,
}

async fn optout(State(state): State<SharedState>) -> Response {
    let site = &state.site;
    render(&OptoutPage {
        l: site.layout("Opt-Out", "/optout"),
        custom: site.content.optout.as_deref(),
    })
}

pub(crate) fn routes() -> Router<SharedState> {
    Router::new()
        .route("/", get(home))
        .route("/privacy", get(privacy))
        .route("/terms", get(terms))
        .route("/contact", get(contact))
        .route("/optout", get(optout))
}
