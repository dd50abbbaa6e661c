//! The route table as the suites need it: every (method, path template)
//! the router serves (`billing_http::routes()`), with the body fields and
//! the success statuses its OpenAPI operation declares. A route added to
//! the router is in both suites by default; a body field or a path
//! parameter the suites do not know stops them with a message saying what
//! to add, rather than being skipped.

use serde_json::Value;

/// One route of the router.
#[derive(Clone, Debug)]
pub struct Route {
    pub method: String,
    pub template: &'static str,
    /// The JSON body's fields (name, required), empty for no body.
    pub fields: Vec<(String, bool)>,
    /// The 2xx statuses the operation declares.
    pub successes: Vec<u16>,
}

impl Route {
    pub fn has_body(&self) -> bool {
        !self.fields.is_empty()
    }

    /// The template's parameter names, in order (`ws`, `user`, ...).
    pub fn params(&self) -> Vec<&'static str> {
        self.template.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect()
    }

    /// The path with every parameter replaced by `value(name)`.
    pub fn path(&self, mut value: impl FnMut(&str) -> String) -> String {
        self.template
            .split('/')
            .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => value(name),
                None => s.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Every route, from the router's table and the OpenAPI document.
pub fn table() -> Vec<Route> {
    let doc = serde_json::to_value(billing_http::openapi()).expect("the OpenAPI document as JSON");
    billing_http::routes()
        .into_iter()
        .map(|(method, template)| {
            let method = method.as_str().to_owned();
            let operation = &doc["paths"][template][method.to_lowercase()];
            assert!(operation.is_object(), "{method} {template} is served but not in /openapi.json");
            let successes = operation["responses"]
                .as_object()
                .map(|r| r.keys().filter_map(|k| k.parse::<u16>().ok()).filter(|s| (200..300).contains(s)).collect())
                .unwrap_or_default();
            Route { fields: body_fields(&doc, operation), method, template, successes }
        })
        .collect()
}

fn body_fields(doc: &Value, operation: &Value) -> Vec<(String, bool)> {
    let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    let schema = match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => &doc["components"]["schemas"][name],
        None => schema,
    };
    let required: Vec<&str> =
        schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    schema["properties"]
        .as_object()
        .map(|props| props.keys().map(|name| (name.clone(), required.contains(&name.as_str()))).collect())
        .unwrap_or_default()
}

/// Values a body field may validly hold, first the plainest. The suites
/// pick among them; a field not listed here is a new field whose valid
/// values someone has to write down.
pub fn palette(field: &str) -> Vec<Value> {
    use billing_testkit::{ANTHROPIC_KEY, OPENAI_KEY, OPENAI_KEY_2};
    let values: Vec<Value> = match field {
        "workspace_id" => vec!["new-ws".into(), "acme".into(), "globex".into()],
        "owner" => vec!["olga".into(), "alice".into()],
        "role" => vec!["admin".into(), "member".into()],
        "api_key" => vec![OPENAI_KEY_2.into(), OPENAI_KEY.into(), ANTHROPIC_KEY.into()],
        "enabled" => vec![true.into(), false.into()],
        "grant_id" | "reply_id" => vec!["id-1".into(), "id-2".into()],
        "amount" => vec![10.into(), 1.into(), 1_000_000_000_000u64.into()],
        "reason" => vec!["hostile".into(), Value::Null],
        "agent_id" => vec!["agent".into()],
        "model" => vec!["gpt-4o".into(), "bookbag-local".into(), "claude-haiku-4".into()],
        other => panic!("body field `{other}` is new: add its valid values to hostile/routes.rs::palette"),
    };
    values
}
