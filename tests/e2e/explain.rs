//! `nhi-guard explain` agrees with Envoy: for every reason code, a request that gets it from the
//! real Envoy with the filter gets the same status and reason from `explain` given the same
//! policy, headers, client certificate, feed document and time. Reasons that no single offline
//! request can produce are listed, each with why.

use crate::harness::*;
use nhi_guard::engine::policy::load_with_env;
use nhi_guard::engine::reason::Reason;
use nhi_guard::tools::envoy_config::PluginSettings;
use nhi_guard::tools::explain::{explain, Fetched, Request};
use nhi_guard::tools::mint::{
    access_token_header, bind_to_certificate, bind_to_dpop_key, dpop_proof, dpop_proof_claims, dpop_proof_header,
    example, sign_jws, signing_input, SigningKey,
};
use serde_json::{json, Value};
use std::collections::HashSet;

const NONCE_ENV: &str = "NHI_GUARD_DPOP_NONCE_KEY";
const NONCE_KEY: &str = "explain-nonce-key-0123456789abcdefghijklmnop";
const PDC_URL: &str = "https://api.bank.example/domestic-payment-consents";
const WORKLOAD_SPIFFE: &str = "spiffe://bank.internal/ns/sandbox/sa/unknown-workload";

/// One request: what Envoy and explain both get.
struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    /// A `pki()` certificate name: over the mutual-TLS listener, presenting it.
    cert: Option<&'static str>,
    spiffe_id: Option<&'static str>,
    want: &'static str,
}

