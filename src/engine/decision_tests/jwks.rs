//! Issuers' fetched keys: rotation, removal, refetch asks, fail closed before the first fetch.

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Keys from the issuer's JWKS endpoint (`remote_jwks`): fail closed before the first fetch,
/// rotation, removal (also of cached tokens), rate-limited refetch on unknown kids, last good kept.
#[test]
fn remote_jwks_rotation_removal_and_refetch() {
    let mut e = engine();
    let (sts, next) = (sts(), SigningKey::es256_from_bytes(&[9u8; 32]).unwrap());
    let old = bearer(&sts_token("ledger-sync", "ledger:read", &sts, "sts-1"));
    let new = bearer(&sts_token("ledger-sync", "ledger:read", &next, "sts-2"));
    let ledger = "/internal/ledger/accounts/1";
    // Before the first fetch: fail closed, and ask for the keys (once per rate-limit window).
    assert_eq!(decide(&mut e, "GET", ledger, &[&old]), Err(Reason::JwksUnavailable));
    assert_eq!(asks(&mut e, NOW * 1000), vec![STS_ISS]);
    assert_eq!(decide(&mut e, "GET", ledger, &[&old]), Err(Reason::JwksUnavailable));
    assert!(asks(&mut e, NOW * 1000 + 1999).is_empty(), "rate-limited (2000 ms in the example)");
    assert_eq!(asks(&mut e, NOW * 1000 + 2000), vec![STS_ISS]);
    assert!(asks(&mut e, NOW * 1000 + 9000).is_empty(), "no ask without a new miss");
    // Inline issuers are unaffected throughout.
    let as_token = bearer(&token(&claims("moneywise-app", "accounts")));
    assert_eq!(decide(&mut e, "GET", "/accounts", &[&as_token]), Ok("accounts".into()));

    e.observe_jwks(STS_INDEX, 1, || Some(jwks_of(&[(&sts, "sts-1")]))).unwrap();
    assert_eq!(decide(&mut e, "GET", ledger, &[&old]), Ok("ledger-account".into()));
    // Partner apps take tokens from the partner-facing AS only: a valid STS token for one is refused.
    let partner_from_sts = bearer(&sts_token("moneywise-app", "accounts", &sts, "sts-1"));
    assert_eq!(
        decide(&mut e, "GET", "/account-access-consents/c1", &[&partner_from_sts]),
        Err(Reason::ClientIssuerNotAllowed)
    );
    assert_eq!(decide(&mut e, "GET", ledger, &[&new]), Err(Reason::KidUnknown));
    assert_eq!(asks(&mut e, NOW * 1000 + 20_000), vec![STS_ISS], "unknown kid asks for a refetch");
    // A flood of made-up kids yields one ask per window.
    for i in 0..100 {
        let fake = bearer(&sts_token("ledger-sync", "ledger:read", &next, &format!("made-up-{i}")));
        assert_eq!(decide(&mut e, "GET", ledger, &[&fake]), Err(Reason::KidUnknown));
        assert!(asks(&mut e, NOW * 1000 + 20_000 + i * 10).is_empty(), "ask {i} within the window");
    }

    // Rotation: the new key is added; tokens of both verify, the cached old one stays cached.
    e.observe_jwks(STS_INDEX, 2, || Some(jwks_of(&[(&sts, "sts-1"), (&next, "sts-2")]))).unwrap();
    assert_eq!(decide(&mut e, "GET", ledger, &[&new]), Ok("ledger-account".into()));
    assert!(matches!(decide_cached(&mut e, ledger, &old), Ok(true)), "adding a key keeps the caches");
    // Removal: the old key leaves the JWKS; its token is refused although it sat in the cache.
    e.observe_jwks(STS_INDEX, 3, || Some(jwks_of(&[(&next, "sts-2")]))).unwrap();
    assert_eq!(decide(&mut e, "GET", ledger, &[&old]), Err(Reason::KidUnknown));
    assert_eq!(decide(&mut e, "GET", ledger, &[&new]), Ok("ledger-account".into()));
    // Same kid, other key material (a re-keyed kid): tokens of the old material stop verifying.
    let rekeyed = SigningKey::es256_from_bytes(&[11u8; 32]).unwrap();
    e.observe_jwks(STS_INDEX, 4, || Some(jwks_of(&[(&rekeyed, "sts-2")]))).unwrap();
    assert_eq!(decide(&mut e, "GET", ledger, &[&new]), Err(Reason::SignatureInvalid));

    // Bad documents leave the last good keys in place.
    let good = bearer(&sts_token("ledger-sync", "ledger:read", &rekeyed, "sts-2"));
    for (what, doc) in [
        ("not JSON", b"{".to_vec()),
        ("no keys", br#"{"keys": []}"#.to_vec()),
        ("private part", {
            let mut jwk = rekeyed.public_jwk("sts-3");
            jwk["d"] = json!("c2VjcmV0");
            json!({"keys": [jwk]}).to_string().into_bytes()
        }),
        ("duplicate kid", jwks_of(&[(&rekeyed, "sts-2"), (&next, "sts-2")])),
        ("consent key", jwks_of(&[(&consent_key(), "x")])),
        ("oversized", vec![b' '; 70_000]),
        ("only encryption keys", {
            let mut jwk = rekeyed.public_jwk("enc-1");
            jwk["use"] = json!("enc");
            json!({"keys": [jwk]}).to_string().into_bytes()
        }),
    ] {
        assert!(e.observe_jwks(STS_INDEX, 100, || Some(doc.clone())).is_err(), "{what} must be refused");
        assert_eq!(decide(&mut e, "GET", ledger, &[&good]), Ok("ledger-account".into()), "{what}");
    }
    // Keys the issuer does not allow are skipped, not fatal: an EdDSA key in an ES256-only issuer.
    let ed = SigningKey::eddsa_from_seed(&[5u8; 32]);
    e.observe_jwks(STS_INDEX, 5, || Some(jwks_of(&[(&ed, "ed"), (&rekeyed, "sts-2")]))).unwrap();
    let ed_token = bearer(&sts_token("ledger-sync", "ledger:read", &ed, "ed"));
    assert_eq!(decide(&mut e, "GET", ledger, &[&ed_token]), Err(Reason::AlgNotAllowed));
    assert_eq!(decide(&mut e, "GET", ledger, &[&good]), Ok("ledger-account".into()));
}

/// The issuers the engine asks the poller to refetch at `now_ms`.
fn asks(e: &mut Engine, now_ms: i64) -> Vec<String> {
    let mut out = Vec::new();
    e.jwks_refetch_requests(now_ms, |_, i| out.push(i.id.clone()));
    out
}

/// Runs `token` on `path` and says whether the verified-token cache answered.
fn decide_cached(e: &mut Engine, path: &str, token: &str) -> Result<bool, Reason> {
    let a = [token.as_bytes()];
    match e.decide(&RequestFacts {
        method: "GET",
        path,
        authorization: &a,
        consent: &[],
        dpop: &[],
        peer: None,
        now: NOW,
        method_override: false,
    }) {
        Decision::Allow(a) => Ok(a.cache_hit),
        Decision::Deny(d) => Err(d.reason),
    }
}

/// This file's tests, for the coverage test in mod.rs (which runs them again on its own thread).
pub(super) const TESTS: &[fn()] = &[remote_jwks_rotation_removal_and_refetch];
