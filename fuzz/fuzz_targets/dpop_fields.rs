//! Any text as a DPoP proof's `nonce` (against one key and a rotating pair) and as its `htu`
//! (RFC 3986 normalisation against the configured origin and a path): an answer, never a panic, and
//! a nonce is accepted only if it is one this key minted for the window or its neighbours.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nhi_guard::engine::dpop::htu_matches;
use nhi_guard::engine::dpop_nonce::NonceKeys;

const NOW: i64 = 1_795_478_400;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(keys) = NonceKeys::parse("fuzz-nonce-key-0123456789abcdefghijklmnop", 60) else { return };
    if keys.check(Some(text), NOW).is_ok() {
        let minted = [keys.mint(NOW - 60), keys.mint(NOW), keys.mint(NOW + 60)];
        assert!(minted.iter().any(|m| m == text), "accepted a nonce this key never minted: {text:?}");
    }
    let _ = htu_matches(text, "https://api.bank.example", "/domestic-vrps");
    let _ = htu_matches(text, "http://127.0.0.1:8080", "/a/b");
});
