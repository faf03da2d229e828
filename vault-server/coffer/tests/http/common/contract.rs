//! The data API's contract with its clients: every answer the HTTP tests see
//! under `/v1` is checked against the OpenAPI document the same server
//! serves at `/v1/openapi.json`. The route and method must be declared, the
//! status declared for that operation, the content type the one declared
//! for that status, and the body valid against the declared JSON Schema
//! (draft 2020-12, as OpenAPI 3.1 uses). A request to a path the document
//! does not declare must still answer problem JSON.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/v1/openapi.json";

/// One declared answer: its content type (none for an empty body) and the
/// compiled schema of its body.
struct Declared {
    content_type: Option<String>,
    schema: Option<boon::SchemaIndex>,
}

/// The compiled document of one server.
pub struct Contract {
    /// `(method, path template)` → status (`"200"`, `"default"`) → answer.
    operations: HashMap<(String, String), HashMap<String, Declared>>,
    /// The `Problem` schema, for paths the document does not declare.
    problem: boon::SchemaIndex,
    schemas: boon::Schemas,
}

impl Contract {
    /// Compiles a served document.
    pub fn compile(document: &Value) -> Result<Contract, String> {
        let definitions = document
            .pointer("/components/schemas")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        let mut schemas = boon::Schemas::new();
        let mut count = 0;
        let mut compile = |schema: &Value| -> Result<boon::SchemaIndex, String> {
            // Each body schema becomes a document of its own whose `$defs`
            // are the components, so `#/components/schemas/X` resolves
            // (as `#/$defs/X`) there and inside the components.
            let mut root = schema.clone();
            if let Value::Object(map) = &mut root {
                map.insert("$defs".into(), definitions.clone());
            }
            let text = root.to_string().replace("\"#/components/schemas/", "\"#/$defs/");
            let root: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let url = format!("urn:coffer:openapi:{count}");
            count += 1;
            compiler.add_resource(&url, root).map_err(|e| format!("{e:#}"))?;
            compiler.compile(&url, &mut schemas).map_err(|e| format!("{e:#}"))
        };
        let problem = compile(&json!({"$ref": "#/components/schemas/Problem"}))?;
        let mut operations = HashMap::new();
        let paths = document["paths"].as_object().ok_or("the document has no paths")?;
        for (template, item) in paths {
            let Some(item) = item.as_object() else { continue };
            for (method, operation) in item {
                let Some(responses) = operation["responses"].as_object() else {
                    continue;
                };
                let mut answers = HashMap::new();
                for (status, response) in responses {
                    let declared = match response["content"].as_object().and_then(|c| c.iter().next()) {
                        None => Declared {
                            content_type: None,
                            schema: None,
                        },
                        Some((media, content)) => Declared {
                            content_type: Some(media.clone()),
                            schema: content.get("schema").map(&mut compile).transpose()?,
                        },
                    };
                    answers.insert(status.clone(), declared);
                }
                operations.insert((method.to_uppercase(), template.clone()), answers);
            }
        }
        Ok(Contract {
            operations,
            problem,
            schemas,
        })
    }

    /// Checks one answer to `method path` (the path without its query).
    pub fn check(&self, method: &str, path: &str, status: u16, content_type: &str, body: &str) -> Result<(), String> {
        // A CORS preflight is the browser asking whether a page may send the
        // request, answered by the server's CORS layer before any route:
        // 204 with no body, whatever the path. The document describes the
        // API's operations, which a browser app calls; the preflight is the
        // browser's own step, so the document declares no OPTIONS operation.
        if method == "OPTIONS" && status == 204 && body.is_empty() {
            return Ok(());
        }
        let templates: Vec<&String> = self
            .operations
            .keys()
            .filter(|(_, template)| matches_template(template, path))
            .map(|(_, template)| template)
            .collect();
        let Some(answers) = templates
            .iter()
            .find_map(|t| self.operations.get(&(method.to_owned(), (*t).clone())))
        else {
            // Not a declared operation: the answer is still a problem.
            return self.check_body(
                self.problem,
                "application/problem+json",
                content_type,
                body,
                &format!("{method} {path} (undeclared) answered {status}"),
            );
        };
        let declared = answers
            .get(&status.to_string())
            .or_else(|| answers.get("default"))
            .ok_or_else(|| {
                let mut known: Vec<&String> = answers.keys().collect();
                known.sort();
                format!("{method} {path} answered {status}, which the document does not declare (it declares {known:?}): {body}")
            })?;
        let context = format!("{method} {path} answered {status}");
        match (&declared.content_type, declared.schema) {
            (None, _) if body.is_empty() => Ok(()),
            (None, _) => Err(format!("{context} with a body the document does not declare: {body}")),
            (Some(media), Some(schema)) => self.check_body(schema, media, content_type, body, &context),
            (Some(media), None) => media_matches(media, content_type, &context),
        }
    }

