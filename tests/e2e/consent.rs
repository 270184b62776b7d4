//! Customer consent and machine authority, both required, through the real Envoy.

use crate::harness::*;
use nhi_guard::tools::mint::sign_jws;
use serde_json::json;

fn with(mut c: serde_json::Value, k: &str, v: serde_json::Value) -> serde_json::Value {
    c[k] = v;
    c
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    token: String,
    consent: Vec<String>,
    status: u16,
    /// Reason code, or for 200 the `x-nhi-consent-permissions` the upstream must receive.
    expect: &'static str,
}

fn case(
    name: &'static str,
    path: &'static str,
    token: String,
    consent: Vec<String>,
    status: u16,
    expect: &'static str,
) -> Case {
    Case { name, method: "GET", path, token, consent, status, expect }
}

#[test]
fn consent_and_machine_authority_both_decide() {
    let envoy = Envoy::start(&example_policy());
    let bal = "/accounts/22289/balances";
    let tx = "/accounts/22289/transactions";
    let machine = token(&customer_claims("moneywise-app", "accounts payments"));
    let balances = artefact("moneywise-app", "aac-1", &["ReadBalances"]);
    let as_key = key("as-es256");
    let issuer_confused =
        sign_jws(&json!({"alg": "ES256", "typ": "consent+jwt", "kid": "as-es256"}), &json!({"x": 1}), &as_key);
    let mut as_signed_claims =
        nhi_guard::tools::mint::example::artefact_claims("moneywise-app", "aac-1", &["ReadBalances"], now() - 60);
    as_signed_claims["iss"] = json!(ISS);
    let as_signed =
        sign_jws(&json!({"alg": "ES256", "typ": "consent+jwt", "kid": "as-es256"}), &as_signed_claims, &as_key);
    let forged = sign_jws(
        &json!({"alg": "ES256", "typ": "consent+jwt", "kid": "consent-es256"}),
        &nhi_guard::tools::mint::example::artefact_claims("moneywise-app", "aac-1", &["ReadBalances"], now() - 60),
        &nhi_guard::tools::mint::SigningKey::es256_from_bytes(&[5u8; 32]).unwrap(),
    );
    let act = |actor: serde_json::Value| token(&with(claims("moneywise-app", "accounts"), "act", actor));
    let cases = vec![
        case("valid machine + valid consent", bal, machine.clone(), vec![balances.clone()], 200, "ReadBalances"),
        case(
            "consent carried in the token",
            bal,
            token(&claims("moneywise-app", "accounts")),
            vec![],
            200,
            "ReadBalances",
        ),
        case(
            "valid consent, offboarded partner",
            bal,
            token(&customer_claims("quickloans-app", "accounts")),
            vec![artefact("quickloans-app", "aac-9", &["ReadBalances"])],
            403,
            "partner_offboarded",
        ),
        case(
            "valid consent, token lacks the route scope",
            bal,
            token(&customer_claims("moneywise-app", "payments")),
            vec![balances.clone()],
            403,
            "scope_missing",
        ),
        case("valid machine, no consent", bal, machine.clone(), vec![], 403, "consent_missing"),
        case(
            "consent expired",
            bal,
            machine.clone(),
            vec![artefact_from(&with(
                with(
                    nhi_guard::tools::mint::example::artefact_claims(
                        "moneywise-app",
                        "aac-1",
                        &["ReadBalances"],
                        now() - 7200,
                    ),
                    "exp",
                    json!(now() - 3000),
                ),
                "iat",
                json!(now() - 7200),
            ))],
            403,
            "consent_expired",
        ),
        case(
            "consent revoked",
            bal,
            machine.clone(),
            vec![artefact("moneywise-app", "aac-revoked-7d1e", &["ReadBalances"])],
            403,
            "consent_revoked",
        ),
        case(
            "consent for a different client",
            bal,
            machine.clone(),
            vec![artefact("moneywise-insights", "aac-1", &["ReadBalances"])],
            403,
            "consent_client_mismatch",
        ),
        case(
            "consent for a different customer",
            bal,
            machine.clone(),
            vec![artefact_from(&with(
                nhi_guard::tools::mint::example::artefact_claims(
                    "moneywise-app",
                    "aac-1",
                    &["ReadBalances"],
                    now() - 60,
                ),
                "sub",
                json!("customer-0002"),
            ))],
            403,
            "consent_subject_mismatch",
        ),
        case(
            "balances consent used on transactions",
            tx,
            machine.clone(),
            vec![balances.clone()],
            403,
            "consent_permission_missing",
        ),
        case(
            "transactions consent",
            tx,
            machine.clone(),
            vec![artefact("moneywise-app", "aac-2", &["ReadTransactionsBasic", "ReadTransactionsDebits"])],
            200,
            "ReadTransactionsBasic ReadTransactionsDebits",
        ),
        case(
            "client-credentials token on a customer route",
            bal,
            token(&cc_claims("moneywise-app", "accounts")),
            vec![balances.clone()],
            403,
            "client_credentials_on_customer_route",
        ),
        case("forged consent signature", bal, machine.clone(), vec![forged], 403, "consent_invalid"),
        case(
            "consent signed by the access-token issuer",
            bal,
            machine.clone(),
            vec![as_signed],
            403,
            "consent_invalid",
        ),
        case("consent that is no consent", bal, machine.clone(), vec![issuer_confused], 403, "consent_invalid"),
        case(
            "two consent headers",
            bal,
            machine.clone(),
            vec![balances.clone(), balances.clone()],
            400,
            "consent_duplicated",
        ),
        case("known actor", bal, act(json!({"sub": "moneywise-insights"})), vec![], 200, "ReadBalances"),
        case(
            "nested actors ignored",
            bal,
            act(json!({"sub": "moneywise-insights", "act": {"sub": "unregistered-bot"}})),
            vec![],
            200,
            "ReadBalances",
        ),
        case("unknown actor", bal, act(json!({"sub": "unregistered-bot"})), vec![], 403, "actor_unknown"),
        case("suspended actor", bal, act(json!({"sub": "moneywise-beta"})), vec![], 403, "actor_not_allowed"),
        Case {
            method: "POST",
            ..case(
                "customer token on a consent-resource route",
                "/account-access-consents",
                machine.clone(),
                vec![],
                403,
                "customer_token_on_machine_route",
            )
        },
    ];
    let mut failures = Vec::new();
    for c in cases {
        let auth = bearer(&c.token);
        let mut headers: Vec<(&str, &str)> = vec![("authorization", &auth)];
        headers.extend(c.consent.iter().map(|v| ("x-consent", v.as_str())));
        let r = envoy.send(c.method, c.path, &headers);
        let got = if r.status == 200 {
            r.upstream_header("x-nhi-consent-permissions").unwrap_or_default()
        } else {
            r.reason()
        };
        if (r.status, got.as_str()) != (c.status, c.expect) {
            failures
                .push(format!("{}: expected {} {}, got {} {} ({})", c.name, c.status, c.expect, r.status, got, r.body));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn upstream_learns_the_consent_and_actor_and_spoofs_are_stripped() {
    let envoy = Envoy::start(&example_policy());
    let t = bearer(&token(&with(claims("moneywise-app", "accounts"), "act", json!({"sub": "moneywise-insights"}))));
    let r = envoy.send(
        "GET",
        "/accounts/22289/balances",
        &[
            ("authorization", &t),
            ("x-nhi-consent-id", "aac-forged"),
            ("x-nhi-actor", "bank-admin"),
            ("x-nhi-consent-permissions", "ReadEverything"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_header("x-nhi-consent-id").as_deref(), Some("aac-8841"));
    assert_eq!(r.upstream_header("x-nhi-consent-permissions").as_deref(), Some("ReadBalances"));
    assert_eq!(r.upstream_header("x-nhi-actor").as_deref(), Some("moneywise-insights"));
    assert_eq!(r.upstream_header("x-nhi-subject").as_deref(), Some("customer-8841"));
    // Without delegation or consent, no such headers reach the upstream, spoofed or not.
    let r = envoy.send(
        "GET",
        "/internal/ledger/accounts/7",
        &[
            ("authorization", &bearer(&token(&cc_claims("ledger-sync", "ledger:read")))),
            ("x-nhi-consent-id", "aac-forged"),
            ("x-nhi-actor", "x"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_header("x-nhi-consent-id"), None);
    assert_eq!(r.upstream_header("x-nhi-actor"), None);
    assert_eq!(envoy.counter("nhi_guard.denied"), 0);
}
