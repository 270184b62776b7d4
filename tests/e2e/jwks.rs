//! Issuer keys from a JWKS endpoint through the real Envoy: the worker holding the lease fetches the
//! internal STS's JWKS (served by the echo upstream here) and every worker verifies with it.

use crate::harness::*;
use nhi_guard::mint::SigningKey;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const LEDGER: &str = "/internal/ledger/accounts/7";

/// The example policy with the STS's refresh interval and unknown-kid refetch limit set.
fn sts_policy(refresh_ms: u64, refetch_ms: u64) -> String {
    let mut doc: Value = serde_json::from_str(&example_policy()).unwrap();
    let sts = doc["issuers"].as_array_mut().unwrap().iter_mut().find(|i| i["remote_jwks"].is_object()).unwrap();
    sts["remote_jwks"]["refresh_interval_ms"] = json!(refresh_ms);
    sts["remote_jwks"]["unknown_kid_refetch_min_interval_ms"] = json!(refetch_ms);
    doc.to_string()
}

fn ledger(envoy: &Envoy, token: &str) -> String {
    let r = envoy.send("GET", LEDGER, &[("authorization", &bearer(token))]);
    if r.status == 200 {
        assert_eq!(r.upstream_header("x-nhi-client").as_deref(), Some("ledger-sync"));
        "allowed".into()
    } else {
        format!("{} {}", r.status, r.reason())
    }
}

fn new_key(seed: u8) -> SigningKey {
    SigningKey::es256_from_bytes(&[seed; 32]).unwrap()
}

#[test]
fn a_rotated_key_verifies_after_the_unknown_kid_refetch() {
    // Refresh once a minute: only the unknown-kid refetch can bring the new key in time.
    let envoy = Envoy::start(&sts_policy(60_000, 1000));
    let current = sts_token("ledger-sync", "ledger:read", &key("sts-es256"), "sts-es256");
    assert!(envoy.wait_until(Duration::from_secs(3), || ledger(&envoy, &current) == "allowed").is_some());
    let next = new_key(21);
    let rotated = sts_token("ledger-sync", "ledger:read", &next, "sts-2026-11");
    assert_eq!(ledger(&envoy, &rotated), "401 kid_unknown", "not published yet");
    // The STS publishes the new key (keeping the old one for the overlap).
    envoy.set_jwks(200, jwks_document(&[(&key("sts-es256"), "sts-es256"), (&next, "sts-2026-11")]));
    let took = envoy.wait_until(Duration::from_secs(6), || ledger(&envoy, &rotated) == "allowed");
    let took =
        took.unwrap_or_else(|| panic!("rotated key never verified: {}\n{}", ledger(&envoy, &rotated), envoy.log()));
    println!("rotation: the new kid verified {took:?} after the JWKS changed (refresh interval 60 s)");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_eq!(ledger(&envoy, &current), "allowed", "the old key still verifies during the overlap");
    assert!(envoy.counter("nhi_guard.jwks.refetch_requested") >= 1);
    // The STS's keys are trusted for workloads only: a partner app's token from it is refused.
    let partner = sts_token("moneywise-app", "accounts", &key("sts-es256"), "sts-es256");
    let r = envoy.send("GET", "/account-access-consents/c1", &[("authorization", &bearer(&partner))]);
    assert_eq!((r.status, r.reason().as_str()), (401, "client_issuer_not_allowed"), "{}", r.body);
}