    fn check_body(
        &self,
        schema: boon::SchemaIndex,
        media: &str,
        content_type: &str,
        body: &str,
        context: &str,
    ) -> Result<(), String> {
        media_matches(media, content_type, context)?;
        let value: Value =
            serde_json::from_str(body).map_err(|e| format!("{context} with a body that is not JSON ({e}): {body}"))?;
        self.schemas
            .validate(&value, schema)
            .map_err(|e| format!("{context} with a body the document's schema refuses:\n{e}\nbody: {body}"))
    }
}

/// The content type is the declared media type (parameters aside).
fn media_matches(media: &str, content_type: &str, context: &str) -> Result<(), String> {
    let got = content_type.split(';').next().unwrap_or_default().trim();
    if got.eq_ignore_ascii_case(media) {
        Ok(())
    } else {
        Err(format!(
            "{context} as {content_type:?}, the document declares {media:?}"
        ))
    }
}

/// `/v1/tables/{table}/rows` matches `/v1/tables/notes.notes/rows`.
fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            if t.starts_with('{') && t.ends_with('}') {
                !p.is_empty()
            } else {
                t == p
            }
        })
}

/// The compiled contract of the server at `base`, fetched once per server.
pub async fn of(client: &reqwest::Client, base: &str) -> Arc<Contract> {
    static CONTRACTS: OnceLock<Mutex<HashMap<String, Arc<Contract>>>> = OnceLock::new();
    let cache = CONTRACTS.get_or_init(Default::default);
    if let Some(found) = cache.lock().unwrap().get(base) {
        return found.clone();
    }
    let document: Value = client
        .get(format!("{base}{DOCUMENT_PATH}"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("fetching the OpenAPI document: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("the OpenAPI document is not JSON: {e}"));
    let contract =
        Arc::new(Contract::compile(&document).unwrap_or_else(|e| panic!("compiling the OpenAPI document: {e}")));
    cache.lock().unwrap().insert(base.to_owned(), contract.clone());
    contract
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> Value {
        json!({
            "openapi": "3.1.0",
            "paths": {
                "/v1/tables/{table}/rows/{id}": {
                    "get": {"responses": {
                        "200": {"content": {"application/json": {"schema": {"type": "object", "required": ["id"]}}}},
                        "404": {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
                    }},
                    "delete": {"responses": {"204": {"description": "Deleted"}}}
                }
            },
            "components": {"schemas": {"Problem": {
                "type": "object",
                "required": ["type", "status"],
                "properties": {"type": {"type": "string"}, "status": {"type": "integer"}}
            }}}
        })
    }

    #[test]
    fn answers_the_document_does_not_declare_are_refused() {
        let contract = Contract::compile(&document()).unwrap();
        let row = "/v1/tables/notes.notes/rows/a1";
        contract
            .check("GET", row, 200, "application/json", r#"{"id": "a1"}"#)
            .unwrap();
        contract.check("DELETE", row, 204, "", "").unwrap();
        let problem = r#"{"type": "urn:coffer:problem:row-not-found", "status": 404}"#;
        contract
            .check("GET", row, 404, "application/problem+json", problem)
            .unwrap();
        // An undeclared status, a body that breaks the schema, the wrong
        // content type, a body where none is declared, a problem missing a
        // member on an undeclared path.
        for (method, path, status, content_type, body) in [
            ("GET", row, 409, "application/problem+json", problem),
            ("GET", row, 200, "application/json", r#"{"title": "x"}"#),
            ("GET", row, 200, "text/plain", r#"{"id": "a1"}"#),
            ("DELETE", row, 204, "", "{}"),
            (
                "GET",
                "/v1/nothing",
                404,
                "application/problem+json",
                r#"{"status": 404}"#,
            ),
            ("GET", "/v1/nothing", 404, "text/plain", ""),
        ] {
            assert!(
                contract.check(method, path, status, content_type, body).is_err(),
                "{method} {path} {status} {body} passed"
            );
        }
    }
}
