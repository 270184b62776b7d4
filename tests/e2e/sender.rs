//! Sender-constrained tokens and workload identity through the real Envoy, over real TLS:
//! RFC 8705 certificate-bound tokens, pinned clients, SPIFFE workloads, and RFC 9449 DPoP.

use crate::harness::*;
use nhi_guard::engine::base64url;
use nhi_guard::tools::mint::{
    bind_to_certificate, bind_to_dpop_key, dpop_jwk, dpop_proof, sign_jws, signing_input, SigningKey,
};
use serde_json::{json, Value};

const VRP: &str = "/domestic-vrps";
const VRP_URL: &str = "https://api.bank.example/domestic-vrps";
const BATCH_SPIFFE: &str = "spiffe://bank.internal/ns/statements/sa/statements-batch";

fn outcome(r: &Response) -> String {
    if r.status == 200 {
        format!("200 {}", r.upstream_header("x-nhi-auth").unwrap_or_default())
    } else {
        format!("{} {}", r.status, r.reason())
    }
}

/// A payments token of moneywise-app bound to its client certificate.
fn mtls_bound_token() -> String {
    token(&bind_to_certificate(claims("moneywise-app", "payments"), &cert_sha256("moneywise-app")))
}

#[test]
fn certificate_bound_tokens_need_their_certificate() {
    let envoy = Envoy::start(&example_policy());
    let t = mtls_bound_token();
    let auth = bearer(&t);
    // Its own certificate: allowed, and spoofed identity headers do not survive.
    let spoofed = [("authorization", auth.as_str()), ("x-nhi-auth", "workload"), ("x-nhi-spiffe-id", BATCH_SPIFFE)];
    let r = envoy.send_tls("POST", VRP, &spoofed, Some("moneywise-app")).unwrap();
    assert_eq!(outcome(&r), "200 mtls-bound", "{}", r.body);
    assert_eq!(r.upstream_header("x-nhi-client").as_deref(), Some("moneywise-app"));
    assert_eq!(r.upstream_header("x-nhi-spiffe-id"), None, "its URI SAN is not a SPIFFE ID; the spoofed one is gone");
    // Another partner app's certificate.
    let r = envoy.send_tls("POST", VRP, &[("authorization", &auth)], Some("moneywise-insights")).unwrap();
    assert_eq!(outcome(&r), "401 certificate_binding_mismatch", "{}", r.body);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer realm=\"bank-open-banking-api\", error=\"invalid_token\""), "{challenge}");
    // No client certificate: the mTLS listener refuses the handshake; nothing reaches the filter.
    let refused = envoy.send_tls("POST", VRP, &[("authorization", &auth)], None);
    assert!(refused.is_err(), "a TLS connection without a client certificate got an HTTP answer: {refused:?}");
    // The plaintext listener: no certificate to match.
    let r = envoy.send("POST", VRP, &[("authorization", &auth)]);
    assert_eq!(outcome(&r), "401 certificate_binding_missing", "{}", r.body);
    // An unbound bearer token on the sender-constrained route, even over mTLS.
    let plain = bearer(&token(&claims("moneywise-app", "payments")));
    let r = envoy.send_tls("POST", VRP, &[("authorization", &plain)], Some("moneywise-app")).unwrap();
    assert_eq!(outcome(&r), "401 sender_constraint_required", "{}", r.body);
    // Routes without the requirement still take bearer tokens, on either listener.
    let accounts = bearer(&token(&claims("moneywise-app", "accounts")));
    let r = envoy.send_tls("GET", "/accounts/22289/balances", &[("authorization", &accounts)], Some("moneywise-app"));
    assert_eq!(outcome(&r.unwrap()), "200 bearer");
    assert!(envoy.counter("nhi_guard.denied.certificate_binding_mismatch") >= 1);
}

