//! Any bytes as a policy document: the loader returns a policy or errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nhi_guard::load_policy(text, "fuzz");
    }
});
