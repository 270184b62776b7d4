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
