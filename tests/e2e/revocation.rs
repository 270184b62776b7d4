//! Live revocation through the real Envoy: the lease-holding worker polls, shared data, every worker.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::Duration;

fn balances(envoy: &Envoy, token: &str) -> Response {
    envoy.send("GET", "/accounts/22289/balances", &[("authorization", &bearer(token))])
}

fn outcome(r: &Response) -> String {
    if r.status == 200 {
        "allowed".into()
    } else {
        r.reason()
    }
}

/// The example policy with a faster poll and a shorter staleness bound, for the outage tests.
fn fast_policy(poll_ms: u64, stale_s: i64) -> String {
    let mut doc: Value = serde_json::from_str(&example_policy()).unwrap();
    doc["revocation"]["poll_interval_ms"] = json!(poll_ms);
    doc["revocation"]["max_staleness_seconds"] = json!(stale_s);
    doc.to_string()
}

#[test]
fn revocations_take_effect_within_two_poll_intervals_even_for_cached_tokens() {
    let envoy = Envoy::start(&example_policy());
    let jti_token = token(&claims("moneywise-app", "accounts"));
    let jti = serde_json::from_slice::<Value>(
        &nhi_guard::engine::base64url::decode(jti_token.split('.').nth(1).unwrap().as_bytes()).unwrap(),
    )
    .unwrap()["jti"]
        .as_str()
        .unwrap()
        .to_string();
    let steps: Vec<(&str, Value, &str)> = vec![
        ("jti", json!({"tokens": [{"iss": ISS, "jti": jti}]}), "token_revoked"),
        ("client", json!({"clients": ["moneywise-app"]}), "client_revoked"),
        ("partner", json!({"partners": [{"id": "moneywise", "status": "offboarded"}]}), "partner_offboarded"),
        ("consent", json!({"consents": ["aac-8841"]}), "consent_revoked"),
        ("key", json!({"keys": [{"iss": ISS, "kid": "as-es256"}]}), "key_revoked"),
    ];
    let mut times = Vec::new();
    for (i, (what, revoke, reason)) in steps.into_iter().enumerate() {
        let version = 2 + 2 * i as u64;
        // Clear the previous step, and show the token works (and sits in the verified-token cache).
        envoy.set_feed(200, feed_document(version, json!({})));
        let t = if what == "jti" { jti_token.clone() } else { token(&claims("moneywise-app", "accounts")) };
        let ready = envoy.wait_until(Duration::from_secs(5), || balances(&envoy, &t).status == 200);
        assert!(ready.is_some(), "{what}: token not allowed before revocation: {}", balances(&envoy, &t).body);
        assert_eq!(balances(&envoy, &t).status, 200);
        envoy.set_feed(200, feed_document(version + 1, revoke));
        let took = envoy.wait_until(Duration::from_secs(5), || outcome(&balances(&envoy, &t)) == reason);
        let took =
            took.unwrap_or_else(|| panic!("{what}: not revoked within 5 s; last answer {}", balances(&envoy, &t).body));
        assert!(took < Duration::from_millis(2500), "{what}: took {took:?}, more than two poll intervals");
        times.push((what, took));
    }
    let mut ms: Vec<u128> = times.iter().map(|(_, d)| d.as_millis()).collect();
    ms.sort();
    println!(
        "revocation propagation (poll interval 1 s): {times:?}; median {} ms, max {} ms",
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    );
    assert!(envoy.counter("nhi_guard.feed.fetch_ok") > 0);
    assert!(envoy.counter("nhi_guard.feed.version") >= 11);
}

#[test]
fn no_feed_at_start_fails_closed() {
    let envoy = Envoy::start_with_feed(&fast_policy(200, 2), (503, Vec::new()));
    let t = token(&claims("moneywise-app", "accounts"));
    let r = balances(&envoy, &t);
    assert_eq!((r.status, r.reason().as_str()), (503, "revocation_stale"), "{}", r.body);
    assert!(r.header("www-authenticate").is_none());
    assert!(envoy.wait_until(Duration::from_secs(3), || envoy.counter("nhi_guard.feed.fetch_failed") > 0).is_some());
    // The feed comes up: requests recover without a restart.
    envoy.set_feed(200, feed_document(1, json!({})));
    let took = envoy.wait_until(Duration::from_secs(5), || balances(&envoy, &t).status == 200);
    assert!(took.is_some(), "did not recover: {}", balances(&envoy, &t).body);
}

