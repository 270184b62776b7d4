//! Machine authority: routing and request shape, credential extraction, token structure and claims,
//! the client and partner registry, caching and the denial's HTTP form.

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn cases() -> Vec<Case> {
    let ok = claims("moneywise-app", "accounts payments");
    let b = |t: String| vec![bearer(&t)];
    let balances = "/accounts/22289/balances";
    let hs256_with_public_key = {
        // The classic confusion attack: HMAC keyed with the issuer's public key bytes.
        let input = signing_input(&json!({"alg": "HS256", "typ": "at+jwt", "kid": "as-es256"}), &ok);
        let tag = hmac_sha256::HMAC::mac(input.as_bytes(), b"public key bytes as an HMAC secret");
        format!("{input}.{}", base64url::encode(&tag))
    };
    let alg_none = format!("{}.", signing_input(&json!({"alg": "none", "typ": "at+jwt"}), &ok));
    let tampered = {
        let good = token(&claims("moneywise-insights", "accounts"));
        let forged_claims = signing_input(&json!({"x": 1}), &claims("moneywise-app", "accounts payments"));
        let mut parts: Vec<&str> = good.split('.').collect();
        let payload = forged_claims.split('.').nth(1).unwrap_or("").to_string();
        parts[1] = &payload;
        parts.join(".")
    };
    vec![
        case("valid partner app", "GET", balances, b(token(&ok)), Ok("balances")),
        case("valid payment", "POST", "/domestic-payments", b(token(&ok)), Ok("domestic-payments-create")),
        case(
            "valid service account",
            "GET",
            "/internal/ledger/accounts/1",
            b(token(&claims("ledger-sync", "ledger:read"))),
            Ok("ledger-account"),
        ),
        case(
            "pinned batch job's token without its mTLS certificate",
            "POST",
            "/internal/statements/runs",
            b(token(&claims("statements-batch", "statements:generate"))),
            Err(Reason::ClientCredentialMismatch),
        ),
        case(
            "scp array form",
            "GET",
            balances,
            b(token(&without(with(ok.clone(), "scp", json!(["accounts"])), "scope"))),
            Ok("balances"),
        ),
        case("aud array", "GET", balances, b(token(&with(ok.clone(), "aud", json!(["other", AUD])))), Ok("balances")),
        case(
            "EdDSA",
            "GET",
            balances,
            b(sign_jws(&json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "as-eddsa"}), &ok, &eddsa())),
            Ok("balances"),
        ),
        case(
            "PS256",
            "GET",
            balances,
            b(sign_jws(&json!({"alg": "PS256", "typ": "application/at+JWT", "kid": "as-ps256"}), &ok, &ps256())),
            Ok("balances"),
        ),
        case(
            "query without token",
            "GET",
            "/accounts/1/balances?fromBookingDateTime=2026-01-01",
            b(token(&ok)),
            Ok("balances"),
        ),
        // Routing and request shape.
        case("unmatched path", "GET", "/admin", b(token(&ok)), Err(Reason::RouteUnmatched)),
        case("unmatched method", "DELETE", balances, b(token(&ok)), Err(Reason::RouteUnmatched)),
        case("dot segments", "GET", "/accounts/../domestic-payments", b(token(&ok)), Err(Reason::PathAmbiguous)),
        case("encoded dots", "GET", "/accounts/%2e%2e/balances", b(token(&ok)), Err(Reason::PathAmbiguous)),
        case("encoded slash", "GET", "/accounts/1%2Fbalances", b(token(&ok)), Err(Reason::PathAmbiguous)),
        case("double slash", "GET", "/accounts//balances", b(token(&ok)), Err(Reason::PathAmbiguous)),
        case("token in query", "GET", "/accounts?access_token=abc", vec![], Err(Reason::TokenInQuery)),
        // Credential extraction.
        case("no token", "GET", balances, vec![], Err(Reason::TokenMissing)),
        case("basic auth", "GET", balances, vec!["Basic dXNlcjpwYXNz".into()], Err(Reason::AuthSchemeUnsupported)),
        case(
            "two headers",
            "GET",
            balances,
            vec![bearer(&token(&ok)), bearer(&token(&ok))],
            Err(Reason::TokenDuplicated),
        ),
        case("oversized", "GET", balances, b("a".repeat(5000)), Err(Reason::TokenTooLarge)),
        // Structure and header.
        case("not a jws", "GET", balances, b("abc.def".into()), Err(Reason::TokenMalformed)),
        case("garbage parts", "GET", balances, b("a.b.c".into()), Err(Reason::TokenMalformed)),
        case(
            "crit header",
            "GET",
            balances,
            b(header_token(json!({"alg": "ES256", "typ": "at+jwt", "kid": "as-es256", "crit": ["exp"]}), &ok)),
            Err(Reason::TokenMalformed),
        ),
        case(
            "scope and scp both",
            "GET",
            balances,
            b(token(&with(ok.clone(), "scp", json!(["accounts"])))),
            Err(Reason::TokenMalformed),
        ),
        case("alg none", "GET", balances, b(alg_none), Err(Reason::AlgNotAllowed)),
        case("HS256 with public key", "GET", balances, b(hs256_with_public_key), Err(Reason::AlgNotAllowed)),
        case(
            "alg not matching key",
            "GET",
            balances,
            b(header_token(json!({"alg": "PS256", "typ": "at+jwt", "kid": "as-es256"}), &ok)),
            Err(Reason::AlgNotAllowed),
        ),
        case(
            "typ JWT",
            "GET",
            balances,
            b(header_token(json!({"alg": "ES256", "typ": "JWT", "kid": "as-es256"}), &ok)),
            Err(Reason::TypInvalid),
        ),
        case(
            "typ missing",
            "GET",
            balances,
            b(header_token(json!({"alg": "ES256", "kid": "as-es256"}), &ok)),
            Err(Reason::TypInvalid),
        ),
        case(
            "unknown kid",
            "GET",
            balances,
            b(header_token(json!({"alg": "ES256", "typ": "at+jwt", "kid": "rotated-away"}), &ok)),
            Err(Reason::KidUnknown),
        ),
        case(
            "no kid",
            "GET",
            balances,
            b(header_token(json!({"alg": "ES256", "typ": "at+jwt"}), &ok)),
            Err(Reason::KidUnknown),
        ),
        case("no jti", "GET", balances, b(token(&without(ok.clone(), "jti"))), Err(Reason::ClaimMissing)),
        case("no client_id", "GET", balances, b(token(&without(ok.clone(), "client_id"))), Err(Reason::ClaimMissing)),
        case("no iss", "GET", balances, b(token(&without(ok.clone(), "iss"))), Err(Reason::ClaimMissing)),
        // Claims.
        case(
            "wrong iss",
            "GET",
            balances,
            b(token(&with(ok.clone(), "iss", json!("https://evil.example")))),
            Err(Reason::IssuerUnknown),
        ),
        case(
            "wrong aud",
            "GET",
            balances,
            b(token(&with(ok.clone(), "aud", json!("https://api.other.example")))),
            Err(Reason::AudienceInvalid),
        ),
        case(
            "expired",
            "GET",
            balances,
            b(token(&with(with(ok.clone(), "iat", json!(NOW - 400)), "exp", json!(NOW - 100)))),
            Err(Reason::TokenExpired),
        ),
        case(
            "expired within skew is fine",
            "GET",
            balances,
            b(token(&with(with(ok.clone(), "iat", json!(NOW - 300)), "exp", json!(NOW - 20)))),
            Ok("balances"),
        ),
        case(
            "nbf in future",
            "GET",
            balances,
            b(token(&with(ok.clone(), "nbf", json!(NOW + 120)))),
            Err(Reason::TokenNotYetValid),
        ),
        case(
            "iat in future beyond skew",
            "GET",
            balances,
            b(token(&with(with(ok.clone(), "iat", json!(NOW + 90)), "exp", json!(NOW + 300)))),
            Err(Reason::TokenIssuedInFuture),
        ),
        case(
            "lifetime above route max",
            "GET",
            balances,
            b(token(&with(ok.clone(), "exp", json!(NOW + 3600)))),
            Err(Reason::TokenLifetimeTooLong),
        ),
        case(
            "payment needs a fresh token",
            "POST",
            "/domestic-payments",
            b(token(&with(with(ok.clone(), "iat", json!(NOW - 150)), "exp", json!(NOW + 100)))),
            Err(Reason::TokenTooOld),
        ),
        case(
            "payment route is stricter",
            "POST",
            "/domestic-payments",
            b(token(&with(ok.clone(), "exp", json!(NOW + 500)))),
            Err(Reason::TokenLifetimeTooLong),
        ),
        case(
            "older than max age",
            "GET",
            balances,
            b(token(&with(with(ok.clone(), "iat", json!(NOW - 700)), "exp", json!(NOW + 100)))),
            Err(Reason::TokenLifetimeTooLong),
        ),
        case(
            "older than max age, short lifetime",
            "GET",
            balances,
            b(token(&with(with(ok.clone(), "iat", json!(NOW - 620)), "exp", json!(NOW - 20)))),
            Err(Reason::TokenTooOld),
        ),
        case(
            "forged signature",
            "GET",
            balances,
            b(sign_jws(&json!({"alg": "ES256", "typ": "at+jwt", "kid": "as-es256"}), &ok, &attacker())),
            Err(Reason::SignatureInvalid),
        ),
        case("payload swapped", "GET", balances, b(tampered), Err(Reason::SignatureInvalid)),
        // Machine authority.
        case(
            "missing scope",
            "POST",
            "/domestic-payments",
            b(token(&claims("moneywise-app", "accounts"))),
            Err(Reason::ScopeMissing),
        ),
        case(
            "scope beyond ceiling",
            "POST",
            "/domestic-payments",
            b(token(&claims("moneywise-insights", "accounts payments"))),
            Err(Reason::ScopeBeyondCeiling),
        ),
        case(
            "unknown client",
            "GET",
            balances,
            b(token(&claims("shadow-app", "accounts"))),
            Err(Reason::ClientUnknown),
        ),
        case(
            "suspended client",
            "GET",
            balances,
            b(token(&claims("moneywise-beta", "accounts"))),
            Err(Reason::ClientInactive),
        ),
        case(
            "expired client",
            "GET",
            balances,
            b(token(&claims("moneywise-legacy", "accounts"))),
            Err(Reason::ClientExpired),
        ),
        case(
            "partner app on internal route",
            "GET",
            "/internal/ledger/accounts/1",
            b(token(&claims("moneywise-app", "ledger:read"))),
            Err(Reason::ClientKindNotAllowed),
        ),
        case(
            "service account on partner route",
            "GET",
            balances,
            b(token(&claims("ledger-sync", "accounts"))),
            Err(Reason::ClientKindNotAllowed),
        ),
        case(
            "suspended partner",
            "GET",
            balances,
            b(token(&claims("budgetbuddy-app", "accounts"))),
            Err(Reason::PartnerSuspended),
        ),
        case(
            "offboarded partner",
            "GET",
            balances,
            b(token(&claims("quickloans-app", "accounts"))),
            Err(Reason::PartnerOffboarded),
        ),
        case(
            "partner contract ended",
            "GET",
            balances,
            b(token(&claims("oldbridge-app", "accounts"))),
            Err(Reason::PartnerContractEnded),
        ),
    ]
}

