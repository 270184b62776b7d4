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

/// Validation errors of `doc` against the JSON Schema at `schema_path` (draft 2020-12), as
/// "path: message" lines.
fn schema_errors(doc: &Value, schema_path: &str) -> Vec<String> {
    let schema = json(schema_path);
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{schema_path} is not a schema: {e}"));
    validator.iter_errors(doc).map(|e| format!("{}: {e}", e.instance_path)).collect()
}

#[test]
fn the_shipped_schema_is_the_one_generated_from_the_loaders_model() {
    let shipped = std::fs::read_to_string(repo("policies/policy.schema.json")).unwrap();
    assert!(
        shipped == nhi_guard::tools::schema::policy_schema(),
        "policies/policy.schema.json is stale: run `cargo run -- schema > policies/policy.schema.json`"
    );
}

#[test]
fn the_example_policy_fits_the_schema() {
    let errors = schema_errors(&json("policies/open-banking.json"), "policies/policy.schema.json");
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_example_feed_fits_its_schema() {
    let errors = schema_errors(&json("policies/revocation-example.json"), "policies/revocation.schema.json");
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_schema_catches_what_the_loader_catches() {
    let mut doc = json("policies/open-banking.json");
    doc["clients"][0]["scope_cieling"] = serde_json::json!([]);
    doc["routes"][0]["client_kinds"] = serde_json::json!(["robot"]);
    doc["settings"]["max_token_bytes"] = serde_json::json!(10);
    doc["revocation"]["cluster"] = serde_json::json!("");
    let errors = schema_errors(&doc, "policies/policy.schema.json");
    // (An optional section reports at the section: its schema is "this object or null".)
    for path in ["/clients/0", "/routes/0/client_kinds/0", "/settings/max_token_bytes", "/revocation"] {
        assert!(errors.iter().any(|e| e.starts_with(&format!("{path}:"))), "no error at {path}: {errors:#?}");
    }
    assert!(nhi_guard::load_policy(&doc.to_string(), "t").is_err(), "and the loader refuses it too");
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

/// The YAML documents of a manifest file, as JSON.
fn yaml_documents(file: &str) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(repo(file)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
        .collect()
}

#[test]
fn fleet_manifests_are_rendered_from_the_example_policy_and_fail_closed() {
    let check = Command::new("python3").arg(repo("scripts/render-manifests.py")).arg("--check").output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let example = json("policies/open-banking.json");
    let env = |name: &str| (name == "NHI_GUARD_AUDIT_KEY").then(|| "from-the-secret".to_string());
    for (file, kind) in [
        ("envoy/istio-wasmplugin.yaml", "WasmPlugin"),
        ("envoy/envoy-gateway-extension-policy.yaml", "EnvoyExtensionPolicy"),
    ] {
        let docs = yaml_documents(file);
        let plugin = docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("{file}: no {kind}"));
        let (policy, image) = if kind == "WasmPlugin" {
            assert_eq!(plugin["spec"]["failStrategy"], "FAIL_CLOSE", "{file} must fail closed");
            (plugin["spec"]["pluginConfig"].clone(), plugin["spec"]["url"].as_str().unwrap_or("").to_string())
        } else {
            let wasm = &plugin["spec"]["wasm"][0];
            assert_eq!(wasm["failOpen"], false, "{file} must fail closed");
            (wasm["config"].clone(), wasm["code"]["image"]["url"].as_str().unwrap_or("").to_string())
        };
        let digest = image.rsplit_once("@sha256:").map(|(_, d)| d).unwrap_or("");
        assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()), "{file}: {image} is not pinned");
        // The example's routes, clients and partners; the audit key from the environment, not inline.
        for part in ["routes", "clients", "partners"] {
            assert_eq!(policy[part], example[part], "{file}: {part} differ from the example policy");
        }
        assert_eq!(policy["settings"]["audit_subject_key_env"], "NHI_GUARD_AUDIT_KEY");
        assert!(policy["settings"].get("audit_subject_key").is_none(), "{file}: the audit key sits in the manifest");
        assert!(nhi_guard::engine::policy::load_with_env(&policy.to_string(), file, &env).is_ok());
        let errors = schema_errors(&policy, "policies/policy.schema.json");
        assert!(errors.is_empty(), "{file}: {errors:#?}");
        let no_env = nhi_guard::load_policy(&policy.to_string(), file).unwrap_err().to_string();
        assert!(no_env.contains("settings.audit_subject_key_env: NHI_GUARD_AUDIT_KEY is not set"), "{no_env}");
    }
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nhi-guard")).args(args).current_dir(repo(".")).output().unwrap()
}

