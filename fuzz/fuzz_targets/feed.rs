//! Any bytes as a revocation feed document: parsed or refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = nhi_guard::engine::revocation::RevocationSnapshot::parse(data);
});