#[test]
fn every_case_gets_its_decision() {
    check_cases(cases());
}

/// A verifier that cannot answer, to show the engine fails closed.
struct Broken;
impl crate::engine::jwt::verifier::SignatureVerifier for Broken {
    fn verify(&self, _: &VerificationKey, _: &[u8], _: &[u8]) -> Result<bool, VerifierFault> {
        Err(VerifierFault("down".into()))
    }
    fn name(&self) -> &'static str {
        "broken"
    }
}

#[test]
fn a_verifier_fault_denies() {
    let mut e = engine_with(Box::new(Broken));
    let t = bearer(&token(&claims("moneywise-app", "accounts")));
    assert_eq!(decide(&mut e, "GET", "/accounts", &[&t]), Err(Reason::VerifierError));
}

#[test]
fn overdue_reviews_deny_only_when_the_policy_enforces_them() {
    let t = bearer(&token(&cc_claims("ledger-sync", "ledger:read")));
    let mut e = engine();
    assert_eq!(decide(&mut e, "GET", "/internal/ledger/accounts/1", &[&t]), Ok("ledger-account".into()));
    let mut doc: serde_json::Value = serde_json::from_str(POLICY_JSON).unwrap();
    doc["governance"]["enforce_review_grace_days"] = json!(30);
    let mut e = Engine::new(
        Rc::new(crate::engine::policy::load(&doc.to_string(), "t").unwrap()),
        Box::new(crate::engine::jwt::verifier::PureRust),
    );
    e.observe_feed(1, NOW, || Some(EMPTY_FEED.to_vec())).unwrap();
    assert_eq!(
        decide(&mut e, "GET", "/internal/ledger/accounts/1", &[&t]),
        Err(Reason::ReviewOverdue),
        "reviewed 2026-05-01, 90-day cadence"
    );
    let app = bearer(&token(&claims("moneywise-app", "accounts")));
    assert_eq!(decide(&mut e, "GET", "/accounts", &[&app]), Ok("accounts".into()), "reviewed 2026-08-15, due 2027-02");
    let never = bearer(&token(&claims("moneywise-legacy", "accounts")));
    assert_eq!(decide(&mut e, "GET", "/accounts", &[&never]), Err(Reason::ClientExpired));
}

