//! Sender constraint: certificate-bound and DPoP-bound tokens, pinned clients, workload identity.

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

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
            "DPoP realm=\"bank-open-banking-api\", algs=\"ES256 EdDSA Ed25519 PS256\", error=\"invalid_dpop_proof\""
        ),
        "{challenge}"
    );
    assert_eq!(r.status, 401);
}

const NONCE_KEY: &str = "a-nonce-key-of-more-than-thirty-two-bytes";
const OLD_NONCE_KEY: &str = "the-previous-nonce-key-also-over-32-bytes";

/// The example policy with DPoP nonces configured (keys from `NHI_GUARD_DPOP_NONCE_KEY`),
/// required on the VRP route only.
fn nonce_policy(keys: &str) -> Engine {
    let mut doc: serde_json::Value = serde_json::from_str(crate::engine::testkit::POLICY_JSON).unwrap();
    doc["sender_constraint"]["dpop"]["nonce"] = json!({"key_env": "NHI_GUARD_DPOP_NONCE_KEY", "window_seconds": 60});
    // These tests move the clock by minutes; the feed they saw once would go stale.
    doc.as_object_mut().unwrap().remove("revocation");
    let routes = doc["routes"].as_array_mut().unwrap();
    let vrp = routes.iter_mut().find(|r| r["id"] == "domestic-vrps-create").unwrap();
    vrp["require_dpop_nonce"] = json!(true);
    let keys = keys.to_string();
    crate::engine::testkit::engine_for_env(&doc.to_string(), &move |name| {
        (name == "NHI_GUARD_DPOP_NONCE_KEY").then(|| keys.clone())
    })
}

/// One DPoP request on the VRP route: the next nonce an allowed response carries, or the denial.
fn vrp_with_proof(
    e: &mut Engine,
    token: &str,
    proof: &str,
    now: i64,
) -> Result<Option<String>, (Reason, DenyResponse)> {
    let auth = [format!("DPoP {token}")];
    let a: Vec<&[u8]> = auth.iter().map(|s| s.as_bytes()).collect();
    let dpop = [proof.as_bytes()];
    let facts = RequestFacts { authorization: &a, dpop: &dpop, ..RequestFacts::new("POST", VRP, now) };
    match e.decide(&facts) {
        Decision::Allow(allow) => Ok(allow.dpop_nonce),
        Decision::Deny(d) => Err((d.reason, d.response("r"))),
    }
}

