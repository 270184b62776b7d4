use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn jwk_thumbprint_matches_rfc7638_example() {
    // RFC 7638 §3.1.
    let jwk = serde_json::json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    let t = jwk_thumbprint(jwk.as_object().unwrap());
    assert_eq!(t.as_deref(), Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"));
    // Members outside the required set do not change it; a missing one means no thumbprint.
    let ec = serde_json::json!({"kty": "EC", "crv": "P-256", "x": "a", "y": "b"});
    let mut ec2 = ec.clone();
    ec2["kid"] = serde_json::json!("k");
    assert_eq!(jwk_thumbprint(ec.as_object().unwrap()), jwk_thumbprint(ec2.as_object().unwrap()));
    assert_eq!(jwk_thumbprint(serde_json::json!({"kty": "EC", "crv": "P-256", "x": "a"}).as_object().unwrap()), None);
    assert_eq!(jwk_thumbprint(serde_json::json!({"kty": "oct", "k": "a"}).as_object().unwrap()), None);
}

#[test]
fn htu_is_origin_plus_path_and_ignores_query_and_fragment() {
    let o = "https://api.bank.example";
    assert!(htu_matches("https://api.bank.example/accounts", o, "/accounts"));
    assert!(htu_matches("HTTPS://API.bank.example/accounts", o, "/accounts"), "scheme and host are case-insensitive");
    assert!(htu_matches("https://api.bank.example/accounts?x=1#f", o, "/accounts"));
    assert!(!htu_matches("https://api.bank.example/Accounts", o, "/accounts"), "the path is case-sensitive");
    assert!(!htu_matches("https://api.bank.example:8443/accounts", o, "/accounts"));
    assert!(!htu_matches("https://evil.example/accounts", o, "/accounts"));
    assert!(!htu_matches("https://api.bank.example.evil/accounts", o, "/accounts"));
    assert!(!htu_matches("/accounts", o, "/accounts"));
    assert!(!htu_matches("", o, "/accounts"));
    assert!(!htu_matches("https://api.bank.exampl\u{e9}/accounts", o, "/accounts"), "no panic on multibyte text");
}

/// Counts signature checks and refuses them all.
struct CountingVerifier(std::cell::Cell<usize>);

impl SignatureVerifier for CountingVerifier {
    fn verify(
        &self,
        _: &crate::engine::keys::VerificationKey,
        _: &[u8],
        _: &[u8],
    ) -> Result<bool, crate::engine::jwt::verifier::VerifierFault> {
        self.0.set(self.0.get() + 1);
        Ok(false)
    }
    fn name(&self) -> &'static str {
        "counting"
    }
}

#[test]
fn a_proof_that_fails_a_cheap_check_costs_no_signature_check() {
    use crate::tools::mint::{dpop_jwk, dpop_proof, sign_jws, SigningKey};
    let policy = crate::engine::testkit::policy();
    let settings = policy.dpop.as_ref().unwrap();
    let key = SigningKey::es256_from_bytes(&[61u8; 32]).unwrap();
    let jkt = jwk_thumbprint(dpop_jwk(&key).as_object().unwrap()).unwrap();
    let url = "https://api.bank.example/domestic-vrps";
    let now = crate::engine::testkit::NOW;
    let request = ProofContext { method: "POST", path: "/domestic-vrps", access_token: "tok", jkt: &jkt, now };
    // A throwaway RSA key whose thumbprint is not the token's: refused on the thumbprint, unverified.
    let throwaway = SigningKey::from_pkcs8_pem(
        include_str!("../../policies/demo-keys/as-ps256.pem"),
        crate::engine::keys::Alg::PS256,
    )
    .unwrap();
    let cases = [
        ("wrong htm", dpop_proof(&key, "GET", url, "tok", now, "a"), Reason::DpopHtmMismatch),
        (
            "wrong htu",
            dpop_proof(&key, "POST", "https://evil.example/domestic-vrps", "tok", now, "b"),
            Reason::DpopHtuMismatch,
        ),
        ("stale iat", dpop_proof(&key, "POST", url, "tok", now - 3600, "c"), Reason::DpopIatInvalid),
        ("wrong ath", dpop_proof(&key, "POST", url, "other", now, "d"), Reason::DpopAthMismatch),
        ("another key", dpop_proof(&throwaway, "POST", url, "tok", now, "e"), Reason::DpopKeyMismatch),
        (
            "no claims",
            sign_jws(
                &serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": dpop_jwk(&key)}),
                &serde_json::json!({}),
                &key,
            ),
            Reason::DpopProofMalformed,
        ),
    ];
    let verifier = CountingVerifier(std::cell::Cell::new(0));
    for (name, proof, want) in cases {
        assert_eq!(check_proof(settings, &proof, &request, &verifier).err(), Some(want), "{name}");
    }
    assert_eq!(verifier.0.get(), 0, "a signature was checked for a proof that failed a cheap check");
    // A proof that passes every cheap check is verified (and here refused by the verifier).
    let good = dpop_proof(&key, "POST", url, "tok", now, "f");
    assert_eq!(check_proof(settings, &good, &request, &verifier).err(), Some(Reason::DpopSignatureInvalid));
    assert_eq!(verifier.0.get(), 1);
}