#[test]
fn removed_keys_stop_verifying_and_outages_keep_the_last_good_keys() {
    let envoy = Envoy::start(&sts_policy(1000, 1000));
    let old = sts_token("ledger-sync", "ledger:read", &key("sts-es256"), "sts-es256");
    assert!(envoy.wait_until(Duration::from_secs(3), || ledger(&envoy, &old) == "allowed").is_some());
    assert_eq!(ledger(&envoy, &old), "allowed", "and now it sits in the verified-token cache");

    // JWKS endpoint down, then serving garbage: the last good keys stay.
    for (status, body, counter) in
        [(503, Vec::new(), "nhi_guard.jwks.fetch_failed"), (200, b"{\"keys\": [".to_vec(), "nhi_guard.jwks.malformed")]
    {
        let before = envoy.counter(counter);
        envoy.set_jwks(status, body);
        let seen = envoy.wait_until(Duration::from_secs(5), || envoy.counter(counter) > before);
        assert!(seen.is_some(), "{counter} never moved:\n{}", envoy.log());
        assert_eq!(ledger(&envoy, &old), "allowed", "after {counter}: last good keys kept");
    }
    let private = {
        let mut jwk = key("sts-es256").public_jwk("sts-es256");
        jwk["d"] = json!("c2VjcmV0");
        json!({"keys": [jwk]}).to_string().into_bytes()
    };
    let before = envoy.counter("nhi_guard.jwks.malformed");
    envoy.set_jwks(200, private);
    assert!(envoy.wait_until(Duration::from_secs(5), || envoy.counter("nhi_guard.jwks.malformed") > before).is_some());
    assert_eq!(ledger(&envoy, &old), "allowed", "a JWKS with private parts is refused whole");

    // The STS retires the old key: its token stops verifying at the next refresh, cached or not.
    let next = new_key(22);
    let fresh = sts_token("ledger-sync", "ledger:read", &next, "sts-next");
    envoy.set_jwks(200, jwks_document(&[(&next, "sts-next")]));
    let took = envoy.wait_until(Duration::from_secs(5), || ledger(&envoy, &old) == "401 kid_unknown");
    assert!(took.is_some(), "removed key still verifies: {}", ledger(&envoy, &old));
    println!("removal: the retired key stopped verifying {:?} after the JWKS changed (refresh 1 s)", took.unwrap());
    assert_eq!(ledger(&envoy, &fresh), "allowed");
    assert!(envoy.log_with("published keys [\"sts-next\"]").contains("published keys [\"sts-next\"]"));
}

#[test]
fn jwks_down_at_start_fails_closed_for_that_issuer_only_and_recovers() {
    let envoy = Envoy::start_with(&sts_policy(60_000, 500), (200, feed_document(1, Value::Null)), (503, Vec::new()));
    assert!(envoy.wait_until(Duration::from_secs(10), || envoy.counter("nhi_guard.feed.fetch_ok") > 0).is_some());
    let sts = sts_token("ledger-sync", "ledger:read", &key("sts-es256"), "sts-es256");
    let r = envoy.send("GET", LEDGER, &[("authorization", &bearer(&sts))]);
    assert_eq!((r.status, r.reason().as_str()), (503, "jwks_unavailable"), "{}", r.body);
    assert!(r.header("www-authenticate").is_none());
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    // Inline-keyed issuers are not held hostage by another issuer's JWKS.
    let partner = token(&claims("moneywise-app", "accounts"));
    let r = envoy.send("GET", "/accounts/22289/balances", &[("authorization", &bearer(&partner))]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(envoy.wait_until(Duration::from_secs(3), || envoy.counter("nhi_guard.jwks.fetch_failed") >= 2).is_some());
    // The endpoint comes up: keys arrive without a restart (retries at the rate-limit pace).
    envoy.set_jwks(200, sts_jwks());
    let took = envoy.wait_until(Duration::from_secs(5), || ledger(&envoy, &sts) == "allowed");
    assert!(took.is_some(), "never recovered: {}", ledger(&envoy, &sts));
}

#[test]
fn an_unknown_kid_flood_triggers_only_rate_limited_refetches() {
    let envoy = Envoy::start(&sts_policy(60_000, 1000));
    let before = envoy.jwks_fetch_count();
    let attacker = new_key(23);
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(3) {
        let t = sts_token("ledger-sync", "ledger:read", &attacker, &format!("made-up-{sent}"));
        assert_eq!(ledger(&envoy, &t), "401 kid_unknown");
        sent += 1;
    }
    let window = start.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    let fetches = envoy.jwks_fetch_count() - before;
    let bound = window.as_secs() as usize + 2;
    println!(
        "unknown-kid flood: {sent} requests in {window:?} caused {fetches} JWKS fetches (limit 1/s, bound {bound})"
    );
    assert!(sent > 50, "the flood was too small to mean anything ({sent})");
    assert!(fetches >= 1, "an unknown kid must trigger a refetch");
    assert!(fetches <= bound, "{fetches} fetches for {sent} made-up kids in {window:?}");
}