/// RFC 9449 §9: a route that requires nonces answers `use_dpop_nonce` with exactly one
/// `DPoP-Nonce`, accepts the nonce it handed out (on any engine with the same key), and hands the
/// next one on a success once rotation is due.
#[test]
fn dpop_nonces_are_required_where_configured_and_rotate() {
    use crate::tools::mint::{bind_to_dpop_key, dpop_proof_with_nonce};
    let mut e = nonce_policy(NONCE_KEY);
    let t = token(&bind_to_dpop_key(claims("moneywise-app", "payments"), &dpop_key()));
    let proof = |token: &str, at: i64, jti: &str, nonce: &str| {
        dpop_proof_with_nonce(&dpop_key(), VRP_URL, token, at, jti, nonce)
    };
    // No nonce: 401 use_dpop_nonce with exactly one non-empty DPoP-Nonce.
    let no_nonce = crate::tools::mint::dpop_proof(&dpop_key(), "POST", VRP_URL, &t, NOW, "n1");
    let (reason, response) = vrp_with_proof(&mut e, &t, &no_nonce, NOW).unwrap_err();
    assert_eq!(reason, Reason::DpopNonceMissing);
    assert_eq!(response.status, 401);
    let nonces: Vec<&String> = response.headers.iter().filter(|(k, _)| *k == "dpop-nonce").map(|(_, v)| v).collect();
    assert_eq!(nonces.len(), 1, "{:?}", response.headers);
    let nonce = nonces[0].clone();
    assert!(!nonce.is_empty());
    let challenge = response.headers.iter().find(|(k, _)| *k == "www-authenticate").unwrap().1.clone();
    assert!(
        challenge.starts_with(
            "DPoP realm=\"bank-open-banking-api\", algs=\"ES256 EdDSA Ed25519 PS256\", error=\"use_dpop_nonce\""
        ),
        "{challenge}"
    );
    // With it: allowed, nothing to renew; another Envoy with the same key accepts it too (no shared state).
    assert_eq!(vrp_with_proof(&mut e, &t, &proof(&t, NOW, "n2", &nonce), NOW), Ok(None));
    assert_eq!(vrp_with_proof(&mut nonce_policy(NONCE_KEY), &t, &proof(&t, NOW, "n3", &nonce), NOW), Ok(None));
    // In the next window the nonce still works, and the response carries the next one.
    let later = NOW + 60;
    let next = vrp_with_proof(&mut e, &t, &proof(&t, later, "n4", &nonce), later).unwrap().expect("rotation due");
    assert_ne!(next, nonce);
    assert_eq!(vrp_with_proof(&mut e, &t, &proof(&t, later, "n5", &next), later), Ok(None));
    // Two windows on it is expired (with a token still valid then); another key's is foreign; garbage is refused.
    let much_later = NOW + 180;
    let mut fresh_claims = bind_to_dpop_key(claims("moneywise-app", "payments"), &dpop_key());
    fresh_claims["iat"] = json!(much_later);
    fresh_claims["exp"] = json!(much_later + 300);
    let t_later = token(&fresh_claims);
    let expired = vrp_with_proof(&mut e, &t_later, &proof(&t_later, much_later, "n6", &nonce), much_later);
    assert_eq!(expired.map_err(|e| e.0), Err(Reason::DpopNonceInvalid));
    let foreign_nonce = crate::engine::dpop_nonce::NonceKeys::parse(OLD_NONCE_KEY, 60).unwrap().mint(NOW);
    let (reason, response) = vrp_with_proof(&mut e, &t, &proof(&t, NOW, "n7", &foreign_nonce), NOW).unwrap_err();
    assert_eq!(reason, Reason::DpopNonceInvalid);
    assert_eq!(response.headers.iter().filter(|(k, _)| *k == "dpop-nonce").count(), 1);
    let garbage = vrp_with_proof(&mut e, &t, &proof(&t, NOW, "n8", "\"><script>"), NOW);
    assert_eq!(garbage.map_err(|e| e.0), Err(Reason::DpopNonceInvalid));
    // Key rotation: with the new key first and the old one kept, old nonces work and get renewed.
    let mut rolled = nonce_policy(&format!("{OLD_NONCE_KEY},{NONCE_KEY}"));
    assert_eq!(vrp_with_proof(&mut rolled, &t, &proof(&t, NOW, "n9", &nonce), NOW), Ok(Some(foreign_nonce)));
}

#[test]
fn nonces_do_not_load_without_a_key_and_only_apply_where_required() {
    let mut doc: serde_json::Value = serde_json::from_str(crate::engine::testkit::POLICY_JSON).unwrap();
    let vrp = doc["routes"].as_array_mut().unwrap().iter_mut().find(|r| r["id"] == "domestic-vrps-create").unwrap();
    vrp["require_dpop_nonce"] = json!(true);
    let err = crate::engine::policy::load(&doc.to_string(), "p.json").unwrap_err().to_string();
    assert!(err.contains("routes[") && err.contains("require_dpop_nonce: needs sender_constraint.dpop.nonce"), "{err}");
    doc["sender_constraint"]["dpop"]["nonce"] = json!({"key_env": "NHI_GUARD_DPOP_NONCE_KEY"});
    let err = crate::engine::policy::load(&doc.to_string(), "p.json").unwrap_err().to_string();
    assert!(err.contains("sender_constraint.dpop.nonce.key_env: NHI_GUARD_DPOP_NONCE_KEY is not set"), "{err}");
    let short = |_: &str| Some("too-short".to_string());
    let err = crate::engine::policy::load_with_env(&doc.to_string(), "p.json", &short).unwrap_err().to_string();
    assert!(err.contains("shorter than 32 bytes"), "{err}");
    doc["sender_constraint"]["dpop"]["nonce"]["window_seconds"] = json!(5);
    let err = crate::engine::policy::load_with_env(&doc.to_string(), "p.json", &|_| Some(NONCE_KEY.into()));
    assert!(err.unwrap_err().to_string().contains("window_seconds: is 5"));
    // A route without the flag takes proofs without nonces.
    let mut e = nonce_policy(NONCE_KEY);
    let t = token(&crate::tools::mint::bind_to_dpop_key(claims("moneywise-app", "payments"), &dpop_key()));
    let url = "https://api.bank.example/domestic-payments";
    let p = crate::tools::mint::dpop_proof(&dpop_key(), "POST", url, &t, NOW, "x1");
    let s =
        Sent { method: "POST", path: "/domestic-payments", auth: vec![format!("DPoP {t}")], dpop: vec![p], peer: None };
    assert_eq!(send(&mut e, &s).map(|(_, auth)| auth), Ok("dpop"));
}