#[test]
fn cli_check_reports_findings_and_fails_on_load_errors_or_error_findings() {
    let example = cli(&["check", "policies/open-banking.json", "--now", "2026-11-24T00:00:00Z"]);
    assert_eq!(example.status.code(), Some(1), "the example carries deliberate stale partner access");
    let out = String::from_utf8_lossy(&example.stdout);
    assert!(out.contains("ok (3 issuers, 4 partners, 9 clients, 15 routes)"), "{out}");
    assert!(out.contains("stale_partner_access") && out.contains("client quickloans-app"), "{out}");

    let mut clean = json("policies/open-banking.json");
    let bad_partners = ["quickloans", "budgetbuddy", "oldbridge"];
    clean["partners"].as_array_mut().unwrap().retain(|p| !bad_partners.contains(&p["id"].as_str().unwrap_or("")));
    clean["clients"].as_array_mut().unwrap().retain(|c| !bad_partners.contains(&c["partner"].as_str().unwrap_or("-")));
    let path = repo("target/cli-clean-policy.json");
    std::fs::write(&path, clean.to_string()).unwrap();
    let ok = cli(&["check", path.to_str().unwrap(), "--now", "2026-11-24T00:00:00Z", "--format", "json"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let report: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report[0]["valid"], true);
    assert!(report[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["code"] == "review_overdue" && f["severity"] == "warning"));

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
    let out = cli(&["check", bad.to_str().unwrap(), "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["errors"][0]["path"], "clients[2].partner");
}

#[test]
fn cli_inventory_in_three_formats() {
    let csv = String::from_utf8(cli(&["inventory", "policies/open-banking.json", "--format", "csv"]).stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,kind,partner,owner,purpose,status,scopes,expires,last_reviewed,review_due,routes,authentication"
    );
    let batch = lines.iter().find(|l| l.starts_with("\"statements-batch\"")).unwrap();
    assert!(batch.ends_with("pinned to spiffe://bank.internal/ns/statements/sa/statements-batch\""), "{batch}");
    assert_eq!(lines.len(), 1 + 13);
    assert!(lines.iter().any(|l| l.starts_with("\"quickloans-app\",\"partner_app\",\"quickloans\"")));
    let rows: Value =
        serde_json::from_slice(&cli(&["inventory", "policies/open-banking.json", "--format", "json"]).stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 13);
    let app = rows.as_array().unwrap().iter().find(|r| r["id"] == "moneywise-app").unwrap();
    assert_eq!(app["authentication"], serde_json::json!(["tokens from https://auth.bank.example"]));
    let text = String::from_utf8(cli(&["inventory", "policies/open-banking.json"]).stdout).unwrap();
    assert!(text.starts_with("ID ") && text.contains("ledger-sync"));
}

fn engine() -> nhi_guard::Engine {
    let text = std::fs::read_to_string(repo("policies/open-banking.json")).unwrap();
    let policy = std::rc::Rc::new(nhi_guard::load_policy(&text, "p").unwrap());
    let mut engine = nhi_guard::Engine::new(policy, Box::new(nhi_guard::engine::jwt::verifier::PureRust));
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
    let facts = nhi_guard::RequestFacts {
        method,
        path,
        authorization: &[auth.as_bytes()],
        consent: &consent,
        dpop: &[],
        peer: None,
        now,
        method_override: false,
    };
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

#[test]
fn the_cli_keeps_ecosystem_habits() {
    for sub in ["check", "inventory", "token", "dpop", "consent", "envoy-config", "upstream", "completions"] {
        let out = cli(&[sub, "--help"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("Usage: nhi-guard"), "{sub} --help: {text}");
    }
    let unknown = cli(&["check", "policies/open-banking.json", "--bogus"]);
    assert_eq!(unknown.status.code(), Some(2), "unknown flags are refused");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unexpected argument '--bogus'"));
    let port = cli(&["upstream", "--port", "70000"]);
    assert_eq!(port.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&port.stderr).contains("70000 is not in 0..=65535"));
    let completions = cli(&["completions", "bash"]);
    assert!(completions.status.success() && String::from_utf8_lossy(&completions.stdout).contains("nhi-guard"));
    // A reader that goes away (`| head`) ends the program quietly, not with a panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_nhi-guard"))
        .args(["token", "--key", "policies/demo-keys/as-es256.pem", "--kid", "k", "--iss", "i", "--aud", "a"])
        .args(["--client", "c", "--count", "2000"])
        .current_dir(repo("."))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "closed pipe: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn check_knows_what_the_envoy_config_must_provide() {
    let plain = repo("target/cli-plain-envoy.yaml");
    std::fs::write(&plain, "static_resources: {}\n").unwrap();
    let out = cli(&["check", "policies/open-banking.json", "--envoy-config", plain.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("pinned_client_without_mtls_listener"));
    let shipped = cli(&["check", "policies/open-banking.json", "--envoy-config", "envoy/envoy.yaml"]);
    assert!(!String::from_utf8_lossy(&shipped.stdout).contains("pinned_client_without_mtls_listener"));
}

#[test]
fn cli_explain_and_report_take_bad_input_with_a_clear_error() {
    let policy = "policies/open-banking.json";
    let ok = cli(&["explain", policy, "--path", "/accounts", "--at", "2026-11-24T00:00:00Z", "--format", "json"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let e: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!((e["status"].as_u64(), e["reason"].as_str()), (Some(401), Some("token_missing")));
    assert!(e["fix"].as_str().unwrap().contains("Authorization"));
    for (args, needle) in [
        (vec!["explain", policy, "--path", "/a", "-H", "no colon here"], "write \"Name: value\""),
        (vec!["explain", policy, "--path", "/a", "--jwks", "nofile"], "write ISSUER=FILE"),
        (
            vec!["explain", policy, "--path", "/a", "--jwks", "https://nobody.example=Cargo.toml"],
            "not an issuer of the policy",
        ),
        (vec!["explain", policy, "--path", "/a", "--at", "yesterday"], "RFC 3339"),
        (vec!["explain", policy, "--path", "/a", "--feed", "Cargo.toml"], "feed document"),
        (vec!["explain", "missing.json", "--path", "/a"], "missing.json"),
        (vec!["report", policy, "--stats", "does-not-exist.txt"], "does-not-exist.txt"),
    ] {
        let out = cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(needle), "{args:?}: {err}");
    }
    let dir = repo("target/report-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("page.html");
    let out = cli(&["report", policy, "--now", "2026-11-24T00:00:00Z", "-o", page.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains(r#"<tr id="id-moneywise-app""#));
}

/// The feed service's Kubernetes manifest: the Service the fleet manifests poll, two replicas on
/// PostgreSQL, probes, secrets only by reference, and a config its own loader takes.
#[test]
fn the_feed_service_manifest_serves_what_the_fleet_manifests_poll() {
    let docs = yaml_documents("envoy/feed-service.yaml");
    let of = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}")).clone();
    let (service, deployment, config_map) = (of("Service"), of("Deployment"), of("ConfigMap"));
    let text = config_map["data"]["feed.json"].as_str().unwrap();
    let env = |name: &str| {
        Some(if name.ends_with("DATABASE_URL") {
            "postgres://feed@db/feed".into()
        } else {
            format!("{name}-0123456789abcdef0123456789")
        })
    };
    let config = nhi_guard::feed::config::parse("envoy/feed-service.yaml", text, &env).unwrap();
    assert!(config.database_url.starts_with("postgres://"), "replicas need PostgreSQL");
    let doc: Value = serde_json::from_str(text).unwrap();
    assert!(doc["database"].get("url").is_none(), "the database URL comes from the Secret");
    // The fleet manifests' feed cluster is this Service, at this path.
    let (name, ns) =
        (service["metadata"]["name"].as_str().unwrap(), service["metadata"]["namespace"].as_str().unwrap());
    let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
    let istio = yaml_documents("envoy/istio-wasmplugin.yaml");
    let plugin = istio.iter().find(|d| d["kind"] == "WasmPlugin").unwrap();
    let revocation = &plugin["spec"]["pluginConfig"]["revocation"];
    assert_eq!(revocation["cluster"], format!("outbound|{port}||{name}.{ns}.svc.cluster.local"));
    assert_eq!(revocation["path"].as_str(), Some(config.feed.path.as_str()));
    assert_eq!(config.listen, format!("0.0.0.0:{port}"));
    // Highly available, probed, secrets by reference only.
    let spec = &deployment["spec"];
    assert!(spec["replicas"].as_u64().unwrap() >= 2);
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    for e in container["env"].as_array().unwrap() {
        assert!(
            e.get("value").is_none() && e["valueFrom"]["secretKeyRef"].is_object(),
            "{e}: a secret in the manifest"
        );
    }
    assert_eq!(of("PodDisruptionBudget")["spec"]["minAvailable"], 1);
}

/// `nhi-guard set` mints what the feed service accepts, for each subject form; bad forms are refused.
#[test]
fn cli_sets_are_accepted_by_the_feed_service() {
    use nhi_guard::feed::set::{validate, Trust};
    let pem = std::fs::read_to_string(repo("policies/demo-keys/idp-es256.pem")).unwrap();
    let key = nhi_guard::tools::mint::SigningKey::from_pkcs8_pem(&pem, nhi_guard::engine::keys::Alg::PS256).unwrap();
    let jwk: nhi_guard::engine::keys::Jwk = serde_json::from_value(key.public_jwk("idp-es256")).unwrap();
    let keys = vec![jwk.to_key().unwrap()];
    let trust = Trust {
        issuer: "https://idp.bank.example",
        audience: "https://feed.bank.example",
        algorithms: &[nhi_guard::engine::keys::Alg::ES256],
        keys: &keys,
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for (subject, event, client, partner) in [
        ("opaque:moneywise-app", "risc:account-disabled", Some("moneywise-app"), None),
        ("tenant:moneywise", "risc:account-purged", None, Some("moneywise")),
        ("iss_sub:https://auth.bank.example#ledger-sync", "caep:credential-change", Some("ledger-sync"), None),
        ("jwt_id:https://auth.bank.example#t-1", "caep:session-revoked", None, None),
    ] {
        let out = cli(&[
            "set",
            "--key",
            "policies/demo-keys/idp-es256.pem",
            "--kid",
            "idp-es256",
            "--iss",
            "https://idp.bank.example",
            "--aud",
            "https://feed.bank.example",
            "--event",
            event,
            "--subject",
            subject,
            "--members",
            r#"{"change_type": "revoke"}"#,
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let set = String::from_utf8(out.stdout).unwrap();
        let e = validate(&set, &trust, now).unwrap_or_else(|err| panic!("{subject}: {err:?}"));
        assert_eq!((e.subject.client(), e.subject.partner()), (client, partner), "{subject}");
        assert!(e.event_type.ends_with(event.split(':').nth(1).unwrap()));
    }
    for bad in ["moneywise", "jwt_id:no-hash", "phone:+44"] {
        let out = cli(&[
            "set",
            "--key",
            "policies/demo-keys/idp-es256.pem",
            "--kid",
            "k",
            "--iss",
            "i",
            "--aud",
            "a",
            "--event",
            "risc:account-disabled",
            "--subject",
            bad,
        ]);
        assert!(!out.status.success(), "{bad} was accepted");
    }
}
