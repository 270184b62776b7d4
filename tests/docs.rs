//! The reference pages in docs/ list what the code defines: every reason code, every policy field,
//! every metric and every governance finding appears in its page, so the pages cannot fall behind.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

use serde_json::Value;
use std::path::{Path, PathBuf};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn read(p: &str) -> String {
    std::fs::read_to_string(repo(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// `name` appears as an identifier in backticked text (`name`, `a.name`, `name[]`, `name.b`, ...).
fn mentions(doc: &str, name: &str) -> bool {
    doc.match_indices(name).any(|(i, _)| {
        let before = doc[..i].chars().next_back().unwrap_or(' ');
        let after = doc[i + name.len()..].chars().next().unwrap_or(' ');
        !before.is_ascii_alphanumeric() && before != '_' && !after.is_ascii_alphanumeric() && after != '_'
    })
}

#[test]
fn every_reason_code_is_in_the_reason_table() {
    let doc = read("docs/reason-codes.md");
    let missing: Vec<&str> =
        nhi_guard::Reason::ALL.iter().map(|r| r.code()).filter(|c| !doc.contains(&format!("| `{c}` |"))).collect();
    assert!(missing.is_empty(), "docs/reason-codes.md lacks rows for {missing:?}");
}

/// Property names of the policy schema, with their paths, following `$ref`s into `$defs` (JWK
/// members are RFC 7517's, not ours).
fn schema_fields(root: &Value, schema: &Value, path: &str, out: &mut Vec<(String, String)>, depth: usize) {
    if depth > 12 {
        return;
    }
    if let Some(target) = schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
        schema_fields(root, &root["$defs"][target], path, out, depth + 1);
    }
    if let Some(props) = schema["properties"].as_object() {
        for (name, sub) in props {
            if name == "$schema" || name == "jwks" {
                continue;
            }
            out.push((name.clone(), format!("{path}.{name}")));
            schema_fields(root, sub, &format!("{path}.{name}"), out, depth + 1);
        }
    }
    for key in ["items", "additionalProperties"] {
        if schema[key].is_object() {
            schema_fields(root, &schema[key], path, out, depth + 1);
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for alt in schema[key].as_array().into_iter().flatten() {
            schema_fields(root, alt, path, out, depth + 1);
        }
    }
}

#[test]
fn every_policy_field_is_in_the_policy_reference() {
    let schema: Value = serde_json::from_str(&read("policies/policy.schema.json")).unwrap();
    let mut fields = Vec::new();
    schema_fields(&schema, &schema, "", &mut fields, 0);
    assert!(fields.len() > 60, "the schema walk found too little: {}", fields.len());
    let doc = read("docs/policy.md");
    let missing: Vec<&String> = fields.iter().filter(|(name, _)| !mentions(&doc, name)).map(|(_, path)| path).collect();
    assert!(missing.is_empty(), "docs/policy.md does not mention {missing:?}");
}

/// Metric names the filter defines: string literals handed to a metric definition.
fn defined_metrics() -> Vec<String> {
    let mut files = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") && !p.to_string_lossy().ends_with("_tests.rs") {
                out.push(p);
            }
        }
    }
    walk(&repo("src/filter"), &mut files);
    let mut names = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("\"nhi_guard.") {
            let before = &text[i.saturating_sub(48)..i];
            if !(before.contains("define_metric(") || before.ends_with("counter(") || before.ends_with("c(")) {
                continue;
            }
            let end = text[i + 1..].find('"').unwrap() + i + 1;
            let name = &text[i + 1..end];
            if !name.contains('{') {
                names.push(name.to_string());
            }
        }
    }
    names
}

#[test]
fn every_metric_is_in_the_metrics_page() {
    let names = defined_metrics();
    assert!(names.len() >= 15, "too few metric definitions found: {names:?}");
    let doc = read("docs/metrics-and-audit.md");
    let missing: Vec<&String> = names.iter().filter(|n| !mentions(&doc, n)).collect();
    assert!(missing.is_empty(), "docs/metrics-and-audit.md lacks {missing:?}");
    for pattern in [
        "nhi_guard.denied.<reason>",
        "nhi_guard.would_deny.<reason>",
        "nhi_guard.route.<route id>",
        "nhi_guard.partner.<partner id>",
    ] {
        assert!(doc.contains(pattern), "docs/metrics-and-audit.md lacks {pattern}");
    }
}

