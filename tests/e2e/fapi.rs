//! The OpenID FAPI 2.0 conformance suite's resource-server DPoP cases, each through the real
//! Envoy, plus DPoP server nonces across a fleet of two Envoys that share nothing but the key.

use crate::harness::*;
use nhi_guard::engine::base64url;
use nhi_guard::tools::envoy_config::PluginSettings;
use nhi_guard::tools::mint::{
    bind_to_dpop_key, dpop_jwk, dpop_proof, dpop_proof_claims, dpop_proof_header, dpop_proof_with_nonce, sign_jws,
    signing_input, SigningKey,
};
use serde_json::{json, Value};

const VRP: &str = "/domestic-vrps";
const VRP_URL: &str = "https://api.bank.example/domestic-vrps";
const NONCE_ENV: &str = "NHI_GUARD_DPOP_NONCE_KEY";
const KEY_A: &str = "fleet-nonce-key-a-0123456789abcdefghijklmnop";
/// An hour: the test's few seconds never straddle two windows, so "nothing to renew" holds on any machine.
const NONCE_WINDOW: i64 = 3600;
const KEY_B: &str = "fleet-nonce-key-b-0123456789abcdefghijklmnop";

fn outcome(r: &Response) -> String {
    if r.status == 200 {
        format!("200 {}", r.upstream_header("x-nhi-auth").unwrap_or_default())
    } else {
        format!("{} {}", r.status, r.reason())
    }
}

/// A proof built from the standard header and claims, changed by `edit` before signing.
fn proof_with(key: &SigningKey, token: &str, jti: &str, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
    let (mut header, mut claims) = (dpop_proof_header(key), dpop_proof_claims("POST", VRP_URL, token, now(), jti));
    edit(&mut header, &mut claims);
    sign_jws(&header, &claims, key)
}