#[test]
fn extreme_token_times_are_refused_without_overflow() {
    // exp - iat would overflow: i64::MAX minus a negative iat. Signed, so only arithmetic stops it.
    let mut e = engine();
    for (exp, iat) in [(i64::MAX, -1), (i64::MAX, i64::MIN), (NOW + 60, i64::MIN)] {
        let mut c = claims("moneywise-app", "accounts");
        c["exp"] = json!(exp);
        c["iat"] = json!(iat);
        let t = bearer(&token(&c));
        let got = decide(&mut e, "GET", "/accounts", &[&t]);
        assert!(got.is_err(), "exp {exp} iat {iat} was allowed");
    }
}

#[test]
fn method_override_headers_are_refused_whatever_the_token_allows() {
    let mut e = engine();
    let t = bearer(&token(&claims("moneywise-app", "accounts")));
    let a = [t.as_bytes()];
    let mut facts = RequestFacts {
        method: "GET",
        path: "/accounts",
        authorization: &a,
        consent: &[],
        dpop: &[],
        peer: None,
        now: NOW,
        method_override: false,
    };
    assert!(matches!(e.decide(&facts), Decision::Allow(_)));
    facts.method_override = true;
    match e.decide(&facts) {
        Decision::Deny(d) => {
            assert_eq!(d.reason, Reason::MethodOverride);
            assert_eq!(d.response("r").status, 400);
        }
        Decision::Allow(_) => panic!("a method override went through"),
    }
}