#[test]
fn pinned_clients_and_spiffe_workloads() {
    let mut doc: Value = serde_json::from_str(&example_policy()).unwrap();
    let clients = doc["clients"].as_array_mut().unwrap();
    let app = clients.iter_mut().find(|c| c["id"] == "moneywise-app").unwrap();
    app["certificate_thumbprints"] = json!([base64url::encode(&cert_sha256("moneywise-app"))]);
    let envoy = Envoy::start(&doc.to_string());
    let accounts = bearer(&token(&claims("moneywise-app", "accounts")));
    let balances =
        |cert| envoy.send_tls("GET", "/accounts/22289/balances", &[("authorization", &accounts)], Some(cert));
    assert_eq!(outcome(&balances("moneywise-app").unwrap()), "200 bearer", "pinned client over its own certificate");
    // Client A's token over B's certificate: NHI reuse.
    assert_eq!(outcome(&balances("moneywise-insights").unwrap()), "401 client_credential_mismatch");
    let r = envoy.send("GET", "/accounts/22289/balances", &[("authorization", &accounts)]);
    assert_eq!(outcome(&r), "401 client_credential_mismatch", "pinned client without mTLS");

    // A registered workload on its SPIFFE ID alone.
    let r = envoy.send_tls("POST", "/internal/statements/runs", &[], Some("statements-batch")).unwrap();
    assert_eq!(outcome(&r), "200 workload", "{}", r.body);
    assert_eq!(r.upstream_header("x-nhi-client").as_deref(), Some("statements-batch"));
    assert_eq!(r.upstream_header("x-nhi-spiffe-id").as_deref(), Some(BATCH_SPIFFE));
    // An unknown SPIFFE ID; and a known one on a route that does not take workload identity.
    let r = envoy.send_tls("POST", "/internal/statements/runs", &[], Some("unknown-workload")).unwrap();
    assert_eq!(outcome(&r), "401 workload_unknown");
    let r = envoy.send_tls("GET", "/internal/ledger/accounts/7", &[], Some("statements-batch")).unwrap();
    assert_eq!(outcome(&r), "401 token_missing");
    // The pinned workload's own token is accepted only over its certificate.
    let batch = bearer(&token(&claims("statements-batch", "statements:generate")));
    let r = envoy.send_tls("POST", "/internal/statements/runs", &[("authorization", &batch)], Some("statements-batch"));
    assert_eq!(outcome(&r.unwrap()), "200 bearer");
    let r = envoy.send_tls("POST", "/internal/statements/runs", &[("authorization", &batch)], Some("unknown-workload"));
    assert_eq!(outcome(&r.unwrap()), "401 client_credential_mismatch");

    // An expired workload registration.
    let batch_doc = doc["clients"].as_array_mut().unwrap().iter_mut().find(|c| c["id"] == "statements-batch").unwrap();
    batch_doc["expires"] = json!("2026-01-01T00:00:00Z");
    let expired = Envoy::start(&doc.to_string());
    let r = expired.send_tls("POST", "/internal/statements/runs", &[], Some("statements-batch")).unwrap();
    assert_eq!(outcome(&r), "403 client_expired");
    let audit = expired.log_with("reason=client_expired");
    assert!(audit.contains("reason=client_expired"), "{audit}");
}

