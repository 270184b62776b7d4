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
fn htu_is_origin_plus_path_after_rfc3986_normalisation() {
    let o = "https://api.bank.example";
    let p = "/accounts";
    let accepted = [
        ("https://api.bank.example/accounts", "exact"),
        ("HTTPS://API.BANK.EXAMPLE/accounts", "scheme and host are case-insensitive"),
        ("https://api.bank.example/accounts?x=1#f", "query and fragment are ignored"),
        ("https://api.bank.example#f", "fragment right after the host"),
        ("https://api.bank.example:443/accounts", "the default port"),
        ("https://api.bank.example:0443/accounts", "the default port with a leading zero"),
        ("https://api.bank.example:/accounts", "an empty port"),
        ("https://api.bank.example/%61ccounts", "percent-encoded unreserved characters"),
        ("https://api.bank.example/./accounts", "dot segments"),
        ("https://api.bank.example/x/../accounts", "dot-dot segments"),
    ];
    for (htu, why) in accepted {
        let path = if htu.ends_with("#f") && !htu.contains("/accounts") { "/" } else { p };
        assert!(htu_matches(htu, o, path), "{why}: {htu}");
    }
    assert!(htu_matches("https://api.bank.example", o, "/"), "an empty path is /");
    assert!(htu_matches("https://api.bank.example/a%2fb", o, "/a%2Fb"), "hex digits compare upper-cased");
    assert!(htu_matches("http://localhost:80/a", "http://localhost", "/a"), "http's default port");
    assert!(htu_matches("https://api.bank.example:8443/a", "https://api.bank.example:8443", "/a"));
    let refused = [
        ("https://api.bank.example/Accounts", "the path is case-sensitive"),
        ("https://api.bank.example:8443/accounts", "another port"),
        ("http://api.bank.example/accounts", "another scheme"),
        ("http://api.bank.example:443/accounts", "http on 443 is not https"),
        ("https://evil.example/accounts", "another host"),
        ("https://api.bank.example.evil/accounts", "a longer host"),
        ("https://user@api.bank.example/accounts", "userinfo"),
        ("https://api.bank.example@evil.example/accounts", "userinfo naming our host"),
        ("https://api.bank.example:99999/accounts", "a port out of range"),
        ("https://api.bank.example:44x/accounts", "a port with letters"),
        ("https://api.bank.example/accounts/", "a trailing slash"),
        ("https://api.bank.example/%6", "a broken percent-encoding"),
        ("https://api.bank.example/%zz", "a non-hex percent-encoding"),
        ("https://api.bank.example/acc\u{e9}", "non-ASCII"),
        ("ftp://api.bank.example/accounts", "not http(s)"),
        ("//api.bank.example/accounts", "no scheme"),
        ("/accounts", "relative"),
        ("", "empty"),
        ("https://api.bank.exampl\u{e9}/accounts", "multibyte text, no panic"),
    ];
    for (htu, why) in refused {
        assert!(!htu_matches(htu, o, p), "{why}: {htu}");
    }
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
    let request =
        ProofContext { method: "POST", path: "/domestic-vrps", access_token: "tok", jkt: &jkt, now, nonce: None };
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
