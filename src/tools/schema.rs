//! The policy's JSON Schema, generated from the serde model the loader reads (so it cannot drift
//! from what the filter accepts). `nhi-guard schema` prints it; `policies/policy.schema.json` is
//! that output (a test keeps it in sync). The loader checks more than a schema can say (cross
//! references, key material, route shapes); the schema is for editors and CI linting.

use crate::engine::policy::document::PolicyDocument;

/// The schema as pretty-printed JSON, with a trailing newline.
pub fn policy_schema() -> String {
    let mut schema = schemars::schema_for!(PolicyDocument);
    schema.insert("$id".into(), "https://nhi-guard.example/policy.schema.json".into());
    schema.insert("title".into(), "nhi-guard policy".into());
    let text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    format!("{text}\n")
}
