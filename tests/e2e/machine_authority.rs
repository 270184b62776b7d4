//! Every machine-authority outcome through the real Envoy: status, challenge, reason code,
//! what the upstream received, counters and the denial log.

use crate::harness::*;
use nhi_guard::engine::base64url;
use nhi_guard::tools::mint::{sign_jws, signing_input, SigningKey};
use serde_json::{json, Value};

fn with(mut c: Value, k: &str, v: Value) -> Value {
    c[k] = v;
    c
}

fn header_token(header: Value, claims: &Value) -> String {
    sign_jws(&header, claims, &key("as-es256"))
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    status: u16,
    /// Expected reason code for denials; for allowed requests, the expected `x-nhi-route`.
    reason_or_route: &'static str,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    auth: Option<String>,
    status: u16,
    r: &'static str,
) -> Case {
    Case {
        name,
        method,
        path,
        headers: auth.map(|a| vec![("authorization", a)]).unwrap_or_default(),
        status,
        reason_or_route: r,
    }
}

fn cases() -> Vec<Case> {
    let now = now();
    let ok = claims("moneywise-app", "accounts payments");
    let b = |t: String| Some(bearer(&t));
    let bal = "/accounts/22289/balances";
    let hs256 = {
        let input = signing_input(&json!({"alg": "HS256", "typ": "at+jwt", "kid": "as-es256"}), &ok);
        let public = key("as-es256").public_jwk("as-es256").to_string();
        format!("{input}.{}", base64url::encode(&hmac_sha256::HMAC::mac(input.as_bytes(), public.as_bytes())))
    };
    let forger = SigningKey::es256_from_bytes(&[9u8; 32]).unwrap();
    let mut v = vec![
        case("valid token", "GET", bal, b(token(&ok)), 200, "balances"),
        case("valid payment", "POST", "/domestic-payments", b(token(&ok)), 200, "domestic-payments-create"),
        case(
            "service account",
            "GET",
            "/internal/ledger/accounts/7",
            b(token(&claims("ledger-sync", "ledger:read"))),
            200,
            "ledger-account",
        ),
        case("no token", "GET", bal, None, 401, "token_missing"),
        case("malformed token", "GET", bal, b("not.a.jwt".into()), 401, "token_malformed"),
        case(
            "alg none",
            "GET",
            bal,
            b(format!("{}.", signing_input(&json!({"alg": "none", "typ": "at+jwt"}), &ok))),
            401,
            "alg_not_allowed",
        ),
        case("HS256 keyed with the public key", "GET", bal, b(hs256), 401, "alg_not_allowed"),
        case(
            "unknown kid",
            "GET",
            bal,
            b(header_token(json!({"alg": "ES256", "typ": "at+jwt", "kid": "old-2024"}), &ok)),
            401,
            "kid_unknown",
        ),
        case(
            "wrong iss",
            "GET",
            bal,
            b(token(&with(ok.clone(), "iss", json!("https://login.evil.example")))),
            401,
            "issuer_unknown",
        ),
        case(
            "wrong aud",
            "GET",
            bal,
            b(token(&with(ok.clone(), "aud", json!("https://api.bank.example/internal")))),
            401,
            "audience_invalid",
        ),
        case(
            "expired",
            "GET",
            bal,
            b(token(&with(with(ok.clone(), "iat", json!(now - 400)), "exp", json!(now - 100)))),
            401,
            "token_expired",
        ),
        case(
            "nbf in the future",
            "GET",
            bal,
            b(token(&with(ok.clone(), "nbf", json!(now + 120)))),
            401,
            "token_not_yet_valid",
        ),
        case(
            "iat in the future beyond skew",
            "GET",
            bal,
            b(token(&with(with(ok.clone(), "iat", json!(now + 120)), "exp", json!(now + 400)))),
            401,
            "token_issued_in_future",
        ),
        case(
            "lifetime above the route max",
            "GET",
            bal,
            b(token(&with(ok.clone(), "exp", json!(now + 86_400)))),
            401,
            "token_lifetime_too_long",
        ),
        case(
            "older than the route's max age",
            "POST",
            "/domestic-payments",
            b(token(&with(with(ok.clone(), "iat", json!(now - 200)), "exp", json!(now + 60)))),
            401,
            "token_too_old",
        ),
        case(
            "forged signature",
            "GET",
            bal,
            b(sign_jws(&json!({"alg": "ES256", "typ": "at+jwt", "kid": "as-es256"}), &ok, &forger)),
            401,
            "signature_invalid",
        ),
        case(
            "missing scope",
            "POST",
            "/domestic-payments",
            b(token(&claims("moneywise-app", "accounts"))),
            403,
            "scope_missing",
        ),
        case(
            "scope beyond the client's ceiling",
            "POST",
            "/domestic-payments",
            b(token(&claims("moneywise-insights", "accounts payments"))),
            403,
            "scope_beyond_ceiling",
        ),
        case("unknown client", "GET", bal, b(token(&claims("shadow-it-app", "accounts"))), 403, "client_unknown"),
        case("suspended client", "GET", bal, b(token(&claims("moneywise-beta", "accounts"))), 403, "client_inactive"),
        case("expired client", "GET", bal, b(token(&claims("moneywise-legacy", "accounts"))), 403, "client_expired"),
        case(
            "suspended partner",
            "GET",
            bal,
            b(token(&claims("budgetbuddy-app", "accounts"))),
            403,
            "partner_suspended",
        ),
        case(
            "offboarded partner",
            "GET",
            bal,
            b(token(&claims("quickloans-app", "accounts"))),
            403,
            "partner_offboarded",
        ),
        case(
            "partner contract ended",
            "GET",
            bal,
            b(token(&claims("oldbridge-app", "accounts"))),
            403,
            "partner_contract_ended",
        ),
        case(
            "partner app on an internal route",
            "GET",
            "/internal/ledger/accounts/7",
            b(token(&claims("moneywise-app", "ledger:read"))),
            403,
            "client_kind_not_allowed",
        ),
        case("token in the query string", "GET", "/accounts?access_token=abc", None, 400, "token_in_query"),
        case(
            "oversized token",
            "GET",
            bal,
            b(format!("{}.{}.{}", "a".repeat(3000), "b".repeat(2000), "c")),
            401,
            "token_too_large",
        ),
        case("basic auth", "GET", bal, Some("Basic bW9uZXl3aXNlOnNlY3JldA==".into()), 401, "auth_scheme_unsupported"),
        case("unmatched route", "GET", "/admin/users", b(token(&ok)), 403, "route_unmatched"),
        case("encoded slash", "GET", "/accounts/22289%2Fbalances", b(token(&ok)), 400, "path_ambiguous"),
        case("encoded backslash", "GET", "/accounts/22289%5Cbalances", b(token(&ok)), 400, "path_ambiguous"),
        case("matrix parameter", "GET", "/accounts/22289;x=1/balances", b(token(&ok)), 400, "path_ambiguous"),
        // Envoy normalises these first (normalize_path, merge_slashes); the filter decides on the
        // path the upstream will receive, so an accounts token cannot walk into payments.
        case(
            "dot-dot into payments",
            "GET",
            "/accounts/../domestic-payments/P-1",
            b(token(&claims("moneywise-insights", "accounts"))),
            403,
            "scope_missing",
        ),
        case(
            "encoded dot-dot into payments",
            "GET",
            "/accounts/%2e%2e/domestic-payments/P-1",
            b(token(&claims("moneywise-insights", "accounts"))),
            403,
            "scope_missing",
        ),
        case("double slash", "GET", "/accounts//22289/balances", b(token(&ok)), 200, "balances"),
    ];
    let t = token(&ok);
    v.push(Case {
        name: "two Authorization headers",
        method: "GET",
        path: bal,
        headers: vec![("authorization", bearer(&t)), ("authorization", bearer(&t))],
        status: 400,
        reason_or_route: "token_duplicated",
    });
    v
}

