//! The JSON error envelope of the public API (api §3) and its CORS headers.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Seconds a submit client is asked to wait when the service is overloaded.
pub const RETRY_AFTER_SECONDS: u64 = 30;

/// An API request that ends in one of the documented errors.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 400 `keyInvalid`.
    KeyInvalid,
    /// 403 `dailyLimitExceeded`.
    DailyLimitExceeded,
    /// 400 `parseError`; `details` is the top-level `details` member, if any.
    Parse(Option<ParseDetails>),
    /// 404 `notFound`.
    NotFound,
    /// 413: the body is larger than the configured limit (not in the original).
    PayloadTooLarge,
    /// 408: the body did not arrive in time (not in the original).
    RequestTimeout,
    /// 503 `serviceUnavailable`, with `Retry-After`.
    ServiceUnavailable,
}

/// What a `parseError` reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseDetails {
    /// Undecodable body: gzip, charset or JSON syntax.
    Decode(String),
    /// Type errors by dotted input path.
    Validation(BTreeMap<String, String>),
}

/// Adds the CORS headers every API response carries (api §4.1).
pub fn add_cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("2592000"),
    );
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, &'static str) {
        match self {
            ApiError::KeyInvalid => (
                StatusCode::BAD_REQUEST,
                "usageLimits",
                "keyInvalid",
                "Missing or invalid API key.",
            ),
            ApiError::DailyLimitExceeded => (
                StatusCode::FORBIDDEN,
                "usageLimits",
                "dailyLimitExceeded",
                "You have exceeded your daily limit.",
            ),
            ApiError::Parse(_) => (
                StatusCode::BAD_REQUEST,
                "global",
                "parseError",
                "Parse Error",
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "geolocation",
                "notFound",
                "Not found",
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "global",
                "payloadTooLarge",
                "Payload Too Large",
            ),
            ApiError::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "global",
                "requestTimeout",
                "Request Timeout",
            ),
            ApiError::ServiceUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "global",
                "serviceUnavailable",
                "Service Unavailable",
            ),
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> Value {
        let (status, domain, reason, message) = self.parts();
        let mut body = json!({
            "error": {
                "errors": [{"domain": domain, "reason": reason, "message": message}],
                "code": status.as_u16(),
                "message": message,
            }
        });
        match self {
            ApiError::Parse(Some(ParseDetails::Decode(text))) => {
                body["details"] = json!({"decode": text});
            }
            ApiError::Parse(Some(ParseDetails::Validation(errors))) => {
                body["details"] = json!({"validation": errors});
            }
            _ => {}
        }
        body
    }
}

/// A successful API answer: 200 with a JSON body and the CORS headers.
pub struct ApiJson(pub Value);

impl IntoResponse for ApiJson {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::OK, axum::Json(self.0)).into_response();
        add_cors(response.headers_mut());
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.parts().0;
        let mut response = (status, axum::Json(self.body())).into_response();
        add_cors(response.headers_mut());
        if self == ApiError::ServiceUnavailable {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}