#[test]
fn feed_outage_keeps_the_last_good_snapshot_until_the_bound_then_fails_closed() {
    let envoy = Envoy::start(&fast_policy(200, 2));
    let t = token(&claims("moneywise-app", "accounts"));
    let revoked = token(&claims("moneywise-insights", "accounts"));
    envoy.set_feed(200, feed_document(5, json!({"clients": ["moneywise-insights"]})));
    assert!(envoy
        .wait_until(Duration::from_secs(5), || outcome(&balances(&envoy, &revoked)) == "client_revoked")
        .is_some());
    assert_eq!(balances(&envoy, &t).status, 200);

    // Feed down: the last good snapshot stays in force (the revoked client stays revoked) ...
    envoy.set_feed(503, Vec::new());
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(balances(&envoy, &t).status, 200, "within the bound the last snapshot serves");
    assert_eq!(outcome(&balances(&envoy, &revoked)), "client_revoked");
    // ... until it is older than max_staleness_seconds: then fail closed.
    let stale = envoy.wait_until(Duration::from_secs(6), || outcome(&balances(&envoy, &t)) == "revocation_stale");
    assert!(stale.is_some(), "never went stale: {}", balances(&envoy, &t).body);
    assert_eq!(balances(&envoy, &t).status, 503);

    // A malformed document is ignored and counted; the feed is still unhealthy, so still closed.
    envoy.set_feed(200, b"{\"version\": 9, \"produced_at\": \"soon\"}".to_vec());
    assert!(envoy.wait_until(Duration::from_secs(3), || envoy.counter("nhi_guard.feed.malformed") > 0).is_some());
    assert_eq!(outcome(&balances(&envoy, &t)), "revocation_stale");

    // An older version is ignored too: it must not un-revoke anything.
    envoy.set_feed(200, feed_document(4, json!({})));
    assert!(envoy
        .wait_until(Duration::from_secs(3), || envoy.counter("nhi_guard.feed.older_version_ignored") > 0)
        .is_some());
    assert_eq!(outcome(&balances(&envoy, &t)), "revocation_stale");

    // The feed recovers with the current version: requests flow again, revocations still hold.
    envoy.set_feed(200, feed_document(5, json!({"clients": ["moneywise-insights"]})));
    assert!(envoy.wait_until(Duration::from_secs(5), || balances(&envoy, &t).status == 200).is_some());
    assert_eq!(outcome(&balances(&envoy, &revoked)), "client_revoked");
}

#[test]
fn routes_may_opt_out_of_fresh_revocation_data() {
    let mut doc: Value = serde_json::from_str(&fast_policy(200, 2)).unwrap();
    for r in doc["routes"].as_array_mut().unwrap() {
        if r["id"] == "ledger-account" {
            r["require_fresh_revocation"] = json!(false);
        }
    }
    let envoy = Envoy::start_with_feed(&doc.to_string(), (503, Vec::new()));
    let ledger = envoy.send(
        "GET",
        "/internal/ledger/accounts/7",
        &[("authorization", &bearer(&token(&cc_claims("ledger-sync", "ledger:read"))))],
    );
    assert_eq!(ledger.status, 200, "{}", ledger.body);
    assert_eq!(outcome(&balances(&envoy, &token(&claims("moneywise-app", "accounts")))), "revocation_stale");
}

#[test]
fn a_feed_that_answers_with_refused_documents_says_so_before_it_goes_stale() {
    // A rolled-back feed replica serves an older version: refused, counted, and logged with how long.
    let envoy = Envoy::start(&fast_policy(500, 3));
    envoy.set_feed(200, feed_document(7, json!({})));
    assert!(envoy.wait_until(Duration::from_secs(5), || envoy.counter("nhi_guard.feed.version") == 7).is_some());
    envoy.set_feed(200, feed_document(5, json!({})));
    let t = token(&claims("moneywise-app", "accounts"));
    let noticed = envoy.wait_until(Duration::from_secs(5), || envoy.counter("nhi_guard.feed.refused_seconds") >= 1);
    assert!(noticed.is_some(), "no refused_seconds gauge:\n{}", envoy.log());
    let log = envoy.log_with("document has been refused for");
    assert!(
        log.contains("reachable, but its document has been refused for") && log.contains("older than the published 7"),
        "{log}"
    );
    let stale = envoy.wait_until(Duration::from_secs(8), || outcome(&balances(&envoy, &t)) == "revocation_stale");
    assert!(stale.is_some(), "refused documents must not keep the feed fresh");
    // A good document again: the gauge drops to zero and requests pass.
    envoy.set_feed(200, feed_document(8, json!({})));
    assert!(envoy.wait_until(Duration::from_secs(5), || outcome(&balances(&envoy, &t)) == "allowed").is_some());
    assert_eq!(envoy.counter("nhi_guard.feed.refused_seconds"), 0);
}
