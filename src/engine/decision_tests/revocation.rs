//! The live revocation feed: every kind of entry denies, staleness fails closed.

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// The revocation feed: each kind of entry denies a token that would otherwise pass (and sits in
/// the cache), and a stale or absent feed fails closed.
type Outcome = Result<String, Reason>;

fn revocation_outcomes() -> Vec<(&'static str, Outcome, Outcome)> {
    let t = token(&claims("moneywise-app", "accounts"));
    let auth = bearer(&t);
    let jti = claims("moneywise-app", "accounts")["jti"].as_str().unwrap_or("").to_string();
    let feed = |version: u64, body: serde_json::Value| {
        let mut doc = json!({"version": version, "produced_at": "2026-11-24T00:00:00Z"});
        if let (Some(d), Some(b)) = (doc.as_object_mut(), body.as_object()) {
            d.extend(b.clone());
        }
        doc.to_string().into_bytes()
    };
    let mut e = engine();
    let mut out = Vec::new();
    let mut expect = |name, version, body: serde_json::Value, want: Result<String, Reason>, e: &mut Engine| {
        e.observe_feed(version, NOW, || Some(feed(version, body))).unwrap();
        out.push((name, decide(e, "GET", "/accounts", &[&auth]), want));
    };
    expect("empty feed", 2, json!({}), Ok("accounts".into()), &mut e);
    expect("jti", 3, json!({"tokens": [{"iss": ISS, "jti": jti}]}), Err(Reason::TokenRevoked), &mut e);
    expect("key", 4, json!({"keys": [{"iss": ISS, "kid": "as-es256"}]}), Err(Reason::KeyRevoked), &mut e);
    expect("client", 5, json!({"clients": ["moneywise-app"]}), Err(Reason::ClientRevoked), &mut e);
    expect(
        "partner",
        6,
        json!({"partners": [{"id": "moneywise", "status": "suspended"}]}),
        Err(Reason::PartnerSuspended),
        &mut e,
    );
    expect("consent", 7, json!({"consents": ["aac-8841"]}), Err(Reason::ConsentRevoked), &mut e);
    expect("cleared again", 8, json!({}), Ok("accounts".into()), &mut e);
    let stale = {
        let mut facts = |now| {
            let a = [auth.as_bytes()];
            match e.decide(&RequestFacts {
                method: "GET",
                path: "/accounts",
                authorization: &a,
                consent: &[],
                dpop: &[],
                peer: None,
                now,
                method_override: false,
            }) {
                Decision::Allow(a) => Ok(a.route.id.clone()),
                Decision::Deny(d) => Err(d.reason),
            }
        };
        facts(NOW + 11)
    };
    out.push(("older than max_staleness_seconds", stale, Err(Reason::RevocationStale)));
    let mut fresh = Engine::new(Rc::new(policy()), Box::new(crate::engine::jwt::verifier::PureRust));
    out.push(("no feed yet", decide(&mut fresh, "GET", "/accounts", &[&auth]), Err(Reason::RevocationStale)));
    out
}

#[test]
fn revocation_feed_entries_deny_and_staleness_fails_closed() {
    let failures: Vec<String> = revocation_outcomes()
        .into_iter()
        .filter(|(_, got, want)| got != want)
        .map(|(name, got, want)| format!("{name}: expected {want:?}, got {got:?}"))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_malformed_or_mismatched_feed_keeps_the_last_good_snapshot() {
    let mut e = engine();
    assert!(e.observe_feed(2, NOW, || Some(b"not json".to_vec())).is_err());
    assert!(e.observe_feed(2, NOW, || Some(EMPTY_FEED.to_vec())).is_err(), "document says version 1");
    assert_eq!(e.feed_version(), Some(1));
    let t = bearer(&token(&claims("moneywise-app", "accounts")));
    assert_eq!(decide(&mut e, "GET", "/accounts", &[&t]), Ok("accounts".into()));
}

/// This file's tests, for the coverage test in mod.rs (which runs them again on its own thread).
pub(super) const TESTS: &[fn()] = &[
    revocation_feed_entries_deny_and_staleness_fails_closed,
    a_malformed_or_mismatched_feed_keeps_the_last_good_snapshot,
];
