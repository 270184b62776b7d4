//! What Envoy does with our configs: the shipped ones load, a bad policy is refused at start.

use crate::harness::*;
use serde_json::{json, Value};

#[test]
fn envoy_refuses_an_invalid_policy_and_says_where() {
    let mut doc: Value = serde_json::from_str(&example_policy()).unwrap();
    doc["clients"][0]["partner"] = json!("nobody");
    doc["routes"][1]["owner"] = json!("");
    let (ok, out) = validate(&doc.to_string());
    assert!(!ok, "Envoy accepted an invalid policy:\n{out}");
    assert!(out.contains("clients[0].partner: partner \"nobody\" is not defined"), "{out}");
    assert!(out.contains("routes[1].owner: is empty"), "{out}");
    let (ok, out) = validate("{ this is not json");
    assert!(!ok && out.contains("invalid policy"), "{out}");
}

#[test]
fn the_shipped_envoy_config_loads_and_matches_the_example_policy() {
    let shipped = std::fs::read_to_string(repo().join("envoy/envoy.yaml")).unwrap();
    let mut layout = nhi_guard::tools::envoy_config::EnvoyLayout::new(
        &example_policy(),
        "target/wasm32-wasip1/release/nhi_guard.wasm",
    );
    layout.mtls = Some(nhi_guard::tools::envoy_config::MtlsListener { port: 10443, pki_dir: "target/demo/pki".into() });
    // The demo's feed comes from `nhi-guard feed` (envoy/feed.json listens on 8089).
    layout.cluster_ports = vec![("nhi_guard_feed".into(), 8089)];
    let rendered = nhi_guard::tools::envoy_config::render(&layout);
    assert_eq!(shipped, rendered, "envoy/envoy.yaml is stale: regenerate it with scripts/render-envoy-config.sh");
    // The shipped config writes its audit logs under target/demo and reads its TLS certificates
    // from target/demo/pki (the demo creates both; the certificates are never committed).
    std::fs::create_dir_all(repo().join("target/demo")).unwrap();
    let pki = std::process::Command::new("bash")
        .arg(repo().join("scripts/pki.sh"))
        .arg(repo().join("target/demo/pki"))
        .output()
        .unwrap();
    assert!(pki.status.success(), "{}", String::from_utf8_lossy(&pki.stderr));
    let (ok, out) = validate_file(&repo().join("envoy/envoy.yaml"));
    assert!(ok, "{out}");
    assert!(out.contains("signature backend envoy-native"), "{out}");
}