#[test]
fn cached_tokens_still_meet_time_and_registry_rules() {
    let mut e = engine();
    let t = bearer(&token(&claims("moneywise-app", "accounts payments")));
    let facts = |now, path: &'static str, method: &'static str, auth: &[&str]| {
        let a: Vec<String> = auth.iter().map(|s| s.to_string()).collect();
        (now, path, method, a)
    };
    let run = |e: &mut Engine, (now, path, method, auth): (i64, &str, &str, Vec<String>)| {
        e.observe_feed(1, now, || None).unwrap();
        let a: Vec<&[u8]> = auth.iter().map(|s| s.as_bytes()).collect();
        match e.decide(&RequestFacts {
            method,
            path,
            authorization: &a,
            consent: &[],
            dpop: &[],
            peer: None,
            now,
            method_override: false,
        }) {
            Decision::Allow(a) => Ok(a.cache_hit),
            Decision::Deny(d) => Err(d.reason),
        }
    };
    assert_eq!(run(&mut e, facts(NOW, "/accounts", "GET", &[&t])), Ok(false));
    assert_eq!(run(&mut e, facts(NOW, "/accounts", "GET", &[&t])), Ok(true), "second use hits the cache");
    assert_eq!(e.cached_tokens(), 1);
    assert_eq!(run(&mut e, facts(NOW + 200, "/balances", "GET", &[&t])), Ok(true));
    assert_eq!(
        run(&mut e, facts(NOW + 200, "/domestic-payments", "POST", &[&t])),
        Err(Reason::TokenTooOld),
        "route age limits apply to cached tokens"
    );
    assert_eq!(
        run(&mut e, facts(NOW + 400, "/accounts", "GET", &[&t])),
        Err(Reason::TokenExpired),
        "a cached token does not outlive exp"
    );
    // Route rules re-apply on a hit: the same cached token is too old for a stricter route.
    let mut e = engine();
    let long = bearer(&token(&with(claims("moneywise-app", "accounts payments"), "exp", json!(NOW + 500))));
    assert_eq!(run(&mut e, facts(NOW, "/accounts", "GET", &[&long])), Ok(false));
    assert_eq!(run(&mut e, facts(NOW, "/domestic-payments", "POST", &[&long])), Err(Reason::TokenLifetimeTooLong));
}

