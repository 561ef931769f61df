//! The API reference: one OpenAPI 3.1 description of this server
//! (`assets/openapi.json`, checked against real responses by the tests),
//! served as it is at `/openapi.json` and rendered as the `/api` page.

use std::sync::OnceLock;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use serde_json::Value;

use super::assets::{conditional, etag_of};
use super::pages::{Layout, render};
use crate::SharedState;

/// The description, as shipped.
pub(crate) const OPENAPI: &str = include_str!("../../assets/openapi.json");

/// One parameter of an operation.
pub(crate) struct Param {
    pub name: String,
    pub place: String,
    pub required: bool,
    pub description: String,
}

/// One response of an operation.
pub(crate) struct Answer {
    pub status: String,
    pub description: String,
    pub schema: Option<String>,
}

/// One operation, as the page lists it.
pub(crate) struct Operation {
    pub id: String,
    pub method: String,
    pub path: String,
    pub tag: String,
    pub summary: String,
    pub description: String,
    pub deprecated: bool,
    pub params: Vec<Param>,
    pub body_schema: Option<String>,
    pub example: Option<String>,
    pub answers: Vec<Answer>,
}

/// One member of a schema.
pub(crate) struct Member {
    pub name: String,
    pub kind: String,
    pub required: bool,
    pub description: String,
}

/// One named schema.
pub(crate) struct Schema {
    pub name: String,
    pub description: String,
    pub members: Vec<Member>,
}

/// The page's view of the description.
pub(crate) struct Reference {
    pub description: String,
    pub operations: Vec<Operation>,
    pub schemas: Vec<Schema>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// A description as HTML: escaped, with CommonMark's `code` spans (the only
/// markup the description uses) as `<code>`.
pub(crate) fn inline_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' => {
                out.push_str(if in_code { "</code>" } else { "<code>" });
                in_code = !in_code;
            }
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    if in_code {
        out.push_str("</code>");
    }
    out
}

/// [`inline_html`] of a member.
fn html(v: &Value, key: &str) -> String {
    inline_html(&text(v, key))
}

/// `#/components/schemas/Name` → `Name`.
fn ref_name(v: &Value) -> Option<String> {
    v.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .map(str::to_string)
}

/// A short description of a schema's type: `string`, `array of Report`, …
fn kind(v: &Value) -> String {
    if let Some(name) = ref_name(v) {
        return name;
    }
    let base = match v.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    };
    let base = match (base.as_str(), v.get("items")) {
        ("array", Some(items)) => format!("array of {}", kind(items)),
        _ => base,
    };
    match v.get("enum").and_then(Value::as_array) {
        Some(values) => {
            let values: Vec<String> = values.iter().map(|x| x.to_string()).collect();
            format!("{base}: {}", values.join(", "))
        }
        None => base,
    }
}

fn schema_of(content: &Value) -> Option<&Value> {
    content.as_object()?.values().next()?.get("schema")
}

/// Builds the page's view from the description.
pub(crate) fn reference(spec: &Value) -> Reference {
    let info = &spec["info"];
    let tags: Vec<(String, String)> = spec["tags"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| (text(t, "name"), text(t, "description")))
                .collect()
        })
        .unwrap_or_default();
    let mut operations = Vec::new();
    if let Some(paths) = spec["paths"].as_object() {
        for (path, item) in paths {
            let Some(methods) = item.as_object() else {
                continue;
            };
            for (method, op) in methods {
                let params = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .map(|p| Param {
                                name: text(p, "name"),
                                place: text(p, "in"),
                                required: p["required"].as_bool().unwrap_or(false),
                                description: html(p, "description"),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let body = op["requestBody"]["content"]
                    .as_object()
                    .and_then(|c| c.values().next());
                let answers = op["responses"]
                    .as_object()
                    .map(|rs| {
                        rs.iter()
                            .map(|(status, r)| Answer {
                                status: status.clone(),
                                description: html(r, "description"),
                                schema: schema_of(&r["content"]).map(kind),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                operations.push(Operation {
                    id: text(op, "operationId"),
                    method: method.to_ascii_uppercase(),
                    path: path.clone(),
                    tag: op["tags"][0].as_str().unwrap_or("").to_string(),
                    summary: text(op, "summary"),
                    description: html(op, "description"),
                    deprecated: op["deprecated"].as_bool().unwrap_or(false),
                    params,
                    body_schema: body.and_then(|b| b.get("schema")).map(kind),
                    example: body
                        .and_then(|b| b.get("example"))
                        .and_then(|e| serde_json::to_string_pretty(e).ok()),
                    answers,
                });
            }
        }
    }
    // In the order of the tags, then as written.
    let rank = |tag: &str| {
        tags.iter()
            .position(|(t, _)| t == tag)
            .unwrap_or(usize::MAX)
    };
    operations.sort_by_key(|o| rank(&o.tag));
    let schemas = spec["components"]["schemas"]
        .as_object()
        .map(|ss| {
            ss.iter()
                .map(|(name, s)| {
                    let required: Vec<&str> = s["required"]
                        .as_array()
                        .map(|r| r.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let members = s["properties"]
                        .as_object()
                        .map(|ps| {
                            ps.iter()
                                .map(|(m, p)| Member {
                                    name: m.clone(),
                                    kind: kind(p),
                                    required: required.contains(&m.as_str()),
                                    description: html(p, "description"),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    Schema {
                        name: name.clone(),
                        description: html(s, "description"),
                        members,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Reference {
        description: html(info, "description"),
        operations,
        schemas,
    }
}

fn parsed() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| serde_json::from_str(OPENAPI).unwrap_or(Value::Null))
}

#[derive(Template)]
#[template(path = "api.html")]
struct ApiPage<'a> {
    l: Layout<'a>,
    r: Reference,
}

async fn api_page(State(state): State<SharedState>) -> Response {
    render(&ApiPage {
        l: state.site.layout("API", "/api"),
        r: reference(parsed()),
    })
}

async fn openapi_json(request: HeaderMap) -> Response {
    static ETAG: OnceLock<HeaderValue> = OnceLock::new();
    let etag = ETAG.get_or_init(|| etag_of(OPENAPI.as_bytes()));
    let mut response = conditional(&request, OPENAPI, "application/json", etag);
    super::cache_headers(&mut response, 3600, true);
    response
}

pub(crate) fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api", get(api_page))
        .route("/openapi.json", get(openapi_json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_become_code_elements() {
        assert_eq!(
            inline_html("Use `a<b>` & `c`."),
            "Use <code>a&lt;b&gt;</code> &amp; <code>c</code>."
        );
        assert_eq!(inline_html("open `x"), "open <code>x</code>");
    }

    #[test]
    fn the_description_is_openapi_3_1_and_every_reference_resolves() {
        let spec: Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        assert_eq!(spec["openapi"], "3.1.0");
        let names: Vec<&String> = spec["components"]["schemas"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(r) = ref_name(v) {
                        out.push(r);
                    }
                    m.values().for_each(|x| refs(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&spec, &mut all);
        assert!(!all.is_empty());
        for r in all {
            assert!(names.contains(&&r), "unresolved {r}");
        }
        let view = reference(&spec);
        assert!(
            view.operations
                .iter()
                .any(|o| o.path == "/v1/geolocate" && o.method == "POST")
        );
        assert!(
            view.operations.iter().all(|o| !o.answers.is_empty()),
            "every operation answers"
        );
        assert_eq!(view.operations[0].tag, "Locate", "in tag order");
    }
}