fn case(
    what: &'static str,
    method: &'static str,
    path: &str,
    headers: Vec<(&'static str, String)>,
    want: &'static str,
) -> Case {
    Case { what, method, path: path.to_string(), headers, cert: None, spiffe_id: None, want }
}

fn tls(mut c: Case, cert: &'static str, spiffe_id: Option<&'static str>) -> Case {
    c.cert = Some(cert);
    c.spiffe_id = spiffe_id;
    c
}

fn auth(t: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", bearer(t))]
}

fn signed_with(header: Value, claims: &Value) -> String {
    let k = key("as-es256");
    sign_jws(&header, claims, &k)
}

/// Runs every case on `envoy` and through explain with the same inputs; returns the reasons seen.
fn agree(
    envoy: &Envoy,
    policy_json: &str,
    env: &dyn Fn(&str) -> Option<String>,
    fetched: &Fetched,
    cases: Vec<Case>,
) -> HashSet<String> {
    let mut seen = HashSet::new();
    for c in cases {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = match c.cert {
            Some(cert) => envoy.send_tls(c.method, &c.path, &headers, Some(cert)).unwrap(),
            None => envoy.send(c.method, &c.path, &headers),
        };
        let envoy_outcome =
            if r.status == 200 { "200 allow".to_string() } else { format!("{} {}", r.status, r.reason()) };
        assert_eq!(envoy_outcome, c.want, "Envoy, {}: {}", c.what, r.body);
        let policy = load_with_env(policy_json, "policy", env).unwrap();
        let request = Request {
            method: c.method.to_string(),
            path: c.path.clone(),
            headers: c.headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            peer_sha256: c.cert.map(cert_sha256),
            spiffe_id: c.spiffe_id.map(String::from),
            at: now(),
        };
        let e = explain(policy, &request, fetched, Vec::new()).unwrap();
        let explained = match e.reason {
            None => format!("{} allow", e.status),
            Some(reason) => format!("{} {reason}", e.status),
        };
        assert_eq!(explained, c.want, "explain, {}:\n{}", c.what, nhi_guard::tools::explain::render_text(&e));
        seen.insert(e.reason.unwrap_or("allow").to_string());
    }
    seen
}

#[test]
fn explain_gives_the_reason_envoy_gives_for_every_reason_code() {
    let attacker = SigningKey::es256_from_bytes(&[91u8; 32]).unwrap();
    let dpop_key = SigningKey::es256_from_bytes(&[92u8; 32]).unwrap();
    let other_key = SigningKey::es256_from_bytes(&[93u8; 32]).unwrap();
    let n = now();
    let revoked_jti = claims("moneywise-app", "accounts");
    let feed = feed_document(
        2,
        json!({
            "tokens": [{"iss": example::ISS, "jti": revoked_jti["jti"]}],
            "clients": ["moneywise-insights"],
            "keys": [{"iss": example::ISS, "kid": "as-eddsa"}],
            "consents": ["aac-fed-revoked"],
        }),
    );
    let sources = Sources::start((200, feed.clone()), (200, sts_jwks()));
    let envoy = Envoy::launch(&example_policy(), sources, Launch::default());
    envoy.wait_fed(&example_policy());
    let fetched = Fetched { feed: Some(feed), jwks: vec![(example::STS_ISS.to_string(), sts_jwks())] };

    let ok = claims("moneywise-app", "accounts payments");
    let with = |mutate: &dyn Fn(&mut Value)| {
        let mut c = ok.clone();
        mutate(&mut c);
        token(&c)
    };
    let header = |alg: &str, typ: &str, kid: &str| json!({"alg": alg, "typ": typ, "kid": kid});
    let eddsa = key("as-eddsa");
    let cc = token(&cc_claims("moneywise-app", "accounts payments"));
    let pay = token(&customer_claims("moneywise-app", "payments"));
    let customer_accounts = token(&customer_claims("moneywise-app", "accounts"));
    let consent_with = |mutate: &dyn Fn(&mut Value)| {
        let mut c = example::artefact_claims("moneywise-app", "aac-e1", &["ReadBalances"], n - 600);
        mutate(&mut c);
        artefact_from(&c)
    };
    let balances = "/accounts/22289/balances";
    let with_consent = |t: &str, a: String| vec![("authorization", bearer(t)), ("x-consent", a)];
    let dpop_t = token(&bind_to_dpop_key(cc_claims("moneywise-app", "payments"), &dpop_key));
    let dpop_auth = format!("DPoP {dpop_t}");
    let proof = |edit: &dyn Fn(&mut Value, &mut Value)| {
        let (mut h, mut c) = (
            dpop_proof_header(&dpop_key),
            dpop_proof_claims("POST", PDC_URL, &dpop_t, now(), &format!("x-{}", rand_id())),
        );
        edit(&mut h, &mut c);
        sign_jws(&h, &c, &dpop_key)
    };
    let dp = |p: String| vec![("authorization", dpop_auth.clone()), ("dpop", p)];
    let pdc = "/domestic-payment-consents";
    let batch = token(&cc_claims("statements-batch", "statements:generate"));
    let cases = vec![
        case(
            "allowed",
            "GET",
            balances,
            with_consent(&customer_accounts, artefact("moneywise-app", "aac-1", &["ReadBalances"])),
            "200 allow",
        ),
        case("no route", "GET", "/admin/users", auth(&token(&ok)), "403 route_unmatched"),
        case("encoded slash", "GET", "/accounts/22289%2Fbalances", auth(&token(&ok)), "400 path_ambiguous"),
        case(
            "method override",
            "GET",
            "/accounts",
            vec![("authorization", bearer(&token(&ok))), ("x-http-method-override", "DELETE".into())],
            "400 method_override",
        ),
        case(
            "token in the query",
            "GET",
            &format!("/accounts?access_token={}", token(&ok)),
            vec![],
            "400 token_in_query",
        ),
        case("no token", "GET", "/accounts", vec![], "401 token_missing"),
        case("Basic", "GET", "/accounts", vec![("authorization", "Basic YTpi".into())], "401 auth_scheme_unsupported"),
        case(
            "two tokens",
            "GET",
            "/accounts",
            vec![("authorization", bearer(&token(&ok))), ("authorization", bearer(&token(&ok)))],
            "400 token_duplicated",
        ),
        case("oversized", "GET", "/accounts", auth(&"a".repeat(5000)), "401 token_too_large"),
        case("not a JWS", "GET", "/accounts", auth("abc.def.ghi"), "401 token_malformed"),
        case(
            "HS256",
            "GET",
            "/accounts",
            auth(&signed_with(header("HS256", "at+jwt", "as-es256"), &ok)),
            "401 alg_not_allowed",
        ),
        case(
            "typ JWT",
            "GET",
            "/accounts",
            auth(&signed_with(header("ES256", "JWT", "as-es256"), &ok)),
            "401 typ_invalid",
        ),
        case(
            "unknown kid",
            "GET",
            "/accounts",
            auth(&signed_with(header("ES256", "at+jwt", "nope"), &ok)),
            "401 kid_unknown",
        ),
        case(
            "no jti",
            "GET",
            "/accounts",
            auth(&with(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            })),
            "401 claim_missing",
        ),
        case(
            "unknown issuer",
            "GET",
            "/accounts",
            auth(&with(&|c| c["iss"] = json!("https://evil.example"))),
            "401 issuer_unknown",
        ),
        case(
            "other audience",
            "GET",
            "/accounts",
            auth(&with(&|c| c["aud"] = json!("https://other.example"))),
            "401 audience_invalid",
        ),
        case(
            "expired",
            "GET",
            "/accounts",
            auth(&with(&|c| {
                c["iat"] = json!(n - 900);
                c["exp"] = json!(n - 600);
            })),
            "401 token_expired",
        ),
        case("nbf ahead", "GET", "/accounts", auth(&with(&|c| c["nbf"] = json!(n + 600))), "401 token_not_yet_valid"),
        case(
            "iat ahead",
            "GET",
            "/accounts",
            auth(&with(&|c| {
                c["iat"] = json!(n + 600);
                c["exp"] = json!(n + 800);
            })),
            "401 token_issued_in_future",
        ),
        case(
            "day-long",
            "GET",
            "/accounts",
            auth(&with(&|c| c["exp"] = json!(n + 86_400))),
            "401 token_lifetime_too_long",
        ),
        case(
            "too old for payments",
            "POST",
            "/domestic-payments",
            auth(&with(&|c| {
                c["iat"] = json!(n - 200);
                c["exp"] = json!(n + 100);
            })),
            "401 token_too_old",
        ),
        case(
            "forged signature",
            "GET",
            "/accounts",
            auth(&sign_jws(&access_token_header(&attacker, "as-es256"), &ok, &attacker)),
            "401 signature_invalid",
        ),
        case("revoked token", "GET", "/accounts", auth(&token(&revoked_jti)), "401 token_revoked"),
        case(
            "revoked key",
            "GET",
            "/accounts",
            auth(&sign_jws(&access_token_header(&eddsa, "as-eddsa"), &ok, &eddsa)),
            "401 key_revoked",
        ),
        case(
            "revoked client",
            "GET",
            "/accounts",
            auth(&token(&claims("moneywise-insights", "accounts"))),
            "403 client_revoked",
        ),
        case(
            "unknown client",
            "GET",
            "/accounts",
            auth(&with(&|c| c["client_id"] = json!("nobody"))),
            "403 client_unknown",
        ),
        case(
            "partner app from the STS",
            "GET",
            "/accounts",
            auth(&sts_token("moneywise-app", "accounts", &key("sts-es256"), "sts-es256")),
            "401 client_issuer_not_allowed",
        ),
        case(
            "suspended client",
            "GET",
            "/accounts",
            auth(&token(&claims("moneywise-beta", "accounts"))),
            "403 client_inactive",
        ),
        case(
            "expired client",
            "GET",
            "/accounts",
            auth(&token(&claims("moneywise-legacy", "accounts"))),
            "403 client_expired",
        ),
        case(
            "suspended partner",
            "GET",
            "/accounts",
            auth(&token(&claims("budgetbuddy-app", "accounts"))),
            "403 partner_suspended",
        ),
        case(
            "offboarded partner",
            "GET",
            "/accounts",
            auth(&token(&claims("quickloans-app", "accounts"))),
            "403 partner_offboarded",
        ),
        case(
            "contract ended",
            "GET",
            "/accounts",
            auth(&token(&claims("oldbridge-app", "accounts"))),
            "403 partner_contract_ended",
        ),
        case(
            "service account on a partner route",
            "POST",
            "/account-access-consents",
            auth(&token(&cc_claims("ledger-sync", "accounts"))),
            "403 client_kind_not_allowed",
        ),
        case(
            "accounts token on payments",
            "POST",
            "/domestic-payment-consents",
            auth(&token(&cc_claims("moneywise-app", "accounts"))),
            "403 scope_missing",
        ),
        case(
            "a service account's own route",
            "GET",
            "/internal/ledger/accounts/1",
            auth(&sts_token("ledger-sync", "ledger:read", &key("sts-es256"), "sts-es256")),
            "200 allow",
        ),
        case("plain bearer on VRP", "POST", "/domestic-vrps", auth(&pay), "401 sender_constraint_required"),
        case(
            "cert-bound over plaintext",
            "POST",
            "/domestic-vrps",
            auth(&token(&bind_to_certificate(
                customer_claims("moneywise-app", "payments"),
                &cert_sha256("moneywise-app"),
            ))),
            "401 certificate_binding_missing",
        ),
        tls(
            case(
                "cert-bound over another cert",
                "POST",
                "/domestic-vrps",
                auth(&token(&bind_to_certificate(
                    customer_claims("moneywise-app", "payments"),
                    &cert_sha256("moneywise-app"),
                ))),
                "401 certificate_binding_mismatch",
            ),
            "moneywise-insights",
            None,
        ),
        case(
            "pinned client without its certificate",
            "POST",
            "/internal/statements/runs",
            auth(&batch),
            "401 client_credential_mismatch",
        ),
        tls(
            case("unregistered workload", "POST", "/internal/statements/runs", vec![], "401 workload_unknown"),
            "unknown-workload",
            Some(WORKLOAD_SPIFFE),
        ),
        case("DPoP token as Bearer", "POST", pdc, auth(&dpop_t), "401 dpop_downgrade"),
        case(
            "DPoP scheme, unbound token",
            "POST",
            pdc,
            vec![("authorization", format!("DPoP {cc}")), ("dpop", proof(&|_, _| {}))],
            "401 dpop_token_unbound",
        ),
        case("no proof", "POST", pdc, vec![("authorization", dpop_auth.clone())], "401 dpop_proof_missing"),
        case(
            "two proofs",
            "POST",
            pdc,
            vec![("authorization", dpop_auth.clone()), ("dpop", proof(&|_, _| {})), ("dpop", proof(&|_, _| {}))],
            "401 dpop_proof_duplicated",
        ),
        case("proof typ JWT", "POST", pdc, dp(proof(&|h, _| h["typ"] = json!("JWT"))), "401 dpop_proof_malformed"),
        case(
            "HS256 proof",
            "POST",
            pdc,
            dp(format!(
                "{}.{}",
                signing_input(
                    &json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "a2V5"}}),
                    &json!({})
                ),
                "AAAA"
            )),
            "401 dpop_alg_not_allowed",
        ),
        case("private jwk", "POST", pdc, dp(proof(&|h, _| h["jwk"]["d"] = json!("c2VjcmV0"))), "401 dpop_jwk_invalid"),
        case(
            "proof signed by another key",
            "POST",
            pdc,
            dp({
                let (h, c) =
                    (dpop_proof_header(&dpop_key), dpop_proof_claims("POST", PDC_URL, &dpop_t, now(), "x-forged"));
                sign_jws(&h, &c, &other_key)
            }),
            "401 dpop_signature_invalid",
        ),
        case("htm GET", "POST", pdc, dp(proof(&|_, c| c["htm"] = json!("GET"))), "401 dpop_htm_mismatch"),
        case(
            "htu elsewhere",
            "POST",
            pdc,
            dp(proof(&|_, c| c["htu"] = json!("https://evil.example/domestic-vrps"))),
            "401 dpop_htu_mismatch",
        ),
        case("stale proof", "POST", pdc, dp(proof(&|_, c| c["iat"] = json!(n - 3600))), "401 dpop_iat_invalid"),
        case(
            "ath of another token",
            "POST",
            pdc,
            dp(proof(&|_, c| c["ath"] = json!("d3Jvbmc"))),
            "401 dpop_ath_mismatch",
        ),
        case(
            "proof key is not cnf.jkt",
            "POST",
            pdc,
            dp(dpop_proof(&other_key, "POST", PDC_URL, &dpop_t, now(), "x-other")),
            "401 dpop_key_mismatch",
        ),
        case(
            "client credentials on customer data",
            "GET",
            balances,
            with_consent(&cc, artefact("moneywise-app", "aac-2", &["ReadBalances"])),
            "403 client_credentials_on_customer_route",
        ),
        case(
            "customer token on a machine route",
            "POST",
            "/account-access-consents",
            auth(&customer_accounts),
            "403 customer_token_on_machine_route",
        ),
        case("no consent", "GET", balances, auth(&customer_accounts), "403 consent_missing"),
        case(
            "two consents",
            "GET",
            balances,
            vec![
                ("authorization", bearer(&customer_accounts)),
                ("x-consent", artefact("moneywise-app", "a", &["ReadBalances"])),
                ("x-consent", artefact("moneywise-app", "b", &["ReadBalances"])),
            ],
            "400 consent_duplicated",
        ),
        case(
            "forged consent",
            "GET",
            balances,
            with_consent(&customer_accounts, "abc.def.ghi".into()),
            "403 consent_invalid",
        ),
        case(
            "expired consent",
            "GET",
            balances,
            with_consent(&customer_accounts, consent_with(&|c| c["exp"] = json!(n - 300))),
            "403 consent_expired",
        ),
        case(
            "consent awaiting authorisation",
            "GET",
            balances,
            with_consent(&customer_accounts, consent_with(&|c| c["status"] = json!("AwaitingAuthorisation"))),
            "403 consent_not_authorised",
        ),
        case(
            "consent revoked by the feed",
            "GET",
            balances,
            with_consent(&customer_accounts, consent_with(&|c| c["consent_id"] = json!("aac-fed-revoked"))),
            "403 consent_revoked",
        ),
        case(
            "consent of another client",
            "GET",
            balances,
            with_consent(&customer_accounts, consent_with(&|c| c["client_id"] = json!("moneywise-insights"))),
            "403 consent_client_mismatch",
        ),
        case(
            "consent of another customer",
            "GET",
            balances,
            with_consent(&customer_accounts, consent_with(&|c| c["sub"] = json!("customer-0001"))),
            "403 consent_subject_mismatch",
        ),
        case(
            "consent without the permission",
            "GET",
            "/accounts/22289/transactions",
            with_consent(&customer_accounts, artefact("moneywise-app", "aac-3", &["ReadBalances"])),
            "403 consent_permission_missing",
        ),
        case(
            "unknown actor",
            "GET",
            "/accounts",
            auth(&with(&|c| c["act"] = json!({"sub": "nobody"}))),
            "403 actor_unknown",
        ),
        case(
            "suspended actor",
            "GET",
            "/accounts",
            auth(&with(&|c| c["act"] = json!({"sub": "moneywise-beta"}))),
            "403 actor_not_allowed",
        ),
    ];
    let mut seen = agree(&envoy, &example_policy(), &|_| None, &fetched, cases);
    drop(envoy);

    // A variant: nonces on one route, reviews enforced, a client whose ceiling lacks payments, the
    // STS's JWKS endpoint down.
    let mut doc: Value = serde_json::from_str(&example_policy()).unwrap();
    doc["sender_constraint"]["dpop"]["nonce"] = json!({"key_env": NONCE_ENV, "window_seconds": 60});
    doc["governance"]["enforce_review_grace_days"] = json!(0);
    for r in doc["routes"].as_array_mut().unwrap() {
        if r["id"] == "domestic-payment-consents-create" {
            r["require_dpop_nonce"] = json!(true);
        }
    }
    let variant = doc.to_string();
    let env = |name: &str| (name == NONCE_ENV).then(|| NONCE_KEY.to_string());
    let plugin = PluginSettings { env_keys: vec![NONCE_ENV.to_string()], ..PluginSettings::default() };
    let launch = Launch { plugin, env: vec![(NONCE_ENV.to_string(), NONCE_KEY.to_string())], ..Launch::default() };
    let feed = feed_document(1, Value::Null);
    let envoy = Envoy::launch(&variant, Sources::start((200, feed.clone()), (503, Vec::new())), launch);
    let fed = envoy.wait_until(std::time::Duration::from_secs(10), || envoy.counter("nhi_guard.feed.fetch_ok") > 0);
    assert!(fed.is_some());
    let fetched = Fetched { feed: Some(feed), jwks: Vec::new() };
    let wrong_nonce = nhi_guard::engine::dpop_nonce::NonceKeys::parse("another-key-0123456789abcdefghijklmnopqrs", 60)
        .unwrap()
        .mint(n);
    let cases = vec![
        case("no nonce", "POST", pdc, dp(proof(&|_, _| {})), "401 dpop_nonce_missing"),
        case(
            "foreign nonce",
            "POST",
            pdc,
            dp(proof(&|_, c| c["nonce"] = json!(wrong_nonce))),
            "401 dpop_nonce_invalid",
        ),
        case(
            "review overdue",
            "GET",
            "/accounts",
            auth(&token(&claims("quickloans-app", "accounts"))),
            "403 review_overdue",
        ),
        case(
            "keys not fetched",
            "GET",
            "/internal/ledger/accounts/1",
            auth(&sts_token("ledger-sync", "ledger:read", &key("sts-es256"), "sts-es256")),
            "503 jwks_unavailable",
        ),
        case(
            "a ceiling without payments",
            "POST",
            "/domestic-payment-consents",
            auth(&token(&cc_claims("moneywise-insights", "payments"))),
            "403 scope_beyond_ceiling",
        ),
    ];
    seen.extend(agree(&envoy, &variant, &env, &fetched, cases));
    drop(envoy);

    // Without DPoP configured at all.
    let mut doc: Value = serde_json::from_str(&example_policy()).unwrap();
    doc["sender_constraint"].as_object_mut().unwrap().remove("dpop");
    let no_dpop = doc.to_string();
    let feed = feed_document(1, Value::Null);
    let envoy = Envoy::launch(&no_dpop, Sources::start((200, feed.clone()), (200, sts_jwks())), Launch::default());
    envoy.wait_fed(&no_dpop);
    let fetched = Fetched { feed: Some(feed), jwks: vec![(example::STS_ISS.to_string(), sts_jwks())] };
    let cases = vec![case("DPoP not configured", "POST", pdc, dp(proof(&|_, _| {})), "401 dpop_not_enabled")];
    seen.extend(agree(&envoy, &no_dpop, &|_| None, &fetched, cases));

    // What no single offline request can show, and why.
    let offline_impossible: [(Reason, &str); 6] = [
        (Reason::DpopReplayed, "a replay needs the proof's first use; explain decides one request"),
        (Reason::RevocationStale, "staleness is the age of the gateway's last feed fetch, which explain does not have"),
        (Reason::DpopReplayCacheUnavailable, "a full or failing shared replay cache is a gateway state"),
        (
            Reason::PolicyUnavailable,
            "explain refuses to run on a policy that does not load, as the filter refuses to start",
        ),
        (Reason::VerifierError, "a failing signature backend is a gateway fault"),
        (Reason::HostError, "a failing host call is a gateway fault"),
    ];
    let missing: Vec<&str> = Reason::ALL
        .iter()
        .filter(|r| !seen.contains(r.code()) && !offline_impossible.iter().any(|(o, _)| o == *r))
        .map(|r| r.code())
        .collect();
    assert!(missing.is_empty(), "reasons with no Envoy-vs-explain case: {missing:?}");
}

/// A short unique id for proof jtis.
fn rand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}
