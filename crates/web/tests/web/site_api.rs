//! The OpenAPI description against the real server: every operation is
//! called through the router, every answer's status must be described and its
//! body must match the described schema; and the `/api` page shows it all.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode, header};
use chrono::Utc;
use ichnaea_core::apikey::ApiKey;
use ichnaea_core::stats::{StatKey, StatRow};
use ichnaea_web::router;
use ichnaea_web::site::SiteConfig;
use serde_json::{Value, json};

use crate::site::{get, request, site_state};
use crate::{Fx, Reply, backend_tests};

const SPEC: &str = include_str!("../../assets/openapi.json");
/// A client address the test GeoIP database places in London.
const LONDON: &str = "81.2.69.192";

/// Checks `value` against `schema`, the subset of JSON Schema 2020-12 the
/// description uses (`$ref`, `type`, `enum`, `properties`, `required`,
/// `additionalProperties`, `items`, `minItems`, `maxItems`, `maxProperties`,
/// `minimum`, `maximum`); keywords it does not know make it fail, so the
/// description cannot outgrow the check unnoticed.
fn check(spec: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        errors.push(format!("{at}: schema is not an object"));
        return;
    };
    for key in schema.keys() {
        let known = [
            "$ref",
            "type",
            "enum",
            "properties",
            "required",
            "additionalProperties",
            "items",
            "minItems",
            "maxItems",
            "maxProperties",
            "minimum",
            "maximum",
            "description",
        ];
        if !known.contains(&key.as_str()) {
            errors.push(format!("{at}: unsupported keyword {key}"));
        }
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        match spec["components"]["schemas"].get(name) {
            Some(target) => check(spec, target, value, at, errors),
            None => errors.push(format!("{at}: unresolved {r}")),
        }
        return;
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let is = |t: &str| match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            _ => false,
        };
        if !types.iter().any(|t| is(t)) {
            errors.push(format!("{at}: {value} is not {types:?}"));
            return;
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        errors.push(format!("{at}: {value} not in {values:?}"));
    }
    if let (Some(min), Some(v)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && v < min
    {
        errors.push(format!("{at}: {v} < {min}"));
    }
    if let (Some(max), Some(v)) = (
        schema.get("maximum").and_then(Value::as_f64),
        value.as_f64(),
    ) && v > max
    {
        errors.push(format!("{at}: {v} > {max}"));
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(name) {
                errors.push(format!("{at}: missing {name}"));
            }
        }
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
            && object.len() as u64 > max
        {
            errors.push(format!("{at}: more than {max} members"));
        }
        for (name, member) in object {
            let path = format!("{at}.{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(s) => check(spec, s, member, &path, errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errors.push(format!("{path}: not described")),
                    Some(s @ Value::Object(_)) => check(spec, s, member, &path, errors),
                    _ => {}
                },
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            errors.push(format!("{at}: fewer than {min} items"));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && items.len() as u64 > max
        {
            errors.push(format!("{at}: more than {max} items"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(spec, item_schema, item, &format!("{at}[{i}]"), errors);
            }
        }
    }
}

#[test]
fn the_checker_rejects_what_the_schemas_forbid() {
    let spec: Value = serde_json::from_str(SPEC).unwrap();
    let schema = json!({"$ref": "#/components/schemas/GeolocateResponse"});
    let mut errors = Vec::new();
    check(
        &spec,
        &schema,
        &json!({"location": {"lat": 1.5, "lng": 2.5}, "accuracy": 10.0}),
        "",
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:?}");
    for bad in [
        json!({"location": {"lat": 1.5}, "accuracy": 10.0}),
        json!({"location": {"lat": 1.5, "lng": 2.5}, "accuracy": "far"}),
        json!({"location": {"lat": 1.5, "lng": 2.5}, "accuracy": 1.0, "fallback": "gps"}),
        json!({"location": {"lat": 1.5, "lng": 2.5}, "accuracy": 1.0, "extra": 1}),
        json!([]),
    ] {
        let mut errors = Vec::new();
        check(&spec, &schema, &bad, "", &mut errors);
        assert!(!errors.is_empty(), "{bad} passed");
    }
    let mut errors = Vec::new();
    check(
        &spec,
        &json!({"$ref": "#/components/schemas/Empty"}),
        &json!({"a": 1}),
        "",
        &mut errors,
    );
    assert!(!errors.is_empty());
}

/// Sends `body` to `uri`, from `forwarded_for` when given.
async fn send(
    app: &axum::Router,
    method: Method,
    uri: &str,
    body: Option<&Value>,
    forwarded_for: Option<&str>,
    admin: Option<&str>,
) -> Reply {
    let mut headers = vec![(header::CONTENT_TYPE, "application/json")];
    if let Some(ip) = forwarded_for {
        headers.push((header::HeaderName::from_static("x-forwarded-for"), ip));
    }
    let bearer = admin.map(|t| format!("Bearer {t}"));
    if let Some(b) = &bearer {
        headers.push((header::AUTHORIZATION, b.as_str()));
    }
    request(
        app,
        method,
        uri,
        &headers,
        body.map(|b| b.to_string().into_bytes()),
    )
    .await
}

/// The description of one call.
struct Call {
    method: Method,
    /// The path as the description names it.
    template: &'static str,
    uri: String,
    body: Option<Value>,
    forwarded_for: Option<&'static str>,
    /// The admin token sent as `Authorization: Bearer`, if any.
    admin: Option<&'static str>,
}

fn call(method: Method, template: &'static str, uri: &str, body: Option<Value>) -> Call {
    Call {
        method,
        template,
        uri: uri.to_string(),
        body,
        forwarded_for: None,
        admin: None,
    }
}

/// A call of the admin API with the test token.
fn admin(method: Method, template: &'static str, uri: &str, body: Option<Value>) -> Call {
    Call {
        admin: Some(crate::TOKEN),
        ..call(method, template, uri, body)
    }
}

async fn every_described_operation_answers_as_described(fx: Fx) {
    let spec: Value = serde_json::from_str(SPEC).unwrap();
    fx.store.insert_api_key(&ApiKey::new("test")).await.unwrap();
    let today = Utc::now().date_naive();
    for key in [
        StatKey::UniqueBlue,
        StatKey::UniqueCell,
        StatKey::UniqueWifi,
        StatKey::UniqueNr,
    ] {
        fx.store
            .upsert_stat(&StatRow {
                key,
                time: today,
                value: 5,
            })
            .await
            .unwrap();
    }
    let app = router(ichnaea_web::AppState {
        admin_token: Some(std::sync::Arc::from(crate::TOKEN)),
        ..site_state(&fx, SiteConfig::default())
    });
    let example = |path: &str| {
        spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"].clone()
    };
    let mut calls = vec![
        // The description's own examples.
        call(
            Method::POST,
            "/v1/geolocate",
            "/v1/geolocate?key=test",
            Some(example("/v1/geolocate")),
        ),
        call(
            Method::POST,
            "/v1/country",
            "/v1/country?key=test",
            Some(example("/v1/country")),
        ),
        call(
            Method::POST,
            "/v2/geosubmit",
            "/v2/geosubmit",
            Some(example("/v2/geosubmit")),
        ),
        // Errors.
        call(
            Method::POST,
            "/v1/geolocate",
            "/v1/geolocate",
            Some(json!({})),
        ),
        call(
            Method::POST,
            "/v1/geolocate",
            "/v1/geolocate?key=test",
            Some(json!({"wifiAccessPoints": [{"macAddress": 12}]})),
        ),
        call(
            Method::POST,
            "/v1/country",
            "/v1/country?key=nope",
            Some(json!({})),
        ),
        call(
            Method::POST,
            "/v2/geosubmit",
            "/v2/geosubmit",
            Some(json!({"items": [{"position": null}]})),
        ),
        // Legacy formats.
        call(
            Method::POST,
            "/v1/geosubmit",
            "/v1/geosubmit",
            Some(
                json!({"items": [{"latitude": 51.5, "longitude": -0.1, "wifiAccessPoints": [{"macAddress": "01:23:45:67:89:ab"}]}]}),
            ),
        ),
        call(
            Method::POST,
            "/v1/submit",
            "/v1/submit",
            Some(
                json!({"items": [{"lat": 51.5, "lon": -0.1, "wifi": [{"key": "01:23:45:67:89:ab"}]}]}),
            ),
        ),
        call(
            Method::POST,
            "/v1/submit",
            "/v1/submit",
            Some(json!({"items": "no"})),
        ),
        // Operations and site data.
        call(Method::GET, "/__heartbeat__", "/__heartbeat__", None),
        call(Method::GET, "/__lbheartbeat__", "/__lbheartbeat__", None),
        call(Method::GET, "/__version__", "/__version__", None),
        call(Method::GET, "/map.json", "/map.json", None),
        call(
            Method::GET,
            "/tiles/{z}/{x}/{y}.png",
            "/tiles/3/4/2.png",
            None,
        ),
        call(
            Method::GET,
            "/tiles/{z}/{x}/{y}.png",
            "/tiles/12/0/0.png",
            None,
        ),
    ];
    for kind in ["blue", "cell", "wifi", "nr"] {
        let template: &'static str = match kind {
            "blue" => "/stats_blue.json",
            "cell" => "/stats_cell.json",
            "wifi" => "/stats_wifi.json",
            _ => "/stats_nr.json",
        };
        calls.push(call(Method::GET, template, template, None));
    }
    // Located by the client's address, with and without networks.
    for (template, uri) in [
        ("/v1/geolocate", "/v1/geolocate?key=test"),
        ("/v1/country", "/v1/country?key=test"),
    ] {
        for body in [json!({}), example("/v1/geolocate")] {
            calls.push(Call {
                forwarded_for: Some(LONDON),
                ..call(Method::POST, template, uri, Some(body))
            });
        }
    }

    // The admin API, with the description's examples, its errors and a backlog.
    let admin_example = |path: &str, method: &str| {
        spec["paths"][path][method]["requestBody"]["content"]["application/json"]["example"].clone()
    };
    let keys = "/admin/api-keys";
    let key = "/admin/api-keys/{key}";
    let exports = "/admin/export-configs";
    let export = "/admin/export-configs/{name}";
    calls.extend([
        call(Method::GET, keys, keys, None),
        admin(Method::GET, keys, keys, None),
        admin(Method::POST, keys, keys, Some(admin_example(keys, "post"))),
        admin(Method::POST, keys, keys, Some(admin_example(keys, "post"))),
        admin(Method::POST, keys, keys, Some(json!({"valid_key": "a_b"}))),
        admin(Method::GET, key, "/admin/api-keys/demo", None),
        admin(Method::GET, key, "/admin/api-keys/nope", None),
        admin(
            Method::PATCH,
            key,
            "/admin/api-keys/demo",
            Some(admin_example(key, "patch")),
        ),
        admin(
            Method::PATCH,
            key,
            "/admin/api-keys/demo",
            Some(json!({"store_sample_locate": 101})),
        ),
        admin(Method::PATCH, key, "/admin/api-keys/nope", Some(json!({}))),
        admin(Method::DELETE, key, "/admin/api-keys/demo", None),
        admin(Method::DELETE, key, "/admin/api-keys/demo", None),
        admin(Method::GET, exports, exports, None),
        admin(
            Method::POST,
            exports,
            exports,
            Some(admin_example(exports, "post")),
        ),
        admin(
            Method::POST,
            exports,
            exports,
            Some(admin_example(exports, "post")),
        ),
        admin(
            Method::POST,
            exports,
            exports,
            Some(json!({"name": "g", "schema": "ftp"})),
        ),
        admin(Method::GET, export, "/admin/export-configs/backup", None),
        admin(Method::GET, export, "/admin/export-configs/nope", None),
        admin(
            Method::PATCH,
            export,
            "/admin/export-configs/backup",
            Some(admin_example(export, "patch")),
        ),
        admin(
            Method::PATCH,
            export,
            "/admin/export-configs/backup",
            Some(json!({"batch": -1})),
        ),
        admin(
            Method::PATCH,
            export,
            "/admin/export-configs/backup",
            Some(json!({"schema": "internal"})),
        ),
        admin(
            Method::PATCH,
            export,
            "/admin/export-configs/nope",
            Some(json!({})),
        ),
        admin(Method::DELETE, export, "/admin/export-configs/nope", None),
    ]);

    let mut seen: BTreeSet<(String, String, u16)> = BTreeSet::new();
    // A backlog for the target deleted last: refused, a bad flag, then purged.
    let backlog = [
        admin(Method::DELETE, export, "/admin/export-configs/backup", None),
        admin(
            Method::DELETE,
            export,
            "/admin/export-configs/backup?purge=maybe",
            None,
        ),
        admin(
            Method::DELETE,
            export,
            "/admin/export-configs/backup?purge=true",
            None,
        ),
    ];
    let mut pushed = false;
    for c in calls.iter().chain(backlog.iter()) {
        if c.template == export && c.method == Method::DELETE && !pushed {
            fx.queue
                .push("queue_export_backup:gnss:no_key", vec![b"x".to_vec()])
                .await
                .unwrap();
            pushed = true;
        }
        let r = send(
            &app,
            c.method.clone(),
            &c.uri,
            c.body.as_ref(),
            c.forwarded_for,
            c.admin,
        )
        .await;
        let method = c.method.as_str().to_ascii_lowercase();
        let op = &spec["paths"][c.template][&method];
        assert!(
            op.is_object(),
            "{} {} is not described",
            c.method,
            c.template
        );
        let status = r.status.as_u16().to_string();
        let described = &op["responses"][&status];
        assert!(
            described.is_object(),
            "{} {} answered {status}, which is not described: {}",
            c.method,
            c.uri,
            String::from_utf8_lossy(&r.body)
        );
        seen.insert((c.template.to_string(), method.clone(), r.status.as_u16()));
        match described["content"]
            .as_object()
            .and_then(|m| m.iter().next())
        {
            Some((media, content)) => {
                let got = r.header(header::CONTENT_TYPE).unwrap_or("");
                assert!(
                    got.starts_with(media.as_str()),
                    "{}: {got} is not {media}",
                    c.uri
                );
                if let Some(schema) = content.get("schema") {
                    let body: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
                        panic!(
                            "{}: not JSON ({e}): {}",
                            c.uri,
                            String::from_utf8_lossy(&r.body)
                        )
                    });
                    let mut errors = Vec::new();
                    check(&spec, schema, &body, "", &mut errors);
                    assert!(
                        errors.is_empty(),
                        "{} {} ({status}): {errors:?} in {body}",
                        c.method,
                        c.uri
                    );
                }
            }
            None => assert!(
                r.body.is_empty() || r.status == StatusCode::NOT_FOUND,
                "{}: a body",
                c.uri
            ),
        }
    }
    // Every operation was called; the calls that should succeed did.
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                seen.iter().any(|(p, m, _)| p == path && m == method),
                "{method} {path} not exercised"
            );
        }
    }
    for (path, status) in [
        ("/v1/geolocate", 200),
        ("/v1/geolocate", 400),
        ("/v1/geolocate", 404),
        ("/v1/country", 200),
        ("/v2/geosubmit", 200),
        ("/v2/geosubmit", 400),
        ("/v1/submit", 204),
        ("/stats_nr.json", 200),
        ("/admin/api-keys", 201),
        ("/admin/api-keys", 409),
        ("/admin/api-keys/{key}", 204),
        ("/admin/export-configs", 201),
        ("/admin/export-configs/{name}", 200),
        ("/admin/export-configs/{name}", 409),
        ("/admin/export-configs/{name}", 204),
    ] {
        assert!(
            seen.iter().any(|(p, _, s)| p == path && *s == status),
            "{path} never answered {status}: {seen:?}"
        );
    }
}