#[test]
fn dpop_proofs_are_checked_end_to_end() {
    let envoy = Envoy::start(&example_policy());
    let key = SigningKey::es256_from_bytes(&[41u8; 32]).unwrap();
    let other = SigningKey::es256_from_bytes(&[42u8; 32]).unwrap();
    let t = token(&bind_to_dpop_key(claims("moneywise-app", "payments"), &key));
    let unbound = token(&claims("moneywise-app", "payments"));
    let scheme = format!("DPoP {t}");
    let n = now();
    let proof = |k: &SigningKey, method: &str, url: &str, tok: &str, iat: i64, jti: &str| {
        dpop_proof(k, method, url, tok, iat, jti)
    };
    let send = |auth: &str, proofs: &[&str], extra: &[(&str, &str)]| {
        let mut h: Vec<(&str, &str)> = vec![("authorization", auth)];
        h.extend(proofs.iter().map(|p| ("dpop", *p)));
        h.extend_from_slice(extra);
        envoy.send("POST", VRP, &h)
    };
    let valid = proof(&key, "POST", VRP_URL, &t, n, "e2e-1");
    let r = send(&scheme, &[&valid], &[]);
    assert_eq!(outcome(&r), "200 dpop", "{}", r.body);
    // Replaying the exact proof.
    let r = send(&scheme, &[&valid], &[]);
    assert_eq!(outcome(&r), "401 dpop_replayed");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(
            "DPoP realm=\"bank-open-banking-api\", algs=\"ES256 EdDSA Ed25519 PS256\", error=\"invalid_dpop_proof\""
        ),
        "{challenge}"
    );
    let private_jwk = {
        let mut jwk = dpop_jwk(&key);
        jwk["d"] = json!("c2VjcmV0");
        let c = json!({"jti": "e2e-p", "htm": "POST", "htu": VRP_URL, "iat": n, "ath": "x"});
        sign_jws(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}), &c, &key)
    };
    let hs256 = {
        let input = signing_input(
            &json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "a2V5"}}),
            &json!({"jti": "e2e-h", "htm": "POST", "htu": VRP_URL, "iat": n}),
        );
        format!("{input}.{}", base64url::encode(&[0u8; 32]))
    };
    // (what, Authorization, DPoP headers, extra headers, expected outcome)
    type Case<'a> = (&'a str, String, Vec<String>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "wrong htm",
            scheme.clone(),
            vec![proof(&key, "GET", VRP_URL, &t, n, "e2e-2")],
            vec![],
            "401 dpop_htm_mismatch",
        ),
        (
            "htu of another host, even when the client sends forwarding headers naming it",
            scheme.clone(),
            vec![proof(&key, "POST", "https://evil.example/domestic-vrps", &t, n, "e2e-3")],
            vec![("x-forwarded-host", "evil.example"), ("x-forwarded-proto", "https")],
            "401 dpop_htu_mismatch",
        ),
        (
            "stale iat",
            scheme.clone(),
            vec![proof(&key, "POST", VRP_URL, &t, n - 120, "e2e-4")],
            vec![],
            "401 dpop_iat_invalid",
        ),
        (
            "ath of another token",
            scheme.clone(),
            vec![proof(&key, "POST", VRP_URL, &unbound, n, "e2e-5")],
            vec![],
            "401 dpop_ath_mismatch",
        ),
        (
            "proof by a key the token is not bound to",
            scheme.clone(),
            vec![proof(&other, "POST", VRP_URL, &t, n, "e2e-6")],
            vec![],
            "401 dpop_key_mismatch",
        ),
        ("private key in the proof's jwk", scheme.clone(), vec![private_jwk], vec![], "401 dpop_jwk_invalid"),
        (
            "two DPoP headers",
            scheme.clone(),
            vec![proof(&key, "POST", VRP_URL, &t, n, "e2e-7"), proof(&key, "POST", VRP_URL, &t, n, "e2e-8")],
            vec![],
            "401 dpop_proof_duplicated",
        ),
        ("HS256 proof", scheme.clone(), vec![hs256], vec![], "401 dpop_alg_not_allowed"),
        (
            "bound token presented as Bearer",
            bearer(&t),
            vec![proof(&key, "POST", VRP_URL, &t, n, "e2e-9")],
            vec![],
            "401 dpop_downgrade",
        ),
        ("no proof", scheme.clone(), vec![], vec![], "401 dpop_proof_missing"),
    ];
    for (name, auth, proofs, extra, want) in &cases {
        let p: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let r = send(auth, &p, extra);
        assert_eq!(outcome(&r), *want, "{name}: {}", r.body);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("DPoP realm="), "{name}: {challenge}");
    }
    // A fresh proof still works after all that; DPoP over the mTLS listener works too.
    let r = send(&scheme, &[&proof(&key, "POST", VRP_URL, &t, now(), "e2e-10")], &[]);
    assert_eq!(outcome(&r), "200 dpop");
    let p = proof(&key, "POST", VRP_URL, &t, now(), "e2e-11");
    let r = envoy.send_tls("POST", VRP, &[("authorization", &scheme), ("dpop", &p)], Some("moneywise-app")).unwrap();
    assert_eq!(outcome(&r), "200 dpop");
    assert!(envoy.counter("nhi_guard.denied.dpop_replayed") >= 1);
}

#[test]
fn a_dpop_proof_is_accepted_once_across_workers() {
    // Two workers: connections spread over both, and the replay cache must be shared between them.
    let envoy = Envoy::start_workers(&example_policy(), 2);
    let key = SigningKey::es256_from_bytes(&[43u8; 32]).unwrap();
    let t = token(&bind_to_dpop_key(claims("moneywise-app", "payments"), &key));
    let scheme = format!("DPoP {t}");
    let proof = dpop_proof(&key, "POST", VRP_URL, &t, now(), "e2e-workers-1");
    let mut outcomes = Vec::new();
    for _ in 0..24 {
        outcomes.push(outcome(&envoy.send("POST", VRP, &[("authorization", &scheme), ("dpop", &proof)])));
    }
    let listener = format!("listener.127.0.0.1_{}", envoy.port);
    let per_worker: Vec<u64> =
        (0..2).map(|w| envoy.stat(&format!("{listener}.worker_{w}.downstream_cx_total"))).collect();
    println!("one DPoP proof on 24 connections over workers {per_worker:?}: {outcomes:?}");
    assert!(per_worker.iter().all(|n| *n > 0), "both workers must have served: {per_worker:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "200 dpop").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "401 dpop_replayed").count(), 23, "{outcomes:?}");
}
