//! `GET /api/v1/docs`: the OpenAPI document as a page people read, rendered on the
//! server from the generated document (no script, nothing fetched from elsewhere).

use std::fmt::Write;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;

/// `text` with the characters HTML gives a meaning escaped.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A schema in a few words: its reference name, type, enum values or items.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values.iter().filter_map(Value::as_str).map(esc).collect();
        return values.join(" | ");
    }
    if let Some(any) = schema["oneOf"].as_array().or_else(|| schema["allOf"].as_array()) {
        return any.iter().map(type_of).collect::<Vec<_>>().join(" + ");
    }
    match &schema["type"] {
        Value::String(t) if t == "array" => format!("[{}]", type_of(&schema["items"])),
        Value::String(t) => {
            let format = schema["format"]
                .as_str()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default();
            esc(&format!("{t}{format}"))
        }
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .map(esc)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "object".into(),
    }
}

fn render(doc: &Value) -> String {
    let mut out = String::new();
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em}}\
         code,.path{{font-family:ui-monospace,monospace}}table{{border-collapse:collapse;margin:.4em 0 1em}}\
         td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}}\
         .m{{display:inline-block;min-width:4.5em;font-weight:bold}}.role{{color:#805}}h3{{margin:1.6em 0 .2em}}</style>\
         </head><body><h1>{}</h1><p>{}</p><p>The machine-readable document: <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p>",
        esc(title),
        esc(title),
        esc(doc["info"]["description"].as_str().unwrap_or_default())
    );
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    let tags = doc["tags"].as_array().cloned().unwrap_or_default();
    for tag in &tags {
        let name = tag["name"].as_str().unwrap_or_default();
        let _ = write!(
            out,
            "<h2>{}</h2><p>{}</p>",
            esc(name),
            esc(tag["description"].as_str().unwrap_or_default())
        );
        for (path, item) in &paths {
            for (method, op) in item.as_object().into_iter().flatten() {
                let tagged = op["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == name));
                if !tagged {
                    continue;
                }
                let role = op["x-portwatch-role"]
                    .as_str()
                    .map_or("public".to_string(), |r| format!("role: {r}"));
                let _ = write!(
                    out,
                    "<h3><span class=\"m\">{}</span> <span class=\"path\">{}</span> <span class=\"role\">({})</span></h3><p>{}</p>",
                    esc(&method.to_uppercase()),
                    esc(path),
                    esc(&role),
                    esc(op["summary"].as_str().unwrap_or_default())
                );
                if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
                    out.push_str(
                        "<table><tr><th>parameter</th><th>in</th><th>type</th><th>meaning</th></tr>",
                    );
                    for p in params {
                        let _ = write!(
                            out,
                            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                            esc(p["name"].as_str().unwrap_or_default()),
                            esc(p["in"].as_str().unwrap_or_default()),
                            type_of(&p["schema"]),
                            esc(p["description"].as_str().unwrap_or_default())
                        );
                    }
                    out.push_str("</table>");
                }
                if let Some(body) = op["requestBody"]["content"]["application/json"]["schema"].as_object() {
                    let _ = write!(out, "<p>Body: {}</p>", type_of(&Value::Object(body.clone())));
                }
                out.push_str("<table><tr><th>status</th><th>answer</th><th>body</th></tr>");
                for (code, r) in op["responses"].as_object().into_iter().flatten() {
                    let body = r["content"]
                        .as_object()
                        .and_then(|c| c.values().next())
                        .map(|c| type_of(&c["schema"]))
                        .unwrap_or_default();
                    let _ = write!(
                        out,
                        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(code),
                        esc(r["description"].as_str().unwrap_or_default()),
                        body
                    );
                }
                out.push_str("</table>");
            }
        }
    }
    out.push_str("<h2>Schemas</h2>");
    for (name, schema) in doc["components"]["schemas"].as_object().into_iter().flatten() {
        let _ = write!(
            out,
            "<h3 id=\"schema-{0}\">{0}</h3><p>{1}</p>",
            esc(name),
            esc(schema["description"].as_str().unwrap_or_default())
        );
        let mut fields = Vec::new();
        let parts = schema["allOf"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![schema.clone()]);
        for part in &parts {
            if part["$ref"].is_string() {
                fields.push((String::from("(everything of)"), type_of(part), String::new()));
            }
            let required: Vec<&str> = part["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (field, s) in part["properties"].as_object().into_iter().flatten() {
                let optional = if required.contains(&field.as_str()) {
                    ""
                } else {
                    " (optional)"
                };
                fields.push((
                    format!("{field}{optional}"),
                    type_of(s),
                    s["description"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        if fields.is_empty() {
            let _ = write!(out, "<p>{}</p>", type_of(schema));
            continue;
        }
        out.push_str("<table><tr><th>field</th><th>type</th><th>meaning</th></tr>");
        for (field, ty, meaning) in fields {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&field),
                ty,
                esc(&meaning)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</body></html>");
    out
}

/// The API's documentation, for people.
#[utoipa::path(get, operation_id = "docs_page", path = "/api/v1/docs", tag = "service", responses(
    (status = 200, description = "Every operation and schema of this API, as HTML.", content_type = "text/html", body = String),
))]
pub(crate) async fn page() -> impl IntoResponse {
    static PAGE: OnceLock<String> = OnceLock::new();
    let html = PAGE.get_or_init(|| {
        let doc: Value = serde_json::from_str(crate::openapi_json()).unwrap_or_default();
        render(&doc)
    });
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_lists_every_operation_and_schema_escaped() {
        let doc: Value = serde_json::from_str(crate::openapi_json()).expect("doc");
        let html = render(&doc);
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("item").keys() {
                let heading = format!(
                    "<span class=\"m\">{}</span> <span class=\"path\">{}</span>",
                    method.to_uppercase(),
                    esc(path)
                );
                assert!(html.contains(&heading), "{method} {path} missing");
            }
        }
        for name in doc["components"]["schemas"].as_object().expect("schemas").keys() {
            assert!(html.contains(&format!("id=\"schema-{name}\"")), "{name} missing");
        }
        assert!(html.contains("(role: approver)") && html.contains("(public)"));
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
