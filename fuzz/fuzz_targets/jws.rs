//! Any bytes as a compact JWS and as base64url: decoding must never panic, and what decodes
//! must re-encode to the same text (one spelling per token).
#![no_main]
use libfuzzer_sys::fuzz_target;
use nhi_guard::engine::base64url;
use nhi_guard::engine::jwt::{claims::AccessTokenClaims, jws};

fuzz_target!(|data: &[u8]| {
    if let Some(decoded) = base64url::decode(data) {
        assert_eq!(base64url::encode(&decoded).as_bytes(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = jws::decode::<AccessTokenClaims>(text);
        let _ = jws::decode::<serde_json::Value>(text);
    }
});
