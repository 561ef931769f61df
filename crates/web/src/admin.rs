//! The admin API under `/admin/`: the same operations as the `apikey` and
//! `export-config` commands, for operators who cannot reach the CLI. Mounted only
//! when a token is configured, and then every request must carry it as
//! `Authorization: Bearer <token>` (compared in constant time).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use ichnaea_core::{ApiKey, ApiKeyPatch, ExportConfig, ExportConfigPatch, FieldError};
use ichnaea_store::StoreError;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::SharedState;

pub(crate) fn routes(state: SharedState) -> Router<SharedState> {
    Router::new()
        .route("/api-keys", get(list_keys).post(create_key))
        .route(
            "/api-keys/{key}",
            get(show_key).patch(update_key).delete(delete_key),
        )
        .route("/export-configs", get(list_exports).post(create_export))
        .route(
            "/export-configs/{name}",
            get(show_export).patch(update_export).delete(delete_export),
        )
        .layer(axum::middleware::from_fn_with_state(state, require_token))
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is
/// case-insensitive (RFC 9110), the token is not.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

async fn require_token(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let expected = state.admin_token.as_deref().unwrap_or_default().as_bytes();
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or_default()
        .as_bytes();
    if expected.is_empty() || !bool::from(given.ct_eq(expected)) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token",
            None,
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    next.run(request).await
}

/// An admin request that failed: rendered as
/// `{"error": {"code", "message", "field"?}}` with its status.
pub(crate) struct AdminError {
    status: StatusCode,
    message: String,
    field: Option<&'static str>,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.status.as_u16(), "message": self.message});
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (self.status, Json(json!({"error": body}))).into_response()
    }
}

fn error(
    status: StatusCode,
    message: impl Into<String>,
    field: Option<&'static str>,
) -> AdminError {
    AdminError {
        status,
        message: message.into(),
        field,
    }
}

fn invalid(e: &FieldError) -> AdminError {
    error(StatusCode::BAD_REQUEST, e.to_string(), Some(e.field))
}

fn store_error(e: StoreError) -> AdminError {
    match e {
        StoreError::Duplicate(what) => {
            error(StatusCode::CONFLICT, format!("{what} already exists"), None)
        }
        other => {
            tracing::error!(error = %other, "admin request failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database unavailable",
                None,
            )
        }
    }
}

fn parse<T: DeserializeOwned>(value: Value) -> Result<T, AdminError> {
    serde_json::from_value(value)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid body: {e}"), None))
}

/// Parses a JSON object body and removes its identifying member (`valid_key` or
/// `name`), which the rest of the body must not repeat.
fn object_with_id(
    body: &Bytes,
    id_field: &'static str,
) -> Result<(String, Map<String, Value>), AdminError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}"), None))?;
    let Value::Object(mut map) = value else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "body must be a JSON object",
            None,
        ));
    };
    match map.remove(id_field) {
        Some(Value::String(id)) => Ok((id, map)),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            format!("{id_field} is required and must be a string"),
            Some(id_field),
        )),
    }
}

fn json_body(body: &Bytes) -> Result<Value, AdminError> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}"), None))
}

fn not_found(what: &str, id: &str) -> AdminError {
    error(
        StatusCode::NOT_FOUND,
        format!("{what} {id:?} not found"),
        None,
    )
}

