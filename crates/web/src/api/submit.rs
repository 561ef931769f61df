//! `/v2/geosubmit`, `/v1/geosubmit` and `/v1/submit` (api §6): accept
//! reports and put them on `update_incoming`, durably, before answering.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use ichnaea_core::queues::UPDATE_INCOMING;
use ichnaea_core::{ApiKey, IncomingItem};
use serde_json::json;

use super::body::decode_text;
use super::convert::{ConvertError, ReportJson, SubmitVersion, convert_text};
use super::error::{ApiError, ApiJson, ParseDetails, add_cors};
use super::keys::{KeyLookup, KnownKey};
use super::{Caller, check_daily_limit, read_body};
use crate::{AppState, SharedState};

pub(super) async fn v2(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    submit(&state, SubmitVersion::V2, caller, &headers, body).await
}

pub(super) async fn v1(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    submit(&state, SubmitVersion::V1, caller, &headers, body).await
}

pub(super) async fn v0(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    submit(&state, SubmitVersion::V0, caller, &headers, body).await
}

fn metric_path(version: SubmitVersion) -> &'static str {
    match version {
        SubmitVersion::V2 => "v2.geosubmit",
        SubmitVersion::V1 => "v1.geosubmit",
        SubmitVersion::V0 => "v1.submit",
    }
}

/// Accepts a submission and answers `{}` (204 without a body for `/v1/submit`).
async fn submit(
    state: &AppState,
    version: SubmitVersion,
    caller: Caller,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    accept(state, version, caller, headers, body).await?;
    Ok(match version {
        SubmitVersion::V0 => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            add_cors(response.headers_mut());
            response
        }
        _ => ApiJson(json!({})).into_response(),
    })
}

async fn accept(
    state: &AppState,
    version: SubmitVersion,
    caller: Caller,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), ApiError> {
    let path = metric_path(version);

    // Key, permission and limit come before the body (api §2).
    let key: Option<Arc<KnownKey>> = match &caller.key {
        None => None,
        Some(text) => match state.api_keys.lookup(&state.store, text).await {
            KeyLookup::Known(key) => {
                check_daily_limit(state, &key, &caller, path, "submit").await?;
                Some(key)
            }
            KeyLookup::Unknown | KeyLookup::Failed => None,
        },
    };
    let key_tag = match (&key, &caller.key, &caller.invalid_key) {
        (Some(k), _, _) => k.metric_label.clone(),
        (None, Some(_), _) => "invalid".to_string(),
        (None, None, _) => "none".to_string(),
    };
    metrics::counter!("submit.request", "path" => path, "key" => key_tag).increment(1);

    let raw = read_body(state, body).await?;
    let text = decode_text(headers, &raw, state.api.body)?;
    if text.is_empty() {
        return Err(ApiError::Parse(None));
    }
    let reports =
        convert_text(&text, version, Utc::now().timestamp_millis()).map_err(|e| match e {
            ConvertError::Json(e) => {
                ApiError::Parse(Some(ParseDetails::Decode(format!("invalid JSON: {e}"))))
            }
            ConvertError::Invalid(errors) => {
                ApiError::Parse(Some(ParseDetails::Validation(errors.0)))
            }
            ConvertError::TooManyReports => ApiError::PayloadTooLarge,
        })?;
    drop(text);
    drop(raw);

    if reports.is_empty() || !sampled_in(key.as_deref().map(|k| &k.row)) {
        return Ok(());
    }
    enqueue(state, key.as_deref(), reports).await
}

/// Whether this request is kept under the key's `store_sample_submit`
/// (anonymous requests always are; NULL means 0).
fn sampled_in(key: Option<&ApiKey>) -> bool {
    let percent = key.map_or(100, |k| k.store_sample_submit.unwrap_or(0));
    match percent {
        p if p <= 0 => false,
        p if p >= 100 => true,
        p => fastrand::f64() * 100.0 < f64::from(p),
    }
}

async fn enqueue(
    state: &AppState,
    key: Option<&KnownKey>,
    reports: Vec<ReportJson>,
) -> Result<(), ApiError> {
    let backlog = state.queue.len(UPDATE_INCOMING).await.map_err(|e| {
        tracing::error!(error = %e, "queue unavailable");
        ApiError::ServiceUnavailable
    })?;
    if backlog >= state.api.incoming_queue_max {
        metrics::counter!("submit.backpressure").increment(1);
        tracing::warn!(
            backlog,
            max = state.api.incoming_queue_max,
            "incoming queue full, refusing submission"
        );
        return Err(ApiError::ServiceUnavailable);
    }
    let api_key = key.map(|k| k.valid_key.as_str());
    let count = reports.len();
    let mut items = Vec::with_capacity(count);
    // Each report's text is freed as soon as its item is written.
    for r in reports {
        items.push(IncomingItem::encode_raw(api_key, r.source, &r.json));
    }
    state
        .queue
        .push(UPDATE_INCOMING, items)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot enqueue submission");
            ApiError::ServiceUnavailable
        })?;
    match key {
        Some(k) => {
            metrics::counter!("data.batch.upload", "key" => k.metric_label.clone()).increment(1)
        }
        None => metrics::counter!("data.batch.upload").increment(1),
    }
    metrics::counter!("data.report.upload").increment(count as u64);
    Ok(())
}
