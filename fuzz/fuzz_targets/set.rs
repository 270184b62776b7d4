//! The feed service's intake: any bytes as a pushed SET, and any JSON as the claims of a SET the
//! transmitter really signed (so the claim checks, the subject parser and the mapping are reached).
//! Never a panic; an accepted SET always names the stream's transmitter and audience, carries no
//! `sub` or `exp`, and maps to changes that name what its subject names.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nhi_guard::engine::keys::{Alg, Jwk};
use nhi_guard::feed::mapping::{map, Mapping};
use nhi_guard::feed::set::{validate, Trust};
use nhi_guard::tools::mint::{sign_jws, SigningKey};
use serde_json::{json, Value};

const ISS: &str = "https://idp.example";
const AUD: &str = "https://feed.bank.example";

struct Fixture {
    key: SigningKey,
    keys: Vec<nhi_guard::engine::keys::VerificationKey>,
}

// Built once: the transmitter's key (Ed25519: signing every claims input stays cheap).
fn fixture() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let key = SigningKey::eddsa_from_seed(&[7u8; 32]);
        let jwk: Jwk = serde_json::from_value(key.public_jwk("t1")).unwrap();
        Fixture { keys: vec![jwk.to_key().unwrap()], key }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let key = &f.key;
    let trust = Trust { issuer: ISS, audience: AUD, algorithms: &[Alg::EdDSA], keys: &f.keys };
    let (mode, rest) = match data.split_first() {
        Some(x) => x,
        None => return,
    };
    let token = if mode % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_string(),
            Err(_) => return,
        }
    } else {
        let Ok(claims) = serde_json::from_slice::<Value>(rest) else { return };
        sign_jws(&json!({"alg": "EdDSA", "kid": "t1", "typ": "secevent+jwt"}), &claims, key)
    };
    if let Ok(event) = validate(&token, &trust, 1_800_000_000) {
        let payload = nhi_guard::engine::base64url::decode(token.split('.').nth(1).unwrap().as_bytes()).unwrap();
        let claims: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(claims["iss"], ISS);
        assert!(claims.get("sub").is_none() && claims.get("exp").is_none());
        if let Mapping::Changes(changes) = map(&event) {
            assert!(!changes.is_empty());
            for c in changes {
                let target = c.target();
                let named = [event.subject.client(), event.subject.partner(), event.subject.token().map(|t| t.1)];
                assert!(named.iter().flatten().any(|n| target.contains(n)), "{target} not named by the subject");
            }
        }
    }
});