#[test]
fn the_conformance_suites_resource_server_dpop_cases() {
    let envoy = Envoy::start(&example_policy());
    let key = SigningKey::es256_from_bytes(&[71u8; 32]).unwrap();
    let other = SigningKey::es256_from_bytes(&[72u8; 32]).unwrap();
    let t = token(&bind_to_dpop_key(claims("moneywise-app", "payments"), &key));
    let n = now();
    let jti = std::cell::Cell::new(0u32);
    let next_jti = || {
        jti.set(jti.get() + 1);
        format!("fapi-{}", jti.get())
    };
    let std_proof = |edit: &dyn Fn(&mut Value, &mut Value)| proof_with(&key, &t, &next_jti(), |h, c| edit(h, c));
    let remove = |member: &'static str, in_header: bool| {
        move |h: &mut Value, c: &mut Value| {
            let target = if in_header { h } else { c };
            target.as_object_mut().unwrap().remove(member);
        }
    };
    let auth = format!("DPoP {t}");
    let send = |auth: &str, proofs: &[&str], header_name: &str, path: &str| {
        let mut h: Vec<(&str, &str)> = vec![("authorization", auth)];
        h.extend(proofs.iter().map(|p| (header_name, *p)));
        envoy.send("POST", path, &h)
    };
    let bad_signature = {
        let p = std_proof(&|_, _| {});
        let (input, _) = p.rsplit_once('.').unwrap();
        format!("{input}.{}", base64url::encode(&[7u8; 64]))
    };
    let symmetric = {
        let input = signing_input(
            &json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "a2V5"}}),
            &dpop_proof_claims("POST", VRP_URL, &t, n, "fapi-hs"),
        );
        format!("{input}.{}", base64url::encode(&[0u8; 32]))
    };
    let alg_none = {
        let input = signing_input(
            &json!({"typ": "dpop+jwt", "alg": "none", "jwk": dpop_jwk(&key)}),
            &dpop_proof_claims("POST", VRP_URL, &t, n, "fapi-none"),
        );
        format!("{input}.")
    };
    let replayed = std_proof(&|_, _| {});
    assert_eq!(outcome(&send(&auth, &[&replayed], "dpop", VRP)), "200 dpop", "the proof to replay");

    // (case, Authorization, proofs, DPoP header name, expected)
    let must_fail: Vec<(&str, String, Vec<String>, &str)> = vec![
        (
            "two DPoP headers",
            auth.clone(),
            vec![std_proof(&|_, _| {}), std_proof(&|_, _| {})],
            "401 dpop_proof_duplicated",
        ),
        ("a malformed proof", auth.clone(), vec!["not-a-jws".into()], "401 dpop_proof_malformed"),
        ("missing typ", auth.clone(), vec![std_proof(&remove("typ", true))], "401 dpop_proof_malformed"),
        ("missing alg", auth.clone(), vec![std_proof(&remove("alg", true))], "401 dpop_proof_malformed"),
        ("missing jwk", auth.clone(), vec![std_proof(&remove("jwk", true))], "401 dpop_jwk_invalid"),
        ("missing jti", auth.clone(), vec![std_proof(&remove("jti", false))], "401 dpop_proof_malformed"),
        ("missing htm", auth.clone(), vec![std_proof(&remove("htm", false))], "401 dpop_proof_malformed"),
        ("missing htu", auth.clone(), vec![std_proof(&remove("htu", false))], "401 dpop_proof_malformed"),
        ("missing iat", auth.clone(), vec![std_proof(&remove("iat", false))], "401 dpop_proof_malformed"),
        ("typ JWT", auth.clone(), vec![std_proof(&|h, _| h["typ"] = json!("JWT"))], "401 dpop_proof_malformed"),
        ("a symmetric alg", auth.clone(), vec![symmetric], "401 dpop_alg_not_allowed"),
        ("alg none", auth.clone(), vec![alg_none], "401 dpop_alg_not_allowed"),
        ("a bad signature", auth.clone(), vec![bad_signature], "401 dpop_signature_invalid"),
        (
            "a private key in jwk",
            auth.clone(),
            vec![std_proof(&|h, _| h["jwk"]["d"] = json!("c2VjcmV0"))],
            "401 dpop_jwk_invalid",
        ),
        (
            "htm of another method",
            auth.clone(),
            vec![std_proof(&|_, c| c["htm"] = json!("GET"))],
            "401 dpop_htm_mismatch",
        ),
        (
            "htu of another URL",
            auth.clone(),
            vec![std_proof(&|_, c| c["htu"] = json!("https://api.bank.example/domestic-payments"))],
            "401 dpop_htu_mismatch",
        ),
        (
            "iat an hour before",
            auth.clone(),
            vec![std_proof(&|_, c| c["iat"] = json!(n - 3600))],
            "401 dpop_iat_invalid",
        ),
        (
            "iat an hour after",
            auth.clone(),
            vec![std_proof(&|_, c| c["iat"] = json!(n + 3600))],
            "401 dpop_iat_invalid",
        ),
        ("a reused jti", auth.clone(), vec![replayed.clone()], "401 dpop_replayed"),
        ("a wrong ath", auth.clone(), vec![std_proof(&|_, c| c["ath"] = json!("d3Jvbmc"))], "401 dpop_ath_mismatch"),
        (
            "signed by a key other than cnf.jkt",
            auth.clone(),
            vec![proof_with(&other, &t, "fapi-other", |_, _| {})],
            "401 dpop_key_mismatch",
        ),
        ("no proof", auth.clone(), vec![], "401 dpop_proof_missing"),
        ("the scheme downgraded to Bearer", bearer(&t), vec![std_proof(&|_, _| {})], "401 dpop_downgrade"),
    ];
    for (case, auth, proofs, want) in &must_fail {
        let p: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let r = send(auth, &p, "dpop", VRP);
        assert_eq!(outcome(&r), *want, "must fail: {case}: {}", r.body);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("DPoP realm=\"bank-open-banking-api\", algs=\""), "{case}: {challenge}");
        assert!(r.header("dpop-nonce").is_none(), "{case}: no nonce without nonces configured");
    }

    let must_succeed: Vec<(&str, String, String, &str)> = vec![
        ("the DPoP header name in capitals", auth.clone(), std_proof(&|_, _| {}), "DPOP"),
        ("htu with a query", auth.clone(), std_proof(&|_, c| c["htu"] = json!(format!("{VRP_URL}?a=b"))), "dpop"),
        ("htu with a fragment", auth.clone(), std_proof(&|_, c| c["htu"] = json!(format!("{VRP_URL}#top"))), "dpop"),
        (
            "extra header members and claims",
            auth.clone(),
            std_proof(&|h, c| {
                h["x-extra"] = json!("yes");
                h["kid"] = json!("ignored");
                c["extra"] = json!({"nested": [1, 2]});
            }),
            "dpop",
        ),
        (
            "htu with an upper-case scheme and host",
            auth.clone(),
            std_proof(&|_, c| c["htu"] = json!("HTTPS://API.BANK.EXAMPLE/domestic-vrps")),
            "dpop",
        ),
        (
            "htu with the explicit default port",
            auth.clone(),
            std_proof(&|_, c| c["htu"] = json!("https://api.bank.example:443/domestic-vrps")),
            "dpop",
        ),
        ("iat 10 s before", auth.clone(), std_proof(&|_, c| c["iat"] = json!(now() - 10)), "dpop"),
        ("iat 10 s after", auth.clone(), std_proof(&|_, c| c["iat"] = json!(now() + 10)), "dpop"),
        ("the auth scheme in lower case", format!("dpop {t}"), std_proof(&|_, _| {}), "dpop"),
        ("the auth scheme in capitals", format!("DPOP {t}"), std_proof(&|_, _| {}), "dpop"),
    ];
    for (case, auth, proof, header_name) in &must_succeed {
        let r = send(auth, &[proof], header_name, VRP);
        assert_eq!(outcome(&r), "200 dpop", "must succeed: {case}: {}", r.body);
    }

    // Ed25519 keys under RFC 9864's name.
    let ed = SigningKey::eddsa_from_seed(&[73u8; 32]);
    let ed_token = token(&bind_to_dpop_key(claims("moneywise-app", "payments"), &ed));
    let ed_proof = proof_with(&ed, &ed_token, "fapi-ed", |h, _| h["alg"] = json!("Ed25519"));
    assert_eq!(outcome(&send(&format!("DPoP {ed_token}"), &[&ed_proof], "dpop", VRP)), "200 dpop", "alg Ed25519");

    // A token in the query is refused, whatever else the request has.
    let r = send(&auth, &[&std_proof(&|_, _| {})], "dpop", &format!("{VRP}?access_token={t}"));
    assert_eq!(outcome(&r), "400 token_in_query");

    // The interaction id comes back: the client's own, or a fresh UUID.
    let id = "2f6c0a5e-4bd1-4c55-9a3f-6f0c2b1d7e90";
    let r = envoy.send(
        "POST",
        VRP,
        &[("authorization", &auth), ("dpop", &std_proof(&|_, _| {})), ("x-fapi-interaction-id", id)],
    );
    assert_eq!(outcome(&r), "200 dpop");
    assert_eq!(r.header("x-fapi-interaction-id"), Some(id));
    let r = send(&auth, &[], "dpop", VRP);
    let fresh = r.header("x-fapi-interaction-id").unwrap_or_default();
    assert!(nhi_guard::engine::audit::is_uuid(fresh.as_bytes()), "a UUID: {fresh:?}");
}

