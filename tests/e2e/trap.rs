//! What Envoy does after the filter's VM traps (a panic aborts it), with the failure policy we
//! ship. The trap comes from a test-only build of the module (feature `test-trap`, built by
//! scripts/test.sh into target/trap), never from a switch in the shipped one.

use crate::harness::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn trap_module() -> PathBuf {
    let p = repo().join("target/trap/wasm32-wasip1/release/nhi_guard.wasm");
    assert!(p.exists(), "{} is missing: scripts/test.sh builds it (cargo build --features test-trap)", p.display());
    p
}

#[test]
fn after_a_trap_requests_are_refused_or_decided_by_a_reloaded_vm_never_passed() {
    let plugin = nhi_guard::tools::envoy_config::PluginSettings::default();
    let launch = Launch { wasm: Some(trap_module()), plugin: plugin.clone(), ..Launch::default() };
    let envoy = Envoy::start_fed(&example_policy(), launch);
    let valid = bearer(&token(&claims("moneywise-app", "accounts")));
    let offboarded = bearer(&token(&claims("quickloans-app", "accounts")));
    let get = |auth: &str, extra: &[(&str, &str)]| {
        let mut h = vec![("authorization", auth)];
        h.extend_from_slice(extra);
        envoy.send("GET", "/accounts/22289/balances", &h)
    };
    assert_eq!(get(&valid, &[]).status, 200);
    let trapped = get(&valid, &[("x-test-trap", "1")]);
    assert_ne!(trapped.status, 200, "the trapping request went through: {}", trapped.body);
    let log = envoy.log_with("nhi-guard panicked");
    assert!(
        log.contains("nhi-guard panicked, this VM stops: panicked at") && log.contains("test trap requested"),
        "{log}"
    );
    // From now on: every request refused, or decided by a reloaded VM. A denied token is never passed.
    let start = Instant::now();
    let (mut refused, mut decided) = (0, 0);
    while start.elapsed() < Duration::from_secs(4) {
        let r = get(&offboarded, &[]);
        assert_ne!(r.status, 200, "a request passed unchecked after the trap: {}", r.body);
        if r.reason() == "partner_offboarded" {
            decided += 1;
        } else {
            refused += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let recovered = envoy.wait_until(Duration::from_secs(10), || get(&valid, &[]).status == 200);
    println!(
        "after a trap ({}): {refused} refused, {decided} decided by a reloaded VM in 4 s; valid traffic served again: {recovered:?}",
        plugin.failure_policy
    );
    assert!(recovered.is_some(), "the VM never came back; valid traffic stays refused:\n{}", envoy.log());
}
