//! Any bytes as an issuer's fetched JWKS: validated or refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn policy() -> &'static nhi_guard::engine::policy::Policy {
    static POLICY: OnceLock<nhi_guard::engine::policy::Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        nhi_guard::load_policy(include_str!("../../policies/open-banking.json"), "example").expect("example loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let p = policy();
    for issuer in &p.issuers {
        let _ = nhi_guard::engine::jwt::jwks::parse_fetched(data, p, issuer);
    }
});