async fn list_keys(State(state): State<SharedState>) -> Response {
    match state.store.api_keys().await {
        Ok(keys) => Json(keys).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

async fn show_key(State(state): State<SharedState>, Path(key): Path<String>) -> Response {
    match state.store.api_key(&key).await {
        Ok(Some(row)) => Json(row).into_response(),
        Ok(None) => not_found("api key", &key).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

async fn create_key(State(state): State<SharedState>, body: Bytes) -> Response {
    let result = async {
        let (key, rest) = object_with_id(&body, "valid_key")?;
        let patch: ApiKeyPatch = parse(Value::Object(rest))?;
        let mut row = ApiKey::new(key);
        patch.apply(&mut row);
        row.validate().map_err(|e| invalid(&e))?;
        state
            .store
            .insert_api_key(&row)
            .await
            .map_err(store_error)?;
        state.api_keys.invalidate_all();
        Ok::<_, AdminError>((StatusCode::CREATED, Json(row)).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn update_key(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        let patch: ApiKeyPatch = parse(json_body(&body)?)?;
        let Some(mut row) = state.store.api_key(&key).await.map_err(store_error)? else {
            return Err(not_found("api key", &key));
        };
        patch.apply(&mut row);
        row.validate().map_err(|e| invalid(&e))?;
        if !state
            .store
            .update_api_key(&row)
            .await
            .map_err(store_error)?
        {
            return Err(not_found("api key", &key));
        }
        state.api_keys.invalidate_all();
        Ok(Json(row).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn delete_key(State(state): State<SharedState>, Path(key): Path<String>) -> Response {
    match state.store.delete_api_key(&key).await {
        Ok(true) => {
            state.api_keys.invalidate_all();
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => not_found("api key", &key).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

async fn list_exports(State(state): State<SharedState>) -> Response {
    match state.store.export_configs().await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

async fn show_export(State(state): State<SharedState>, Path(name): Path<String>) -> Response {
    match state.store.export_config(&name).await {
        Ok(Some(row)) => Json(row).into_response(),
        Ok(None) => not_found("export config", &name).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

async fn create_export(State(state): State<SharedState>, body: Bytes) -> Response {
    let result = async {
        let (name, mut rest) = object_with_id(&body, "name")?;
        let Some(schema) = rest.remove("schema") else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "schema is required",
                Some("schema"),
            ));
        };
        let schema = parse(schema)?;
        let patch: ExportConfigPatch = parse(Value::Object(rest))?;
        let mut row = ExportConfig::new(name, schema);
        patch.apply(&mut row);
        row.validate().map_err(|e| invalid(&e))?;
        check_among_targets(&state, &row).await?;
        state
            .store
            .insert_export_config(&row)
            .await
            .map_err(store_error)?;
        Ok((StatusCode::CREATED, Json(row)).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn update_export(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        let patch: ExportConfigPatch = parse(json_body(&body)?)?;
        let Some(mut row) = state
            .store
            .export_config(&name)
            .await
            .map_err(store_error)?
        else {
            return Err(not_found("export config", &name));
        };
        patch.apply(&mut row);
        row.validate().map_err(|e| invalid(&e))?;
        check_among_targets(&state, &row).await?;
        if !state
            .store
            .update_export_config(&row)
            .await
            .map_err(store_error)?
        {
            return Err(not_found("export config", &name));
        }
        Ok(Json(row).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// 409 naming `schema` when `row` would be a second internal target.
async fn check_among_targets(state: &SharedState, row: &ExportConfig) -> Result<(), AdminError> {
    let targets = state.store.export_configs().await.map_err(store_error)?;
    row.validate_among(&targets)
        .map_err(|e| error(StatusCode::CONFLICT, e.to_string(), Some(e.field)))
}

/// `DELETE /admin/export_configs/{name}[?purge=true]`: refused with 409 naming
/// `purge` while the target's queue holds items, unless `purge=true` drops them.
async fn delete_export(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let result = async {
        let mut purge = false;
        for (k, v) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
            match (k.as_ref(), v.as_ref()) {
                ("purge", "true") => purge = true,
                ("purge", "false") => purge = false,
                ("purge", _) => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "purge must be true or false",
                        Some("purge"),
                    ));
                }
                _ => {}
            }
        }
        if state
            .store
            .export_config(&name)
            .await
            .map_err(store_error)?
            .is_none()
        {
            return Err(not_found("export config", &name));
        }
        let queued = export_queues(&state, &name).await?;
        let items: u64 = queued.iter().map(|(_, n)| n).sum();
        if items > 0 && !purge {
            return Err(error(
                StatusCode::CONFLICT,
                format!(
                    "export target {name} has {items} queued items that would never be exported; \
                     delete with purge=true to drop them, or wait until they are exported"
                ),
                Some("purge"),
            ));
        }
        if !state
            .store
            .delete_export_config(&name)
            .await
            .map_err(store_error)?
        {
            return Err(not_found("export config", &name));
        }
        if purge {
            for (queue, _) in export_queues(&state, &name).await? {
                state.queue.purge(&queue).await.map_err(queue_error)?;
            }
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The queues of export target `name` holding items, with their lengths.
async fn export_queues(state: &SharedState, name: &str) -> Result<Vec<(String, u64)>, AdminError> {
    use ichnaea_core::queues::{EXPORT_PREFIX, export_target_of};
    let mut out = Vec::new();
    let names = state
        .queue
        .queue_names(EXPORT_PREFIX)
        .await
        .map_err(queue_error)?;
    for queue in names {
        if export_target_of(&queue) == Some(name) {
            let len = state.queue.len(&queue).await.map_err(queue_error)?;
            out.push((queue, len));
        }
    }
    Ok(out)
}

fn queue_error(e: ichnaea_queue::QueueError) -> AdminError {
    tracing::error!(error = %e, "admin request failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "queue unavailable", None)
}
