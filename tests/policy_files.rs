//! The shipped files agree with each other: example policy, JSON Schema, YAML manifests, CLI.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn json(p: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo(p)).unwrap()).unwrap()
}

/// Every member of `doc` must be declared where the schema forbids additional properties.
fn walk(doc: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
    match doc {
        Value::Object(map) => {
            let props = &schema["properties"];
            for required in schema["required"].as_array().into_iter().flatten() {
                if !map.contains_key(required.as_str().unwrap_or("")) {
                    errors.push(format!("{path}: missing required {required}"));
                }
            }
            for (k, v) in map {
                match props.get(k) {
                    Some(s) => walk(v, s, &format!("{path}.{k}"), errors),
                    None if schema["additionalProperties"] == Value::Bool(false) => {
                        errors.push(format!("{path}.{k}: not in the schema"))
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &schema["items"], &format!("{path}[{i}]"), errors);
            }
        }
        other => {
            if let Some(allowed) = schema["enum"].as_array() {
                if !allowed.contains(other) {
                    errors.push(format!("{path}: {other} not in {allowed:?}"));
                }
            }
        }
    }
}

#[test]
fn the_example_policy_fits_the_schema() {
    let mut errors = Vec::new();
    walk(&json("policies/open-banking.json"), &json("policies/policy.schema.json"), "$", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_example_feed_fits_its_schema() {
    let mut errors = Vec::new();
    walk(&json("policies/revocation-example.json"), &json("policies/revocation.schema.json"), "$", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_schema_catches_what_the_loader_catches() {
    let mut doc = json("policies/open-banking.json");
    doc["clients"][0]["scope_cieling"] = serde_json::json!([]);
    doc["routes"][0]["client_kinds"] = serde_json::json!(["robot"]);
    let mut errors = Vec::new();
    walk(&doc, &json("policies/policy.schema.json"), "$", &mut errors);
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn every_yaml_file_parses() {
    for dir in ["envoy"] {
        for entry in std::fs::read_dir(repo(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path).unwrap();
                for doc in serde_yaml::Deserializer::from_str(&text) {
                    let v: Result<serde_yaml::Value, _> = serde::Deserialize::deserialize(doc);
                    assert!(v.is_ok(), "{}: {:?}", path.display(), v.err());
                }
            }
        }
    }
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nhi-guard")).args(args).current_dir(repo(".")).output().unwrap()
}

#[test]
fn cli_check_passes_the_example_and_fails_a_broken_policy() {
    let ok = cli(&["check", "policies/open-banking.json"]);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok (1 issuers, 4 partners, 9 clients, 14 routes)"));
    let mut doc = json("policies/open-banking.json");
    doc["clients"][2]["partner"] = serde_json::json!("ghost");
    let bad = repo("target/cli-bad-policy.json");
    std::fs::write(&bad, doc.to_string()).unwrap();
    let out = cli(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cli-bad-policy.json: invalid policy (1 error)") && err.contains("clients[2].partner"),
        "{err}"
    );
}

fn engine() -> nhi_guard::Engine {
    let text = std::fs::read_to_string(repo("policies/open-banking.json")).unwrap();
    let policy = std::rc::Rc::new(nhi_guard::load_policy(&text, "p").unwrap());
    let mut engine = nhi_guard::Engine::new(policy, Box::new(nhi_guard::jwt::verifier::PureRust));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    engine.observe_feed(1, now, || Some(br#"{"version": 1, "produced_at": "2026-11-24T00:00:00Z"}"#.to_vec())).unwrap();
    engine
}

fn decide(
    engine: &mut nhi_guard::Engine,
    method: &str,
    path: &str,
    token: &str,
    consent: Option<&str>,
) -> Result<(), String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let auth = format!("Bearer {token}");
    let consent: Vec<&[u8]> = consent.iter().map(|c| c.as_bytes()).collect();
    let facts = nhi_guard::RequestFacts { method, path, authorization: &[auth.as_bytes()], consent: &consent, now };
    match engine.decide(&facts) {
        nhi_guard::Decision::Allow(_) => Ok(()),
        nhi_guard::Decision::Deny(d) => Err(d.reason.code().to_string()),
    }
}

const TOKEN_ARGS: &[&str] = &[
    "token",
    "--key",
    "policies/demo-keys/as-es256.pem",
    "--kid",
    "as-es256",
    "--iss",
    "https://auth.bank.example",
    "--aud",
    "https://api.bank.example/open-banking",
    "--client",
    "moneywise-app",
    "--scope",
    "accounts",
];

#[test]
fn cli_tokens_are_accepted_by_the_engine() {
    let out = cli(&[TOKEN_ARGS, &["--count", "3"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tokens: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    assert_eq!(tokens.len(), 3);
    assert!(tokens[0] != tokens[1], "--count gives distinct tokens");
    let mut engine = engine();
    for t in &tokens {
        assert_eq!(decide(&mut engine, "POST", "/account-access-consents", t, None), Ok(()));
    }
}

#[test]
fn cli_consent_artefacts_are_accepted_by_the_engine() {
    let token = String::from_utf8(cli(&[TOKEN_ARGS, &["--sub", "customer-8841"]].concat()).stdout).unwrap();
    let out = cli(&[
        "consent",
        "--key",
        "policies/demo-keys/consent-es256.pem",
        "--kid",
        "consent-es256",
        "--iss",
        "https://consent.bank.example",
        "--client",
        "moneywise-app",
        "--sub",
        "customer-8841",
        "--consent-id",
        "aac-1",
        "--permissions",
        "ReadBalances ReadAccountsBasic",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let consent = String::from_utf8(out.stdout).unwrap();
    let mut engine = engine();
    assert_eq!(decide(&mut engine, "GET", "/accounts/1/balances", token.trim(), Some(consent.trim())), Ok(()));
    assert_eq!(
        decide(&mut engine, "GET", "/accounts/1/transactions", token.trim(), Some(consent.trim())),
        Err("consent_permission_missing".to_string())
    );
}

#[test]
fn cli_jwks_matches_the_example_policy_keys() {
    let out = cli(&[
        "jwks",
        "policies/demo-keys/as-es256.pem:as-es256",
        "policies/demo-keys/as-eddsa.pem:as-eddsa",
        "policies/demo-keys/as-ps256.pem:as-ps256:PS256",
    ]);
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, json("policies/open-banking.json")["issuers"][0]["jwks"]);
}