#[test]
fn forged_tokens_are_remembered() {
    let mut e = engine();
    let forged = bearer(&sign_jws(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "as-es256"}),
        &claims("moneywise-app", "accounts"),
        &attacker(),
    ));
    for _ in 0..3 {
        assert_eq!(decide(&mut e, "GET", "/accounts", &[&forged]), Err(Reason::SignatureInvalid));
    }
    assert_eq!(e.cached_tokens(), 0, "a forgery never enters the verified cache");
}

#[test]
fn deny_responses_follow_rfc6750() {
    let p = policy();
    let route = p.routes.find("POST", "/domestic-payments");
    let deny = Deny {
        reason: Reason::ScopeMissing,
        route,
        token: None,
        realm: &p.realm,
        dpop_algs: "",
        dpop_scheme: false,
        dpop_nonce: None,
    };
    let r = deny.response("req-1");
    assert_eq!(r.status, 403);
    let www = r.headers.iter().find(|(k, _)| *k == "www-authenticate").map(|(_, v)| v.as_str());
    assert_eq!(
        www,
        Some("Bearer realm=\"bank-open-banking-api\", error=\"insufficient_scope\", error_description=\"the token lacks a scope the route requires\", scope=\"payments\"")
    );
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["reason"], "scope_missing");
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(body["route"], "domestic-payments-create");
    assert_eq!(body["request_id"], "req-1");
    let missing = Deny {
        reason: Reason::TokenMissing,
        route,
        token: None,
        realm: &p.realm,
        dpop_algs: "",
        dpop_scheme: false,
        dpop_nonce: None,
    }
    .response("r");
    assert_eq!(missing.status, 401);
    assert!(missing.headers.contains(&("www-authenticate", "Bearer realm=\"bank-open-banking-api\"".to_string())));
    let partner = Deny {
        reason: Reason::PartnerOffboarded,
        route,
        token: None,
        realm: &p.realm,
        dpop_algs: "",
        dpop_scheme: false,
        dpop_nonce: None,
    }
    .response("r");
    assert!(partner.headers.iter().all(|(k, _)| *k != "www-authenticate"));
}

#[test]
fn allowed_requests_carry_verified_identity_only() {
    let mut e = engine();
    let t = bearer(&token(&with(claims("moneywise-app", "accounts payments"), "sub", json!("customer-8841"))));
    let auth = [t.as_bytes()];
    let facts = RequestFacts {
        method: "GET",
        path: "/accounts/1/balances",
        authorization: &auth,
        consent: &[],
        dpop: &[],
        peer: None,
        now: NOW,
        method_override: false,
    };
    let Decision::Allow(a) = e.decide(&facts) else { panic!("expected allow") };
    let h = a.upstream_headers();
    assert!(h.contains(&("x-nhi-route", "balances")));
    assert!(h.contains(&("x-nhi-client", "moneywise-app")));
    assert!(h.contains(&("x-nhi-partner", "moneywise")));
    assert!(h.contains(&("x-nhi-subject", "customer-8841")));
    assert!(h.contains(&("x-nhi-scopes", "accounts")), "only the scopes the route relied on");
    assert!(h.iter().all(|(k, _)| k.starts_with(IDENTITY_HEADER_PREFIX)));
}

/// This file's tests, for the coverage test in mod.rs (which runs them again on its own thread).
pub(super) const TESTS: &[fn()] = &[
    every_case_gets_its_decision,
    a_verifier_fault_denies,
    overdue_reviews_deny_only_when_the_policy_enforces_them,
    extreme_token_times_are_refused_without_overflow,
    method_override_headers_are_refused_whatever_the_token_allows,
    cached_tokens_still_meet_time_and_registry_rules,
    forged_tokens_are_remembered,
    deny_responses_follow_rfc6750,
    allowed_requests_carry_verified_identity_only,
];
