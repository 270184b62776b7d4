//! The decision pipeline, table-driven: every reason code the core can produce, and the allowed paths.

use super::*;
use crate::engine::base64url;
use crate::engine::credentials::IDENTITY_HEADER_PREFIX;
use crate::engine::jwt::verifier::VerifierFault;
use crate::engine::keys::VerificationKey;
use crate::engine::testkit::*;
use crate::tools::mint::{sign_jws, signing_input, SigningKey};
use serde_json::json;
use std::collections::HashSet;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    authorization: Vec<String>,
    consent: Vec<String>,
    expect: Result<&'static str, Reason>,
}

impl Case {
    fn consent(mut self, values: Vec<String>) -> Case {
        self.consent = values;
        self
    }
}

fn case(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    auth: Vec<String>,
    expect: Result<&'static str, Reason>,
) -> Case {
    Case { name, method, path, authorization: auth, consent: Vec::new(), expect }
}

fn with(mut claims: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    claims[key] = value;
    claims
}

fn without(mut claims: serde_json::Value, key: &str) -> serde_json::Value {
    if let Some(o) = claims.as_object_mut() {
        o.remove(key);
    }
    claims
}

fn header_token(header: serde_json::Value, claims: &serde_json::Value) -> String {
    sign_jws(&header, claims, &es256())
}

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
    .into_iter()
    .chain(consent_cases())
    .collect()
}