/// The example policy with nonces required on every route, keys from `NONCE_ENV`.
fn nonce_policy() -> String {
    let mut doc: Value = serde_json::from_str(&example_policy()).unwrap();
    doc["sender_constraint"]["dpop"]["nonce"] =
        json!({"key_env": NONCE_ENV, "window_seconds": NONCE_WINDOW, "required_on_all_routes": true});
    doc.to_string()
}

fn envoy_with_nonce_keys(keys: &str) -> Envoy {
    let plugin = PluginSettings { env_keys: vec![NONCE_ENV.to_string()], ..PluginSettings::default() };
    let launch = Launch { plugin, env: vec![(NONCE_ENV.to_string(), keys.to_string())], ..Launch::default() };
    Envoy::start_fed(&nonce_policy(), launch)
}

#[test]
fn dpop_nonces_work_across_a_fleet_without_shared_state() {
    let a = envoy_with_nonce_keys(KEY_A);
    let b = envoy_with_nonce_keys(KEY_A);
    let key = SigningKey::es256_from_bytes(&[74u8; 32]).unwrap();
    let t = token(&bind_to_dpop_key(claims("moneywise-app", "payments"), &key));
    let auth = format!("DPoP {t}");
    let send = |envoy: &Envoy, proof: &str| envoy.send("POST", VRP, &[("authorization", &auth), ("dpop", proof)]);

    // No nonce: 401 use_dpop_nonce with exactly one non-empty DPoP-Nonce.
    let r = send(&a, &dpop_proof(&key, "POST", VRP_URL, &t, now(), "nonce-1"));
    assert_eq!(outcome(&r), "401 dpop_nonce_missing", "{}", r.body);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("error=\"use_dpop_nonce\""), "{challenge}");
    let nonces: Vec<&str> =
        r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("dpop-nonce")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(nonces.len(), 1, "{:?}", r.headers);
    let nonce = nonces[0].to_string();
    assert!(!nonce.is_empty());

    // The nonce minted by Envoy A works on A and on B (no shared state, the same key).
    let r = send(&a, &dpop_proof_with_nonce(&key, VRP_URL, &t, now(), "nonce-2", &nonce));
    assert_eq!(outcome(&r), "200 dpop", "{}", r.body);
    assert!(r.header("dpop-nonce").is_none(), "nothing to renew in the nonce's first window");
    let r = send(&b, &dpop_proof_with_nonce(&key, VRP_URL, &t, now(), "nonce-3", &nonce));
    assert_eq!(outcome(&r), "200 dpop", "{}", r.body);

    // A nonce of another key (another API's, or a made-up one) is refused with a fresh nonce.
    let foreign = nhi_guard::engine::dpop_nonce::NonceKeys::parse(KEY_B, NONCE_WINDOW).unwrap().mint(now());
    let r = send(&a, &dpop_proof_with_nonce(&key, VRP_URL, &t, now(), "nonce-4", &foreign));
    assert_eq!(outcome(&r), "401 dpop_nonce_invalid");
    assert_eq!(r.header("dpop-nonce"), Some(nonce.as_str()));
    let r = send(&a, &dpop_proof_with_nonce(&key, VRP_URL, &t, now(), "nonce-5", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    assert_eq!(outcome(&r), "401 dpop_nonce_invalid");
    // Replaying an accepted proof with a valid nonce is still a replay.
    let r = send(&a, &dpop_proof_with_nonce(&key, VRP_URL, &t, now(), "nonce-2", &nonce));
    assert_eq!(outcome(&r), "401 dpop_replayed");
    drop(b);

    // Key rotation: an Envoy that mints with B and still accepts A takes A's nonce and hands out
    // its own on the success (the response-phase DPoP-Nonce).
    let rolled = envoy_with_nonce_keys(&format!("{KEY_B},{KEY_A}"));
    let r = send(&rolled, &dpop_proof_with_nonce(&key, VRP_URL, &t, now(), "nonce-6", &nonce));
    assert_eq!(outcome(&r), "200 dpop", "{}", r.body);
    let next = r.header("dpop-nonce").unwrap_or_default().to_string();
    assert_eq!(next, foreign, "the next nonce is minted with the new key");
    let r = send(&rolled, &dpop_proof_with_nonce(&key, VRP_URL, &t, now(), "nonce-7", &next));
    assert_eq!(outcome(&r), "200 dpop");
    assert!(r.header("dpop-nonce").is_none());
    assert!(a.counter("nhi_guard.denied.dpop_nonce_missing") >= 1);
}

#[test]
fn a_policy_that_requires_nonces_without_a_key_does_not_start() {
    let (ok, out) = validate(&nonce_policy());
    assert!(!ok, "validated without the nonce key:\n{out}");
    assert!(out.contains("sender_constraint.dpop.nonce.key_env") && out.contains("is not set"), "{out}");
}