async fn the_api_page_and_the_description_are_served(fx: Fx) {
    let app = router(site_state(&fx, SiteConfig::default()));
    let json = get(&app, "/openapi.json").await;
    assert_eq!(json.status, StatusCode::OK);
    assert_eq!(json.header(header::CONTENT_TYPE), Some("application/json"));
    assert_eq!(json.body, SPEC.as_bytes());
    assert!(json.header(header::ETAG).is_some());
    fx.store.close().await;
    let page = get(&app, "/api").await;
    assert_eq!(page.status, StatusCode::OK);
    let text = page.text();
    assert!(text.contains("<title>ichnaea - API</title>"));
    let spec: Value = serde_json::from_str(SPEC).unwrap();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(text.contains(&format!("id=\"{id}\"")), "{method} {path}");
            assert!(text.contains(&format!("<code>{path}</code>")), "{path}");
        }
    }
    for schema in spec["components"]["schemas"].as_object().unwrap().keys() {
        assert!(
            text.contains(&format!("id=\"schema-{schema}\"")),
            "{schema}"
        );
    }
    assert!(text.contains("href=\"/openapi.json\""));
    assert!(text.contains("<pre>{"), "the example is shown");
    assert!(text.contains("01:23:45:67:89:cd"), "the example is shown");
}

backend_tests!(
    every_described_operation_answers_as_described,
    the_api_page_and_the_description_are_served,
);