/// Customer consent and delegation: machine authority and consent must both allow.
fn consent_cases() -> Vec<Case> {
    let b = |t: String| vec![bearer(&t)];
    let bal = "/accounts/22289/balances";
    let tx = "/accounts/22289/transactions";
    let machine = token(&customer_claims("moneywise-app", "accounts payments"));
    let balances_consent = artefact(&artefact_claims("moneywise-app", "aac-1", &["ReadBalances"]));
    let c = |claims: serde_json::Value| vec![artefact(&claims)];
    let forged_consent = sign_jws(
        &json!({"alg": "ES256", "typ": "consent+jwt", "kid": "consent-es256"}),
        &artefact_claims("moneywise-app", "aac-1", &["ReadBalances"]),
        &attacker(),
    );
    let as_signed = |iss: &str| {
        let mut claims = artefact_claims("moneywise-app", "aac-1", &["ReadBalances"]);
        claims["iss"] = json!(iss);
        sign_jws(&json!({"alg": "ES256", "typ": "consent+jwt", "kid": "as-es256"}), &claims, &es256())
    };
    let act = |actor: serde_json::Value| token(&with(claims("moneywise-app", "accounts"), "act", actor));
    let artefact_for = |client: &str, id: &str, perms: &[&str]| c(artefact_claims(client, id, perms));
    vec![
        case("artefact consent", "GET", bal, b(machine.clone()), Ok("balances"))
            .consent(vec![balances_consent.clone()]),
        case("token-carried consent", "GET", bal, b(token(&claims("moneywise-app", "accounts"))), Ok("balances")),
        case("transactions: any-of and all-of groups", "GET", tx, b(machine.clone()), Ok("transactions"))
            .consent(artefact_for("moneywise-app", "aac-2", &["ReadTransactionsDetail", "ReadTransactionsCredits"])),
        case("transactions: one group unmet", "GET", tx, b(machine.clone()), Err(Reason::ConsentPermissionMissing))
            .consent(artefact_for("moneywise-app", "aac-2", &["ReadTransactionsDetail"])),
        case(
            "balances consent used on transactions",
            "GET",
            tx,
            b(machine.clone()),
            Err(Reason::ConsentPermissionMissing),
        )
        .consent(vec![balances_consent.clone()]),
        case(
            "valid consent, offboarded partner",
            "GET",
            bal,
            b(token(&customer_claims("quickloans-app", "accounts"))),
            Err(Reason::PartnerOffboarded),
        )
        .consent(artefact_for("quickloans-app", "aac-3", &["ReadBalances"])),
        case(
            "valid consent, token lacks the scope",
            "POST",
            "/domestic-payments",
            b(token(&customer_claims("moneywise-app", "accounts"))),
            Err(Reason::ScopeMissing),
        )
        .consent(artefact_for("moneywise-app", "pay-1", &["CreateDomesticPayment"])),
        case("valid machine, no consent", "GET", bal, b(machine.clone()), Err(Reason::ConsentMissing)),
        case("consent expired", "GET", bal, b(machine.clone()), Err(Reason::ConsentExpired)).consent(c(with(
            with(artefact_claims("moneywise-app", "aac-1", &["ReadBalances"]), "iat", json!(NOW - 7200)),
            "exp",
            json!(NOW - 3600),
        ))),
        case("consent revoked", "GET", bal, b(machine.clone()), Err(Reason::ConsentRevoked)).consent(artefact_for(
            "moneywise-app",
            "aac-revoked-7d1e",
            &["ReadBalances"],
        )),
        case(
            "token-carried consent revoked",
            "GET",
            bal,
            b(token(&with(claims("moneywise-app", "accounts"), "consent_id", json!("aac-revoked-7d1e")))),
            Err(Reason::ConsentRevoked),
        ),
        case("consent not authorised", "GET", bal, b(machine.clone()), Err(Reason::ConsentNotAuthorised)).consent(c(
            with(
                artefact_claims("moneywise-app", "aac-1", &["ReadBalances"]),
                "status",
                json!("AwaitingAuthorisation"),
            ),
        )),
        case("consent without a status", "GET", bal, b(machine.clone()), Err(Reason::ConsentNotAuthorised)).consent(c(
            {
                let mut claims = artefact_claims("moneywise-app", "aac-1", &["ReadBalances"]);
                claims.as_object_mut().unwrap().remove("status");
                claims
            },
        )),
        case("consent for another client", "GET", bal, b(machine.clone()), Err(Reason::ConsentClientMismatch))
            .consent(artefact_for("moneywise-insights", "aac-1", &["ReadBalances"])),
        case("consent of another customer", "GET", bal, b(machine.clone()), Err(Reason::ConsentSubjectMismatch))
            .consent(c(with(
                artefact_claims("moneywise-app", "aac-1", &["ReadBalances"]),
                "sub",
                json!("customer-0001"),
            ))),
        case(
            "client-credentials token on a customer route",
            "GET",
            bal,
            b(token(&cc_claims("moneywise-app", "accounts"))),
            Err(Reason::ClientCredentialsOnCustomerRoute),
        )
        .consent(vec![balances_consent.clone()]),
        case(
            "customer token on a consent-resource route",
            "POST",
            "/account-access-consents",
            b(machine.clone()),
            Err(Reason::CustomerTokenOnMachineRoute),
        ),
        case(
            "client credentials on a consent-resource route",
            "POST",
            "/account-access-consents",
            b(token(&cc_claims("moneywise-app", "accounts"))),
            Ok("account-access-consents-create"),
        ),
        case("forged consent signature", "GET", bal, b(machine.clone()), Err(Reason::ConsentInvalid))
            .consent(vec![forged_consent]),
        case("consent signed by the access-token issuer", "GET", bal, b(machine.clone()), Err(Reason::ConsentInvalid))
            .consent(vec![as_signed(ISS)]),
        case(
            "consent claiming the consent issuer, AS key",
            "GET",
            bal,
            b(machine.clone()),
            Err(Reason::ConsentInvalid),
        )
        .consent(vec![as_signed(CONSENT_ISS)]),
        case("malformed consent", "GET", bal, b(machine.clone()), Err(Reason::ConsentInvalid))
            .consent(vec!["not-a-jwt".into()]),
        case("two consents", "GET", bal, b(machine.clone()), Err(Reason::ConsentDuplicated))
            .consent(vec![balances_consent.clone(), balances_consent.clone()]),
        case(
            "artefact and token consent disagree",
            "GET",
            bal,
            b(token(&claims("moneywise-app", "accounts"))),
            Err(Reason::ConsentDuplicated),
        )
        .consent(vec![balances_consent.clone()]),
        case("known actor", "GET", bal, b(act(json!({"sub": "moneywise-insights"}))), Ok("balances")),
        case(
            "nested actors are informational",
            "GET",
            bal,
            b(act(json!({"sub": "moneywise-insights", "act": {"sub": "nobody-we-know"}}))),
            Ok("balances"),
        ),
        case("unknown actor", "GET", bal, b(act(json!({"sub": "shadow-agent"}))), Err(Reason::ActorUnknown)),
        case("suspended actor", "GET", bal, b(act(json!({"sub": "moneywise-beta"}))), Err(Reason::ActorNotAllowed)),
        case(
            "actor of an offboarded partner",
            "GET",
            bal,
            b(act(json!({"sub": "quickloans-app"}))),
            Err(Reason::ActorNotAllowed),
        ),
        case("malformed act", "GET", bal, b(act(json!("moneywise-insights"))), Err(Reason::TokenMalformed)),
    ]
}

