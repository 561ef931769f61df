//! Headers every response carries (api §4.2), and those of HTML pages.

use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::{
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS, X_XSS_PROTECTION,
};
use axum::response::Response;

use crate::SharedState;

/// Adds HSTS and `X-Content-Type-Options: nosniff` to every response, and to
/// HTML ones (pages and the 404) the site's Content-Security-Policy,
/// `X-Frame-Options: DENY` and `X-XSS-Protection`.
pub(crate) async fn security_headers(
    State(state): State<SharedState>,
    mut response: Response,
) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let html = headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if html {
        headers.insert(CONTENT_SECURITY_POLICY, state.site.csp.clone());
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(X_XSS_PROTECTION, HeaderValue::from_static("1; mode=block"));
    }
    response
}