#[test]
fn machine_authority_decisions_in_envoy() {
    let envoy = Envoy::start(&example_policy());
    let mut failures = Vec::new();
    for c in cases() {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = envoy.send(c.method, c.path, &headers);
        let got = if r.status == 200 { r.upstream_header("x-nhi-route").unwrap_or_default() } else { r.reason() };
        if r.status != c.status || got != c.reason_or_route {
            failures.push(format!(
                "{}: expected {} {}, got {} {} ({})",
                c.name, c.status, c.reason_or_route, r.status, got, r.body
            ));
            continue;
        }
        // RFC 6750 challenges: bare when no credentials, error code otherwise, none for registry denials.
        let www = r.header("www-authenticate").unwrap_or("");
        let expected_www = match (c.status, c.reason_or_route) {
            (200, _) => "",
            (401, "token_missing" | "auth_scheme_unsupported") => "Bearer realm=\"bank-open-banking-api\"",
            (401, _) => "Bearer realm=\"bank-open-banking-api\", error=\"invalid_token\"",
            (403, "scope_missing" | "scope_beyond_ceiling") => {
                "Bearer realm=\"bank-open-banking-api\", error=\"insufficient_scope\""
            }
            (400, _) => "Bearer realm=\"bank-open-banking-api\", error=\"invalid_request\"",
            _ => "",
        };
        if !www.starts_with(expected_www) || (expected_www.is_empty() && !www.is_empty()) {
            failures.push(format!("{}: WWW-Authenticate {www:?}, expected to start with {expected_www:?}", c.name));
        }
        if c.status != 200 && r.json()["request_id"].as_str().unwrap_or("").is_empty() {
            failures.push(format!("{}: no request_id in {}", c.name, r.body));
        }
    }
    assert!(failures.is_empty(), "{}\n\nEnvoy log tail:\n{}", failures.join("\n"), tail(&envoy.log()));
}