#[test]
fn every_case_gets_its_decision() {
    let mut engine = engine();
    let mut failures = Vec::new();
    for c in cases() {
        let auth: Vec<&str> = c.authorization.iter().map(String::as_str).collect();
        let consent: Vec<&str> = c.consent.iter().map(String::as_str).collect();
        let got = decide_with_consent(&mut engine, c.method, c.path, &auth, &consent);
        let got = got.as_ref().map(String::as_str).map_err(|r| *r);
        if got != c.expect {
            failures.push(format!("{}: expected {:?}, got {:?}", c.name, c.expect, got));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
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
fn artefacts_without_status_count_as_authorised_only_when_the_policy_opts_in() {
    let mut doc: serde_json::Value = serde_json::from_str(POLICY_JSON).unwrap();
    doc["consent"]["accept_artefacts_without_status"] = json!(true);
    let mut e = Engine::new(
        Rc::new(crate::engine::policy::load(&doc.to_string(), "t").unwrap()),
        Box::new(crate::engine::jwt::verifier::PureRust),
    );
    e.observe_feed(1, NOW, || Some(EMPTY_FEED.to_vec())).unwrap();
    let mut claims = artefact_claims("moneywise-app", "aac-1", &["ReadBalances"]);
    claims.as_object_mut().unwrap().remove("status");
    let consent = artefact(&claims);
    let t = bearer(&token(&customer_claims("moneywise-app", "accounts")));
    let (a, c) = ([t.as_bytes()], [consent.as_bytes()]);
    let facts = RequestFacts {
        method: "GET",
        path: "/accounts/22289/balances",
        authorization: &a,
        consent: &c,
        dpop: &[],
        peer: None,
        now: NOW,
        method_override: false,
    };
    assert!(matches!(e.decide(&facts), Decision::Allow(_)), "opted in: a status-less artefact is Authorised");
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
fn every_core_reason_is_covered_by_a_case() {
    let mut produced: HashSet<Reason> = cases().iter().filter_map(|c| c.expect.err()).collect();
    produced.insert(Reason::MethodOverride); // method_override_headers_are_refused_whatever_the_token_allows
    produced.extend(revocation_outcomes().into_iter().filter_map(|(_, _, want)| want.err()));
    produced.insert(Reason::VerifierError);
    produced.insert(Reason::ReviewOverdue); // overdue_reviews_deny_only_when_the_policy_enforces_them
    produced.insert(Reason::JwksUnavailable); // remote_jwks_rotation_removal_and_refetch
    produced.insert(Reason::ClientIssuerNotAllowed); // remote_jwks_rotation_removal_and_refetch
                                                     // sender_constrained_tokens_and_workload_identity
    produced.extend([
        Reason::SenderConstraintRequired,
        Reason::CertificateBindingMissing,
        Reason::CertificateBindingMismatch,
        Reason::ClientCredentialMismatch,
        Reason::WorkloadUnknown,
        Reason::DpopNotEnabled,
        Reason::DpopDowngrade,
        Reason::DpopTokenUnbound,
        Reason::DpopProofMissing,
        Reason::DpopProofDuplicated,
        Reason::DpopProofMalformed,
        Reason::DpopAlgNotAllowed,
        Reason::DpopJwkInvalid,
        Reason::DpopSignatureInvalid,
        Reason::DpopHtmMismatch,
        Reason::DpopHtuMismatch,
        Reason::DpopIatInvalid,
        Reason::DpopAthMismatch,
        Reason::DpopKeyMismatch,
        Reason::DpopReplayed,
        Reason::DpopReplayCacheUnavailable,
    ]);
    // Produced only by the host shell (no policy, a failed host call): tested end to end.
    let host_only = [Reason::PolicyUnavailable, Reason::HostError];
    let missing: Vec<_> = Reason::ALL.iter().filter(|r| !produced.contains(r) && !host_only.contains(r)).collect();
    assert!(missing.is_empty(), "reasons without a case: {missing:?}");
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
    let deny =
        Deny { reason: Reason::ScopeMissing, route, token: None, realm: &p.realm, dpop_algs: "", dpop_scheme: false };
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
    let missing =
        Deny { reason: Reason::TokenMissing, route, token: None, realm: &p.realm, dpop_algs: "", dpop_scheme: false }
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

/// One request with every fact the sender checks read.
struct Sent<'a> {
    method: &'a str,
    path: &'a str,
    auth: Vec<String>,
    dpop: Vec<String>,
    peer: Option<([u8; 32], Option<&'a str>)>,
}

fn send(e: &mut Engine, s: &Sent<'_>) -> Result<(String, &'static str), Reason> {
    let auth: Vec<&[u8]> = s.auth.iter().map(|a| a.as_bytes()).collect();
    let dpop: Vec<&[u8]> = s.dpop.iter().map(|a| a.as_bytes()).collect();
    let peer = s.peer.map(|(sha256, uri_san)| crate::engine::credentials::PeerCertificate { sha256, uri_san });
    let facts = RequestFacts {
        method: s.method,
        path: s.path,
        authorization: &auth,
        consent: &[],
        dpop: &dpop,
        peer,
        now: NOW,
        method_override: false,
    };
    match e.decide(&facts) {
        Decision::Allow(a) => Ok((a.route.id.clone(), a.auth.name())),
        Decision::Deny(d) => Err(d.reason),
    }
}

const VRP: &str = "/domestic-vrps";
const VRP_URL: &str = "https://api.bank.example/domestic-vrps";
const CERT_A: [u8; 32] = [0xa1; 32];
const CERT_B: [u8; 32] = [0xb2; 32];
const BATCH_SPIFFE: &str = "spiffe://bank.internal/ns/statements/sa/statements-batch";

fn dpop_key() -> SigningKey {
    SigningKey::es256_from_bytes(&[31u8; 32]).unwrap()
}

/// Every sender-binding reason: mTLS-bound tokens, pinned clients, workload identity, DPoP.
#[test]
fn sender_constrained_tokens_and_workload_identity() {
    use crate::tools::mint::{bind_to_certificate, bind_to_dpop_key, dpop_jwk, dpop_proof};
    let payer = claims("moneywise-app", "payments");
    let bearer_t = token(&payer);
    let mtls_t = token(&bind_to_certificate(payer.clone(), &CERT_A));
    let dpop_t = token(&bind_to_dpop_key(payer.clone(), &dpop_key()));
    let proof = |key: &SigningKey, method: &str, url: &str, tok: &str, iat: i64, jti: &str| {
        dpop_proof(key, method, url, tok, iat, jti)
    };
    let good_proof = |jti: &str| proof(&dpop_key(), "POST", VRP_URL, &dpop_t, NOW - 2, jti);
    let batch = token(&claims("statements-batch", "statements:generate"));
    let post = |auth: Vec<String>, dpop: Vec<String>, peer| Sent { method: "POST", path: VRP, auth, dpop, peer };
    // The batch job's route, over an mTLS connection with this certificate and URI SAN.
    let statement_run = |auth: Vec<String>, cert, san| Sent {
        method: "POST",
        path: "/internal/statements/runs",
        auth,
        dpop: vec![],
        peer: Some((cert, Some(san))),
    };
    let dp = |t: &str| vec![format!("DPoP {t}")];
    let other = SigningKey::es256_from_bytes(&[32u8; 32]).unwrap();
    let forged_proof = {
        // Claims the DPoP key's jwk and matches the request and token, but is signed by another key.
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": dpop_jwk(&dpop_key())});
        let ath = base64url::encode(&<sha2::Sha256 as sha2::Digest>::digest(dpop_t.as_bytes()));
        let c = json!({"jti": "f1", "htm": "POST", "htu": VRP_URL, "iat": NOW, "ath": ath});
        sign_jws(&header, &c, &other)
    };
    let private_jwk_proof = {
        let mut jwk = dpop_jwk(&dpop_key());
        jwk["d"] = json!("c2VjcmV0");
        sign_jws(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}), &json!({"jti": "p1"}), &dpop_key())
    };
    let hs256_proof = {
        let input =
            signing_input(&json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "a2V5"}}), &json!({}));
        format!("{input}.{}", base64url::encode(&hmac_sha256::HMAC::mac(input.as_bytes(), b"key")))
    };
    type Case<'a> = (&'a str, Sent<'a>, Result<(&'a str, &'a str), Reason>);
    let cases: Vec<Case> = vec![
        (
            "bearer token on a sender-constrained route",
            post(vec![bearer(&bearer_t)], vec![], None),
            Err(Reason::SenderConstraintRequired),
        ),
        (
            "mTLS-bound token, its certificate",
            post(vec![bearer(&mtls_t)], vec![], Some((CERT_A, None))),
            Ok(("domestic-vrps-create", "mtls-bound")),
        ),
        (
            "mTLS-bound token, another certificate",
            post(vec![bearer(&mtls_t)], vec![], Some((CERT_B, None))),
            Err(Reason::CertificateBindingMismatch),
        ),
        (
            "mTLS-bound token without mutual TLS",
            post(vec![bearer(&mtls_t)], vec![], None),
            Err(Reason::CertificateBindingMissing),
        ),
        ("DPoP: valid", post(dp(&dpop_t), vec![good_proof("j1")], None), Ok(("domestic-vrps-create", "dpop"))),
        ("DPoP: the same proof again", post(dp(&dpop_t), vec![good_proof("j1")], None), Err(Reason::DpopReplayed)),
        (
            "DPoP-bound token as Bearer",
            post(vec![bearer(&dpop_t)], vec![good_proof("j2")], None),
            Err(Reason::DpopDowngrade),
        ),
        (
            "DPoP scheme, unbound token",
            post(dp(&bearer_t), vec![good_proof("j3")], None),
            Err(Reason::DpopTokenUnbound),
        ),
        ("DPoP: no proof", post(dp(&dpop_t), vec![], None), Err(Reason::DpopProofMissing)),
        (
            "DPoP: two proofs",
            post(dp(&dpop_t), vec![good_proof("j4"), good_proof("j5")], None),
            Err(Reason::DpopProofDuplicated),
        ),
        ("DPoP: proof not a JWS", post(dp(&dpop_t), vec!["nonsense".into()], None), Err(Reason::DpopProofMalformed)),
        (
            "DPoP: typ jwt",
            post(
                dp(&dpop_t),
                vec![{
                    let c = json!({"jti": "t1", "htm": "POST", "htu": VRP_URL, "iat": NOW, "ath": "x"});
                    sign_jws(&json!({"typ": "jwt", "alg": "ES256", "jwk": dpop_jwk(&dpop_key())}), &c, &dpop_key())
                }],
                None,
            ),
            Err(Reason::DpopProofMalformed),
        ),
        ("DPoP: HS256 proof", post(dp(&dpop_t), vec![hs256_proof], None), Err(Reason::DpopAlgNotAllowed)),
        ("DPoP: private key in jwk", post(dp(&dpop_t), vec![private_jwk_proof], None), Err(Reason::DpopJwkInvalid)),
        ("DPoP: signed by another key", post(dp(&dpop_t), vec![forged_proof], None), Err(Reason::DpopSignatureInvalid)),
        (
            "DPoP: wrong htm",
            post(dp(&dpop_t), vec![proof(&dpop_key(), "GET", VRP_URL, &dpop_t, NOW, "m1")], None),
            Err(Reason::DpopHtmMismatch),
        ),
        (
            "DPoP: wrong htu host",
            post(
                dp(&dpop_t),
                vec![proof(&dpop_key(), "POST", "https://evil.example/domestic-vrps", &dpop_t, NOW, "u1")],
                None,
            ),
            Err(Reason::DpopHtuMismatch),
        ),
        (
            "DPoP: wrong htu path",
            post(
                dp(&dpop_t),
                vec![proof(&dpop_key(), "POST", "https://api.bank.example/domestic-payments", &dpop_t, NOW, "u2")],
                None,
            ),
            Err(Reason::DpopHtuMismatch),
        ),
        (
            "DPoP: stale iat",
            post(dp(&dpop_t), vec![proof(&dpop_key(), "POST", VRP_URL, &dpop_t, NOW - 61, "i1")], None),
            Err(Reason::DpopIatInvalid),
        ),
        (
            "DPoP: iat ahead",
            post(dp(&dpop_t), vec![proof(&dpop_key(), "POST", VRP_URL, &dpop_t, NOW + 30, "i2")], None),
            Err(Reason::DpopIatInvalid),
        ),
        (
            "DPoP: ath of another token",
            post(dp(&dpop_t), vec![proof(&dpop_key(), "POST", VRP_URL, &bearer_t, NOW, "a1")], None),
            Err(Reason::DpopAthMismatch),
        ),
        (
            "DPoP: proof by a key the token is not bound to",
            post(dp(&dpop_t), vec![proof(&other, "POST", VRP_URL, &dpop_t, NOW, "k1")], None),
            Err(Reason::DpopKeyMismatch),
        ),
        (
            "pinned workload's token, its SPIFFE ID",
            statement_run(vec![bearer(&batch)], CERT_A, BATCH_SPIFFE),
            Ok(("statement-runs-create", "bearer")),
        ),
        (
            "pinned workload's token over another workload's certificate",
            statement_run(vec![bearer(&batch)], CERT_B, "spiffe://bank.internal/ns/other/sa/x"),
            Err(Reason::ClientCredentialMismatch),
        ),
        (
            "workload identity alone",
            statement_run(vec![], CERT_A, BATCH_SPIFFE),
            Ok(("statement-runs-create", "workload")),
        ),
        (
            "unknown workload",
            statement_run(vec![], CERT_A, "spiffe://bank.internal/ns/x/sa/unknown"),
            Err(Reason::WorkloadUnknown),
        ),
        (
            "SPIFFE ID is not a prefix match",
            statement_run(vec![], CERT_A, "spiffe://bank.internal/ns/statements/sa/statements-batch/x"),
            Err(Reason::WorkloadUnknown),
        ),
        (
            "workload identity on a route that does not take it",
            Sent {
                method: "GET",
                path: "/internal/ledger/accounts/1",
                auth: vec![],
                dpop: vec![],
                peer: Some((CERT_A, Some(BATCH_SPIFFE))),
            },
            Err(Reason::TokenMissing),
        ),
    ];
    let mut e = engine();
    for (name, sent, want) in &cases {
        let got = send(&mut e, sent);
        assert_eq!(got.as_ref().map(|(r, a)| (r.as_str(), *a)).map_err(|r| *r), *want, "{name}");
    }

    // Registry rules apply to workloads: an expired registration.
    let mut doc: serde_json::Value = serde_json::from_str(POLICY_JSON).unwrap();
    let clients = doc["clients"].as_array_mut().unwrap();
    let batch_doc = clients.iter_mut().find(|c| c["id"] == "statements-batch").unwrap();
    batch_doc["expires"] = json!("2026-01-01T00:00:00Z");
    // A partner app pinned to certificate A.
    let app = clients.iter_mut().find(|c| c["id"] == "moneywise-app").unwrap();
    app["certificate_thumbprints"] = json!([base64url::encode(&CERT_A)]);
    let mut e = engine_for(&doc.to_string());
    let workload = statement_run(vec![], CERT_A, BATCH_SPIFFE);
    assert_eq!(send(&mut e, &workload), Err(Reason::ClientExpired), "expired workload identity");
    assert_eq!(send(&mut e, &post(vec![bearer(&mtls_t)], vec![], Some((CERT_A, None)))).map(|r| r.1), Ok("mtls-bound"));
    let balances = |peer| Sent {
        method: "GET",
        path: "/accounts/1/balances",
        auth: vec![bearer(&token(&claims("moneywise-app", "accounts")))],
        dpop: vec![],
        peer,
    };
    assert_eq!(
        send(&mut e, &balances(Some((CERT_A, None)))).map(|r| r.1),
        Ok("bearer"),
        "pinned client, its own certificate"
    );
    assert_eq!(
        send(&mut e, &balances(Some((CERT_B, None)))),
        Err(Reason::ClientCredentialMismatch),
        "client A's token over B's certificate"
    );
    assert_eq!(send(&mut e, &balances(None)), Err(Reason::ClientCredentialMismatch), "pinned client without mTLS");

    // Without DPoP settings, DPoP tokens and the scheme are refused outright.
    doc.as_object_mut().unwrap().remove("sender_constraint");
    let mut e = engine_for(&doc.to_string());
    assert_eq!(send(&mut e, &post(dp(&dpop_t), vec![good_proof("n1")], None)), Err(Reason::DpopNotEnabled));

    // A replay store that cannot answer fails closed.
    struct Broken;
    impl crate::engine::replay::ReplayGuard for Broken {
        fn record(
            &mut self,
            _: &crate::engine::dpop::ProofId,
            _: i64,
        ) -> Result<(), crate::engine::replay::ReplayError> {
            Err(crate::engine::replay::ReplayError::Unavailable("down".into()))
        }
    }
    let mut e = engine();
    e.set_replay_guard(Box::new(Broken));
    assert_eq!(send(&mut e, &post(dp(&dpop_t), vec![good_proof("b1")], None)), Err(Reason::DpopReplayCacheUnavailable));
}

#[test]
fn dpop_denials_challenge_with_the_dpop_scheme() {
    let mut e = engine();
    let t = token(&crate::tools::mint::bind_to_dpop_key(claims("moneywise-app", "payments"), &dpop_key()));
    let auth = [format!("DPoP {t}")];
    let a: Vec<&[u8]> = auth.iter().map(|s| s.as_bytes()).collect();
    let facts = RequestFacts {
        method: "POST",
        path: VRP,
        authorization: &a,
        consent: &[],
        dpop: &[],
        peer: None,
        now: NOW,
        method_override: false,
    };
    let Decision::Deny(d) = e.decide(&facts) else { panic!("expected a denial") };
    let r = d.response("r");
    let challenge = r.headers.iter().find(|(k, _)| *k == "www-authenticate").map(|(_, v)| v.as_str()).unwrap();
    assert!(
        challenge.starts_with(
            "DPoP realm=\"bank-open-banking-api\", algs=\"ES256 EdDSA PS256\", error=\"invalid_dpop_proof\""
        ),
        "{challenge}"
    );
    assert_eq!(r.status, 401);
}