/// RFC 9864: `Ed25519` is accepted wherever `EdDSA` is — access tokens, DPoP proofs, JWKS keys —
/// and the two names verify the same way.
#[test]
fn ed25519_is_the_same_algorithm_under_either_name() {
    use crate::tools::mint::{bind_to_dpop_key, dpop_proof_claims, dpop_proof_header};
    let mut e = engine();
    let key = crate::engine::testkit::eddsa();
    let mut tokens = Vec::new();
    for name in ["EdDSA", "Ed25519"] {
        // The example issuer's Ed25519 key is published with `alg: EdDSA` and its allowlist says Ed25519.
        let kid = "as-eddsa";
        let t =
            sign_jws(&json!({"alg": name, "typ": "at+jwt", "kid": kid}), &claims("moneywise-app", "accounts"), &key);
        assert_eq!(decide(&mut e, "GET", "/accounts", &[&bearer(&t)]), Ok("accounts".to_string()), "token alg {name}");
        tokens.push(t);
    }
    let dpop_key = crate::engine::testkit::eddsa();
    let t = token(&bind_to_dpop_key(claims("moneywise-app", "payments"), &dpop_key));
    for (i, name) in ["EdDSA", "Ed25519"].iter().enumerate() {
        let mut header = dpop_proof_header(&dpop_key);
        header["alg"] = json!(name);
        let proof = sign_jws(&header, &dpop_proof_claims("POST", VRP_URL, &t, NOW, &format!("ed-{i}")), &dpop_key);
        let s = Sent { method: "POST", path: VRP, auth: vec![format!("DPoP {t}")], dpop: vec![proof], peer: None };
        assert_eq!(send(&mut e, &s).map(|(_, auth)| auth), Ok("dpop"), "proof alg {name}");
    }
    // A policy that lists only the new name still takes the old one (same verification).
    let mut doc: serde_json::Value = serde_json::from_str(crate::engine::testkit::POLICY_JSON).unwrap();
    doc["sender_constraint"]["dpop"]["algorithms"] = json!(["Ed25519"]);
    let p = crate::engine::policy::load(&doc.to_string(), "p").unwrap();
    assert_eq!(p.dpop.as_ref().map(|d| d.algs_challenge.as_str()), Some("EdDSA Ed25519"));
    // ES256 proofs are then refused.
    let mut e = engine_for(&doc.to_string());
    let es = crate::tools::mint::dpop_proof(&self::dpop_key(), "POST", VRP_URL, &t, NOW, "es");
    let s = Sent { method: "POST", path: VRP, auth: vec![format!("DPoP {t}")], dpop: vec![es], peer: None };
    assert_eq!(send(&mut e, &s), Err(Reason::DpopAlgNotAllowed));
}

/// This file's tests, for the coverage test in mod.rs (which runs them again on its own thread).
pub(super) const TESTS: &[fn()] = &[
    sender_constrained_tokens_and_workload_identity,
    dpop_denials_challenge_with_the_dpop_scheme,
    dpop_nonces_are_required_where_configured_and_rotate,
    nonces_do_not_load_without_a_key_and_only_apply_where_required,
    ed25519_is_the_same_algorithm_under_either_name,
];