#[test]
fn every_governance_finding_is_described() {
    let source = read("src/tools/governance.rs");
    let code_part = &source[..source.find("#[cfg(test)]").unwrap_or(source.len())];
    let mut codes: Vec<&str> = Vec::new();
    for line in code_part.lines() {
        let t = line.trim();
        if t.starts_with('"') && t.ends_with("\",") && !t.contains(' ') && t.len() > 4 {
            let code = &t[1..t.len() - 2];
            if code.chars().all(|c| c.is_ascii_lowercase() || c == '_') && code.contains('_') {
                codes.push(code);
            }
        }
    }
    assert!(codes.len() >= 15, "too few finding codes found: {codes:?}");
    let doc = read("docs/metrics-and-audit.md");
    let missing: Vec<&&str> = codes.iter().filter(|c| !mentions(&doc, c)).collect();
    assert!(missing.is_empty(), "docs/metrics-and-audit.md does not describe findings {missing:?}");
}

#[test]
fn the_readme_is_a_front_page_that_links_every_reference_page() {
    let readme = read("README.md");
    // 185: the feed service's event table lives on the front page (what each signal makes the filter deny).
    assert!(readme.lines().count() < 185, "the README grew past a front page: move reference material to docs/");
    for page in [
        "docs/policy.md",
        "docs/reason-codes.md",
        "docs/metrics-and-audit.md",
        "docs/deployment.md",
        "docs/performance.md",
        "docs/design.md",
        "docs/testing.md",
        "docs/feed.md",
    ] {
        assert!(repo(page).exists(), "{page} is missing");
        assert!(readme.contains(&format!("({page})")), "README does not link {page}");
    }
    assert!(readme.contains("scripts/demo.sh") && readme.contains("scripts/test.sh"), "the two commands");
}

/// The "Your first policy" block of docs/policy.md loads, and `explain` and `report` work on it.
#[test]
fn the_first_policy_in_the_docs_loads_and_the_operator_tools_work_on_it() {
    use nhi_guard::tools::explain::{explain, Fetched, Request};
    use nhi_guard::tools::mint::{access_token_header, sign_jws, SigningKey};
    let doc = read("docs/policy.md");
    let section = doc.split("## Your first policy").nth(1).unwrap();
    let json = section.split("```json\n").nth(1).unwrap().split("\n```").next().unwrap();
    let env = |name: &str| (name == "ACME_AUDIT_KEY").then(|| "a-key-from-the-secret-store".to_string());
    let load = || nhi_guard::engine::policy::load_with_env(json, "my-policy.json", &env).unwrap();
    // A token from the policy's authorization server, with the customer's consent in it.
    let key = SigningKey::es256_from_bytes(&[5u8; 32]).unwrap();
    let jwks = serde_json::json!({"keys": [key.public_jwk("login-1")]}).to_string().into_bytes();
    let now = 1_800_000_000;
    let claims = serde_json::json!({
        "iss": "https://login.acme.example", "aud": "https://api.acme.example", "sub": "customer-1",
        "client_id": "budgetco-app", "scope": "accounts", "iat": now - 5, "exp": now + 295, "jti": "t-1",
        "consent_id": "c-1", "authorization_details": [{"type": "account_access", "actions": ["ReadAccountsBasic"]}]
    });
    let token = sign_jws(&access_token_header(&key, "login-1"), &claims, &key);
    let request = Request {
        method: "GET".into(),
        path: "/accounts".into(),
        headers: vec![("Authorization".into(), format!("Bearer {token}"))],
        at: now,
        ..Request::default()
    };
    let fetched = Fetched { feed: None, jwks: vec![("https://login.acme.example".into(), jwks)] };
    let e = explain(load(), &request, &fetched, vec![]).unwrap();
    assert_eq!((e.decision, e.status), ("allow", 200), "{}", nhi_guard::tools::explain::render_text(&e));
    let later = Request { at: now + 3600, ..request };
    let e = explain(load(), &later, &fetched, vec![]).unwrap();
    assert_eq!(e.reason, Some("token_expired"));
    let html = nhi_guard::tools::report::render(&load(), "my-policy.json", now, None);
    assert!(html.contains(r#"<tr id="id-budgetco-app" class="identity""#) && html.contains("<code>accounts</code>"));
}