fn tail(s: &str) -> String {
    s.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
}

#[test]
fn scope_challenge_names_the_route_scopes() {
    let envoy = Envoy::start(&example_policy());
    let r = envoy.send(
        "POST",
        "/domestic-payments",
        &[("authorization", &bearer(&token(&claims("moneywise-app", "accounts"))))],
    );
    assert_eq!(r.status, 403);
    assert!(r.header("www-authenticate").unwrap_or("").ends_with("scope=\"payments\""), "{:?}", r.headers);
    assert_eq!(r.json()["route"], "domestic-payments-create");
    assert_eq!(r.json()["error"], "insufficient_scope");
}

#[test]
fn upstream_sees_verified_identity_and_never_spoofed_headers() {
    let envoy = Envoy::start(&example_policy());
    let t = token(&with(claims("moneywise-app", "accounts payments"), "sub", json!("customer-8841")));
    let r = envoy.send(
        "GET",
        "/accounts/22289/balances",
        &[
            ("authorization", &bearer(&t)),
            ("x-nhi-client", "internal-admin"),
            ("X-NHI-Partner", "bank-itself"),
            ("x-nhi-scopes", "payments admin"),
            ("x-nhi-anything", "spoof"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_header("x-nhi-client").as_deref(), Some("moneywise-app"));
    assert_eq!(r.upstream_header("x-nhi-partner").as_deref(), Some("moneywise"));
    assert_eq!(r.upstream_header("x-nhi-route").as_deref(), Some("balances"));
    assert_eq!(r.upstream_header("x-nhi-scopes").as_deref(), Some("accounts"));
    assert_eq!(r.upstream_header("x-nhi-subject").as_deref(), Some("customer-8841"));
    assert_eq!(r.upstream_header("x-nhi-anything"), None, "unknown x-nhi-* headers are stripped too");
    // A service account has no partner: a spoofed partner header must not survive either.
    let r = envoy.send(
        "GET",
        "/internal/ledger/accounts/7",
        &[("authorization", &bearer(&token(&claims("ledger-sync", "ledger:read")))), ("x-nhi-partner", "moneywise")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_header("x-nhi-partner"), None);
    assert_eq!(r.upstream_header("x-nhi-client").as_deref(), Some("ledger-sync"));
}

#[test]
fn decisions_are_counted_and_denials_logged_without_tokens() {
    let envoy = Envoy::start(&example_policy());
    let good = token(&claims("moneywise-app", "accounts"));
    let offboarded = token(&claims("quickloans-app", "accounts"));
    for _ in 0..3 {
        assert_eq!(envoy.send("GET", "/accounts", &[("authorization", &bearer(&good))]).status, 200);
    }
    for _ in 0..2 {
        assert_eq!(envoy.send("GET", "/accounts", &[("authorization", &bearer(&offboarded))]).status, 403);
    }
    assert_eq!(envoy.send("GET", "/accounts", &[]).status, 401);
    assert_eq!(envoy.counter("nhi_guard.allowed"), 3);
    assert_eq!(envoy.counter("nhi_guard.token_cache_hits"), 2, "the repeated token is verified once");
    assert_eq!(envoy.counter("nhi_guard.denied"), 3);
    assert_eq!(envoy.counter("nhi_guard.denied.partner_offboarded"), 2);
    assert_eq!(envoy.counter("nhi_guard.denied.token_missing"), 1);
    assert_eq!(envoy.counter("nhi_guard.signature_backend_native"), 1, "Envoy offers verify_signature");
    let log = envoy.log_with("reason=partner_offboarded");
    let line = log
        .lines()
        .find(|l| l.contains("reason=partner_offboarded"))
        .unwrap_or_else(|| panic!("no denial line in:\n{log}"));
    assert!(
        line.contains("route=accounts") && line.contains("client=quickloans-app") && line.contains("request_id="),
        "{line}"
    );
    let signature = offboarded.rsplit('.').next().unwrap();
    assert!(!log.contains(signature) && !log.contains(&good), "a token reached the log");
}

#[test]
fn non_utf8_header_values_are_decided_not_crashed_on() {
    let envoy = Envoy::start(&example_policy());
    let good = bearer(&token(&claims("moneywise-app", "accounts")));
    let raw = |extra: &[u8], auth: &[u8]| {
        let mut r = b"GET /accounts HTTP/1.1\r\nhost: api\r\nconnection: close\r\n".to_vec();
        r.extend_from_slice(extra);
        r.extend_from_slice(b"authorization: ");
        r.extend_from_slice(auth);
        r.extend_from_slice(b"\r\n\r\n");
        http_bytes(envoy.port, &r).unwrap()
    };
    let r = raw(b"x-customer-note: caf\xe9 cr\xe8me\r\n", good.as_bytes());
    assert_eq!(r.status, 200, "an obs-text header elsewhere does not matter: {}", r.body);
    let r = raw(b"", b"Bearer \xff\xfe\xfd");
    assert_eq!((r.status, r.reason().as_str()), (401, "token_malformed"), "{}", r.body);
    // The worker's VM survived: the next request is still decided by the filter.
    assert_eq!(envoy.send("GET", "/accounts", &[("authorization", &good)]).status, 200);
    assert_eq!(envoy.send("GET", "/accounts", &[]).reason(), "token_missing");
}

#[test]
fn method_override_headers_are_refused() {
    let envoy = Envoy::start(&example_policy());
    let t = bearer(&token(&claims("moneywise-app", "accounts")));
    let plain = envoy.send("GET", "/accounts/22289/balances", &[("authorization", &t)]);
    assert_eq!(plain.status, 200, "{}", plain.body);
    for header in ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"] {
        let r = envoy.send("GET", "/accounts/22289/balances", &[("authorization", &t), (header, "DELETE")]);
        assert_eq!((r.status, r.reason().as_str()), (400, "method_override"), "{header}: {}", r.body);
        assert!(r.upstream_header("x-nhi-client").is_none(), "{header} reached the upstream");
    }
    assert_eq!(envoy.counter("nhi_guard.denied.method_override"), 3);
}
