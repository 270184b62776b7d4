//! Customer consent and delegation: machine authority and consent must both allow.

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

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
fn every_consent_case_gets_its_decision() {
    check_cases(consent_cases());
}

/// This file's tests, for the coverage test in mod.rs (which runs them again on its own thread).
pub(super) const TESTS: &[fn()] =
    &[every_consent_case_gets_its_decision, artefacts_without_status_count_as_authorised_only_when_the_policy_opts_in];
