//! Audit streams, metrics per route and partner, the interaction id, and dry-run, in the real Envoy.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::Duration;

/// The JSON lines of one audit stream's access-log file, once it holds at least `n` of them.
fn audit_lines(envoy: &Envoy, stream: &str, n: usize) -> Vec<Value> {
    let path = envoy.dir.join(format!("audit-{stream}.jsonl"));
    let read = || -> Vec<Value> {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    envoy.wait_until(Duration::from_secs(5), || read().len() >= n);
    read()
}

#[test]
fn each_decision_writes_its_streams_without_tokens_or_raw_subjects() {
    let mut doc: Value = serde_json::from_str(&example_policy()).unwrap();
    doc["settings"]["audit_log"] = json!("all");
    let envoy = Envoy::start(&doc.to_string());
    let delegated = token(&{
        let mut c = claims("moneywise-app", "accounts");
        c["act"] = json!({"sub": "moneywise-insights"});
        c
    });
    let r = envoy.send(
        "GET",
        "/accounts/22289/balances",
        &[("authorization", &bearer(&delegated)), ("x-fapi-interaction-id", "93bac548-d2de-4546-b106-880a5018460d")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-fapi-interaction-id"), Some("93bac548-d2de-4546-b106-880a5018460d"));
    assert_eq!(r.upstream_header("x-fapi-interaction-id").as_deref(), Some("93bac548-d2de-4546-b106-880a5018460d"));
    let denied = envoy.send(
        "GET",
        "/accounts/22289/balances",
        &[("authorization", &bearer(&token(&claims("quickloans-app", "accounts"))))],
    );
    assert_eq!(denied.status, 403);
    let generated = denied.header("x-fapi-interaction-id").unwrap_or("").to_string();
    assert!(
        nhi_guard::engine::audit::is_uuid(generated.as_bytes()),
        "a UUID is generated when the client sends none: {:?}",
        denied.headers
    );

    let tokens = audit_lines(&envoy, "token", 2);
    let consents = audit_lines(&envoy, "consent", 2);
    let delegations = audit_lines(&envoy, "delegation", 1);
    let allow = tokens.iter().find(|e| e["outcome"] == "allow").expect("an allow event");
    for field in ["decision_id", "time", "request_id", "interaction_id", "route", "client", "partner", "kid", "jti"] {
        assert!(allow[field].is_string(), "token event lacks {field}: {allow}");
    }
    assert_eq!(allow["interaction_id"], "93bac548-d2de-4546-b106-880a5018460d");
    assert_eq!(allow["auth_method"], "bearer");
    let decision = allow["decision_id"].clone();
    let consent =
        consents.iter().find(|e| e["decision_id"] == decision).expect("the consent event of the same decision");
    assert_eq!(consent["consent_id"], "aac-8841");
    assert_eq!(consent["permissions_used"], "ReadBalances");
    assert_eq!(consent["subject_hash"].as_str().map(str::len), Some(32));
    let delegation = delegations.iter().find(|e| e["decision_id"] == decision).expect("the delegation event");
    assert_eq!(delegation["actor_chain"], json!(["moneywise-insights"]));
    let deny = tokens.iter().find(|e| e["outcome"] == "deny").expect("a deny event");
    assert_eq!((deny["reason"].as_str(), deny["partner"].as_str()), (Some("partner_offboarded"), Some("quickloans")));

    let everything = format!(
        "{}{}{}{}",
        std::fs::read_to_string(envoy.dir.join("audit-token.jsonl")).unwrap_or_default(),
        std::fs::read_to_string(envoy.dir.join("audit-consent.jsonl")).unwrap_or_default(),
        std::fs::read_to_string(envoy.dir.join("audit-delegation.jsonl")).unwrap_or_default(),
        envoy.log_with("nhi-guard.audit.delegation")
    );
    assert!(
        everything.contains("nhi-guard.audit.token {") && everything.contains("nhi-guard.audit.consent {"),
        "stream prefixes in the log"
    );
    assert!(!everything.contains("customer-8841"), "a raw customer subject reached the audit trail");
    assert!(!everything.contains(delegated.rsplit('.').next().unwrap()), "a signature reached the audit trail");
    assert!(!everything.contains("eyJ"), "something JWS-like reached the audit trail");

    assert_eq!(envoy.counter("nhi_guard.route.balances.allowed"), 1);
    assert_eq!(envoy.counter("nhi_guard.route.balances.denied"), 1);
    assert_eq!(envoy.counter("nhi_guard.partner.moneywise.allowed"), 1);
    assert_eq!(envoy.counter("nhi_guard.partner.quickloans.denied"), 1);
}

#[test]
fn dry_run_decides_counts_and_logs_but_lets_requests_through() {
    let mut doc: Value = serde_json::from_str(&example_policy()).unwrap();
    for r in doc["routes"].as_array_mut().unwrap() {
        if r["id"] == "balances" {
            r["dry_run"] = json!(true);
        }
    }
    let envoy = Envoy::start(&doc.to_string());
    let r = envoy.send("GET", "/accounts/22289/balances", &[("x-nhi-client", "spoofed")]);
    assert_eq!(r.status, 200, "dry-run route lets the request through: {}", r.body);
    assert_eq!(r.upstream_header("x-nhi-would-deny").as_deref(), Some("token_missing"));
    assert_eq!(r.upstream_header("x-nhi-client"), None, "no verified identity, and the spoof is gone");
    // Other routes still enforce.
    assert_eq!(envoy.send("GET", "/accounts", &[]).status, 401);
    assert_eq!(envoy.counter("nhi_guard.would_deny"), 1);
    assert_eq!(envoy.counter("nhi_guard.would_deny.token_missing"), 1);
    assert_eq!(envoy.counter("nhi_guard.route.balances.would_deny"), 1);
    assert_eq!(envoy.counter("nhi_guard.denied.token_missing"), 1);
    let tokens = audit_lines(&envoy, "token", 2);
    assert!(tokens.iter().any(|e| e["outcome"] == "would_deny" && e["reason"] == "token_missing"), "{tokens:?}");

    doc["settings"]["mode"] = json!("dry_run");
    let everywhere = Envoy::start(&doc.to_string());
    let r = everywhere.send("GET", "/admin/users", &[]);
    assert_eq!((r.status, r.upstream_header("x-nhi-would-deny").as_deref()), (200, Some("route_unmatched")));
}

#[test]
fn client_request_ids_cannot_forge_log_fields_or_decision_ids() {
    let envoy = Envoy::start(&example_policy());
    let evil = "evil decision_id=forged reason=allow";
    let offboarded = bearer(&token(&claims("quickloans-app", "accounts")));
    let mut ids = std::collections::HashSet::new();
    for _ in 0..60 {
        let r = envoy.send(
            "GET",
            "/accounts/22289/balances",
            &[("authorization", &offboarded), ("x-request-id", evil), ("x-fapi-interaction-id", "not-a-uuid")],
        );
        assert_eq!(r.status, 403);
        // A malformed interaction id is replaced by a generated UUID, never the client's request id.
        let interaction = r.header("x-fapi-interaction-id").unwrap_or("").to_string();
        assert!(nhi_guard::engine::audit::is_uuid(interaction.as_bytes()), "{interaction:?}");
        assert_eq!(interaction.as_bytes()[14], b'4', "a version 4 UUID: {interaction}");
        ids.insert(interaction);
    }
    assert_eq!(ids.len(), 60, "interaction ids repeat");
    let decisions: std::collections::HashSet<String> =
        audit_lines(&envoy, "token", 60).iter().filter_map(|e| e["decision_id"].as_str().map(String::from)).collect();
    assert_eq!(decisions.len(), 60, "60 decisions with one x-request-id must have 60 decision ids");
    // The deny line quotes what the client sent: no field can be forged.
    let log = envoy.log_with("partner_offboarded");
    let line = log.lines().find(|l| l.contains("nhi-guard deny reason=partner_offboarded")).unwrap_or("");
    assert_eq!(line.matches("decision_id=").count(), 1, "{line}");
    assert!(!line.contains("request_id=evil"), "{line}");
    // Allowed requests reach the upstream with a request id Envoy made, not the client's.
    let ok = envoy.send(
        "GET",
        "/accounts/22289/balances",
        &[("authorization", &bearer(&token(&claims("moneywise-app", "accounts")))), ("x-request-id", evil)],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_ne!(
        ok.upstream_header("x-request-id").as_deref(),
        Some(evil),
        "the client's x-request-id reached the upstream"
    );
}
