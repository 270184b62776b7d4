//! The offboarding and consent API: authenticated, granted per action, idempotent, audited per
//! stream, concurrent-safe; on SQLite and PostgreSQL.

use super::*;
use serde_json::json;

fn api_suite(db: Db) {
    let svc = Service::start(&db, None, |_| {});
    let v0 = svc.feed()["version"].as_i64().unwrap();
    let reason = json!({"reason": "contract ended 2026-11-30"});

    // Offboard: changed, version + 1; again: unchanged, same version.
    let (s, b) = svc.api(PARTNER_MGMT, "/v1/partners/moneywise/offboard", reason.clone());
    assert_eq!((s, b["outcome"].as_str(), b["version"].as_i64()), (200, Some("changed"), Some(v0 + 1)), "{b}");
    let (s, b) = svc.api(PARTNER_MGMT, "/v1/partners/moneywise/offboard", reason.clone());
    assert_eq!((s, b["outcome"].as_str(), b["version"].as_i64()), (200, Some("unchanged"), Some(v0 + 1)));
    assert_eq!(svc.feed()["partners"], json!([{"id": "moneywise", "status": "offboarded"}]));
    // An offboarding is final: suspending or reinstating it is a conflict.
    assert_eq!(svc.api(PARTNER_MGMT, "/v1/partners/moneywise/suspend", reason.clone()).0, 409);
    assert_eq!(svc.api(PARTNER_MGMT, "/v1/partners/moneywise/reinstate", reason.clone()).0, 409);
    // Suspend, then reinstate, another partner.
    assert_eq!(svc.api(PARTNER_MGMT, "/v1/partners/quickloans/suspend", reason.clone()).1["outcome"], "changed");
    assert!(svc.feed()["partners"].as_array().unwrap().contains(&json!({"id": "quickloans", "status": "suspended"})));
    assert_eq!(svc.api(PARTNER_MGMT, "/v1/partners/quickloans/reinstate", reason.clone()).1["outcome"], "changed");
    assert_eq!(svc.feed()["partners"], json!([{"id": "moneywise", "status": "offboarded"}]));

    // The other actions, each by the caller granted it.
    assert_eq!(svc.api(PARTNER_MGMT, "/v1/clients/ledger-sync/revoke", reason.clone()).0, 200);
    let consent = json!({"reason": "customer withdrew consent in the app", "expires_at": "2027-01-01T00:00:00Z"});
    assert_eq!(svc.api(CONSENT_MGR, "/v1/consents/aac-8841/revoke", consent).0, 200);
    assert_eq!(
        svc.api(
            KEY_CEREMONY,
            "/v1/tokens/revoke",
            json!({"reason": "leaked in a log", "iss": "https://auth.bank.example", "jti": "j-1"})
        )
        .0,
        200
    );
    assert_eq!(
        svc.api(
            KEY_CEREMONY,
            "/v1/keys/retire",
            json!({"reason": "rotation", "iss": "https://auth.bank.example", "kid": "as-old"})
        )
        .0,
        200
    );
    let feed = svc.feed();
    assert_eq!(feed["clients"], json!(["ledger-sync"]));
    assert_eq!(feed["consents"], json!(["aac-8841"]));
    assert_eq!(feed["tokens"], json!([{"iss": "https://auth.bank.example", "jti": "j-1"}]));
    assert_eq!(feed["keys"], json!([{"iss": "https://auth.bank.example", "kid": "as-old"}]));

    // Refusals: no or unknown secret 401, an action not granted 403, bad bodies 400, too large 413, no reason 400.
    let before = svc.feed()["version"].clone();
    assert_eq!(svc.api("not-a-secret", "/v1/partners/acme/offboard", reason.clone()).0, 401);
    assert_eq!(svc.api("not-a-secret", "/v1/partners/acme/offboard", json!({"bad": 1})).0, 401, "who before what");
    let r = http().post(svc.url("/v1/partners/acme/offboard")).json(&reason).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        svc.api(CONSENT_MGR, "/v1/partners/acme/offboard", reason.clone()).0,
        403,
        "the consent manager cannot offboard"
    );
    assert_eq!(svc.api(PARTNER_MGMT, "/v1/consents/aac-1/revoke", reason.clone()).0, 403);
    assert_eq!(svc.api(PARTNER_MGMT, "/v1/partners/acme/offboard", json!({})).0, 400, "no reason");
    assert_eq!(svc.api(PARTNER_MGMT, "/v1/partners/acme/offboard", json!({"reason": " "})).0, 400, "blank reason");
    assert_eq!(
        svc.api(PARTNER_MGMT, "/v1/partners/acme/offboard", json!({"reason": "x", "extra": 1})).0,
        400,
        "unknown field"
    );
    assert_eq!(
        svc.api(
            PARTNER_MGMT,
            "/v1/partners/acme/offboard",
            json!({"reason": "x", "expires_at": "2027-01-01T00:00:00Z"})
        )
        .0,
        400
    );
    assert_eq!(
        svc.api(CONSENT_MGR, "/v1/consents/aac-2/revoke", json!({"reason": "x", "expires_at": "tomorrow"})).0,
        400
    );
    assert_eq!(svc.api(PARTNER_MGMT, "/v1/partners/acme/delete", reason.clone()).0, 404);
    assert_eq!(svc.api(PARTNER_MGMT, &format!("/v1/partners/{}/offboard", "a".repeat(300)), reason.clone()).0, 400);
    let big = json!({"reason": "x".repeat(20_000)});
    assert_eq!(svc.api(PARTNER_MGMT, "/v1/partners/acme/offboard", big).0, 413);
    let r =
        http().post(svc.url("/v1/partners/acme/offboard")).bearer_auth(PARTNER_MGMT).body("{not json").send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(svc.feed()["version"], before, "no refused call changed the feed");

    // Concurrent offboardings of one partner: every call succeeds, exactly one changes, one version step.
    let v = svc.feed()["version"].as_i64().unwrap();
    let outcomes: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| s.spawn(|| svc.api(PARTNER_MGMT, "/v1/partners/fastpay/offboard", json!({"reason": "fraud"}))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .map(|(s, b)| format!("{s} {}", b["outcome"].as_str().unwrap_or("?")))
            .collect()
    });
    assert_eq!(outcomes.iter().filter(|o| *o == "200 changed").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "200 unchanged").count(), 15, "{outcomes:?}");
    assert_eq!(svc.feed()["version"].as_i64().unwrap(), v + 1);

    // Audit: offboarding and consent actions in their own files, with who, what, when and why.
    let offboarding = svc.audit("offboarding");
    assert!(offboarding.iter().all(|e| e["stream"] == "offboarding"));
    assert!(offboarding.iter().any(|e| e["who"] == "partner-management"
        && e["action"] == "offboard_partner"
        && e["target"] == "partner:moneywise"
        && e["reason"] == "contract ended 2026-11-30"
        && e["outcome"] == "changed"
        && e["at"].as_str().is_some_and(|t| t.ends_with('Z'))));
    assert_eq!(
        offboarding.iter().filter(|e| e["target"] == "partner:fastpay").count(),
        16,
        "every call audited, changed or not"
    );
    let consent = svc.audit("consent");
    assert_eq!(consent.len(), 1);
    assert_eq!(
        (consent[0]["who"].as_str(), consent[0]["target"].as_str()),
        (Some("consent-manager"), Some("consent:aac-8841"))
    );
    assert_eq!(svc.audit("credential").len(), 2);
    assert!(svc.audit("signal").is_empty());
    assert_eq!(svc.metric("nhi_guard_feed_api_changes_total{action=\"offboard_partner\",outcome=\"changed\"}"), 2.0);
    assert_eq!(svc.metric("nhi_guard_feed_feed_entries{kind=\"partners\"}"), 2.0);

    // ETag: a fetch with the current one is answered 304.
    let r = http().get(svc.url("/nhi-guard/revocations.json")).send().unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"v{}\"", v + 1));
    let r = http().get(svc.url("/nhi-guard/revocations.json")).header("if-none-match", &etag).send().unwrap();
    assert_eq!(r.status().as_u16(), 304);
}

#[test]
fn the_api_is_authenticated_idempotent_audited_and_safe_under_concurrency_on_sqlite() {
    api_suite(Db::Sqlite);
}

#[test]
fn the_api_is_authenticated_idempotent_audited_and_safe_under_concurrency_on_postgres() {
    api_suite(Db::Postgres(shared_postgres()));
}

#[test]
fn a_bad_config_stops_the_service_with_the_field_and_the_fix() {
    let dir = scratch_dir("feed-config");
    let mut doc = config("sqlite://x.db", &dir, free_port(), None);
    doc["api"]["callers"][0]["token_env"] = json!("FEED_NOT_SET");
    doc["streams"] = json!([{"id": "x", "issuer": "i", "audience": "a", "jwks": {"keys": []}, "delivery": {"method": "push", "bearer_token_env": "FEED_PUSH_TOKEN"}}]);
    let path = dir.join("feed.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nhi-guard"))
        .args(["feed", "--config"])
        .arg(&path)
        .env("FEED_PUSH_TOKEN", PUSH_TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: api.callers[0].token_env: environment variable FEED_NOT_SET is not set",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("streams[0].jwks: has no key"), "{err}");
}
