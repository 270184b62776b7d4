//! The filter as fleets run it: delivered and updated by ECDS (as Istio and Envoy Gateway deliver
//! Wasm plugins), polling its sources from its own plugin with no bootstrap extension, several
//! plugins in one VM, several Envoys on one feed.

use crate::harness::*;
use nhi_guard::tools::mint::{bind_to_dpop_key, dpop_proof, SigningKey};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const BALANCES: &str = "/accounts/22289/balances";
const LEDGER: &str = "/internal/ledger/accounts/7";

fn outcome(r: &Response) -> String {
    if r.status == 200 {
        "allowed".into()
    } else {
        format!("{} {}", r.status, r.reason())
    }
}

fn with(policy: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut doc: Value = serde_json::from_str(policy).unwrap();
    edit(&mut doc);
    doc.to_string()
}

/// The example policy with a 1 s poll and a short staleness bound.
fn fast_policy(stale_s: i64) -> String {
    with(&example_policy(), |d| {
        d["revocation"]["poll_interval_ms"] = json!(1000);
        d["revocation"]["max_staleness_seconds"] = json!(stale_s);
    })
}

fn get(envoy: &Envoy, path: &str, auth: &str) -> String {
    outcome(&envoy.send("GET", path, &[("authorization", auth)]))
}

#[test]
fn policy_updates_by_ecds_under_load_fail_nothing_that_both_policies_allow() {
    let policy = example_policy();
    let mut envoy = Envoy::start_fed(&policy, Launch { workers: 2, ecds: true, ..Launch::default() });
    let customer = bearer(&token(&claims("moneywise-app", "accounts")));
    let sts = bearer(&sts_token("ledger-sync", "ledger:read", &key("sts-es256"), "sts-es256"));
    let insights = bearer(&token(&claims("moneywise-insights", "accounts")));
    assert_eq!(get(&envoy, BALANCES, &customer), "allowed");
    assert_eq!(get(&envoy, LEDGER, &sts), "allowed", "the STS's keys come from its remote JWKS");
    assert_eq!(get(&envoy, BALANCES, &insights), "allowed");
    // A DPoP proof used before the updates must stay used after them (the replay cache survives).
    let dpop_key = SigningKey::es256_from_bytes(&[51u8; 32]).unwrap();
    let bound = token(&bind_to_dpop_key(claims("moneywise-app", "payments"), &dpop_key));
    let proof = dpop_proof(&dpop_key, "POST", "https://api.bank.example/domestic-vrps", &bound, now(), "ecds-1");
    let dpop = [("authorization", format!("DPoP {bound}")), ("dpop", proof)];
    let dpop: Vec<(&str, &str)> = dpop.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(outcome(&envoy.send("POST", "/domestic-vrps", &dpop)), "allowed");

    // Traffic both the old and the new policies allow, on inline keys (fresh feed needed) and on
    // the STS's fetched keys, while the policy changes three times.
    let load = Load::start(envoy.port, 20, &[("GET", BALANCES, &customer), ("GET", LEDGER, &sts)]);
    std::thread::sleep(Duration::from_secs(4));
    // 1. A change this traffic does not care about: another poll interval and a route's owner.
    let first = with(&policy, |d| {
        d["revocation"]["poll_interval_ms"] = json!(500);
        d["routes"][0]["owner"] = json!("open-banking-platform@bank.example");
    });
    envoy.push_policy(&first).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // 2. Suspend a client: enforced as soon as the new plugin serves.
    let second = with(&first, |d| {
        let insights = d["clients"].as_array_mut().unwrap().iter_mut().find(|c| c["id"] == "moneywise-insights");
        insights.unwrap()["status"] = json!("suspended");
    });
    let pushed = Instant::now();
    envoy.push_policy(&second).unwrap();
    let enforced =
        envoy.wait_until(Duration::from_secs(10), || get(&envoy, BALANCES, &insights) == "403 client_inactive");
    assert!(enforced.is_some(), "the suspension never took effect: {}", get(&envoy, BALANCES, &insights));
    let enforced_after = pushed.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    // 3. An update that does not load: Envoy rejects it and the last good policy keeps serving.
    let broken = with(&second, |d| d["clients"][0]["partner"] = json!("nobody"));
    let rejected = envoy.push_policy(&broken).expect_err("an invalid policy was accepted");
    assert!(rejected.contains("clients[0].partner"), "the rejection names the field:\n{rejected}");
    assert_eq!(get(&envoy, BALANCES, &insights), "403 client_inactive", "the last good policy still serves");
    assert_eq!(get(&envoy, BALANCES, &customer), "allowed");

    let report = load.finish();
    println!(
        "ECDS under load: {} requests in 20 s over 3 updates (one rejected): {} non-2xx, {} socket errors; \
         the suspension was enforced {enforced_after:?} after the push",
        report.requests, report.non_2xx, report.socket_errors
    );
    assert!(report.requests > 200, "the load did not run:\n{}", report.text);
    let denials =
        http(envoy.admin, "GET /stats?filter=nhi_guard.denied HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
    let denials: Vec<String> =
        denials.map(|r| r.body.lines().filter(|l| !l.ends_with(": 0")).map(String::from).collect()).unwrap_or_default();
    assert_eq!(
        (report.non_2xx, report.socket_errors),
        (0, 0),
        "requests failed during the updates:\n{}\ndenials: {denials:?}",
        report.text
    );
    for reason in ["revocation_stale", "jwks_unavailable", "host_error", "policy_unavailable"] {
        assert_eq!(envoy.counter(&format!("nhi_guard.denied.{reason}")), 0, "{reason} during an update");
    }
    // Feed, JWKS and replay state live in shared data named by source: they survived the updates.
    assert_eq!(outcome(&envoy.send("POST", "/domestic-vrps", &dpop)), "401 dpop_replayed");
}

#[test]
fn two_policies_in_one_vm_keep_their_own_feeds() {
    // Istio gives every WasmPlugin the same empty vm_id: two plugins share one VM and its shared
    // data. Here two listeners each run a plugin with its own policy and feed, in one VM.
    let sources = Sources::serve(vec![
        (FEED_PATH, (200, feed_document(5, json!({"clients": ["moneywise-app"]})))),
        ("/feeds/b.json", (200, feed_document(1, Value::Null))),
        (JWKS_PATH, (200, sts_jwks())),
    ]);
    let platform = |name: &str| nhi_guard::tools::envoy_config::PluginSettings {
        filter_name: name.into(),
        vm_id: String::new(),
        ..Default::default()
    };
    let policy_a = fast_policy(3);
    let policy_b = with(&policy_a, |d| {
        d["revocation"]["cluster"] = json!("feed_b");
        d["revocation"]["path"] = json!("/feeds/b.json");
    });
    let second = Some((policy_b, platform("nhi_guard_b")));
    let launch = Launch { ecds: true, plugin: platform("nhi_guard_a"), second, ..Launch::default() };
    let a = Envoy::launch(&policy_a, sources.clone(), launch);
    a.wait_fed(&policy_a);
    let b = a.second_port;
    let app = bearer(&token(&claims("moneywise-app", "accounts")));
    let ready = a.wait_until(Duration::from_secs(10), || get_on(b, BALANCES, &app) == "allowed");
    assert!(ready.is_some(), "policy B never served: {}\n{}", get_on(b, BALANCES, &app), a.log());
    // Revoked in A's feed only: A denies, B allows, and neither flips over several poll intervals.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        assert_eq!(get(&a, BALANCES, &app), "403 client_revoked");
        assert_eq!(get_on(b, BALANCES, &app), "allowed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // B's feed revokes it too, at a lower version than A's: B takes it (its own version line).
    sources.set("/feeds/b.json", 200, feed_document(2, json!({"clients": ["moneywise-app"]})));
    let took = a.wait_until(Duration::from_secs(5), || get_on(b, BALANCES, &app) == "403 client_revoked");
    assert!(took.is_some(), "B never took its own feed's revocation");
    assert_eq!(get(&a, BALANCES, &app), "403 client_revoked");
}

/// A request to another listener of the same Envoy.
fn get_on(port: u16, path: &str, auth: &str) -> String {
    let raw =
        format!("GET {path} HTTP/1.1\r\nhost: api.bank.example\r\nauthorization: {auth}\r\nconnection: close\r\n\r\n");
    http(port, &raw).map_or("no answer".into(), |r| outcome(&r))
}

#[test]
fn three_envoys_on_one_feed_revoke_together_fail_closed_together_and_recover() {
    let policy = fast_policy(3);
    let sources = Sources::start((200, feed_document(1, Value::Null)), (200, sts_jwks()));
    let fleet: Vec<Envoy> =
        (0..3).map(|_| Envoy::launch(&policy, sources.clone(), Launch { workers: 2, ..Launch::default() })).collect();
    for envoy in &fleet {
        envoy.wait_fed(&policy);
    }
    let fetches = |e: &Envoy| e.counter("nhi_guard.feed.fetch_ok") + e.counter("nhi_guard.feed.fetch_failed");
    let baseline: Vec<u64> = fleet.iter().map(fetches).collect();
    let jwks_baseline = sources.fetches(JWKS_PATH);
    let started = Instant::now();
    let app = bearer(&token(&claims("moneywise-app", "accounts")));
    let sts = bearer(&sts_token("ledger-sync", "ledger:read", &key("sts-es256"), "sts-es256"));
    for envoy in &fleet {
        assert!(envoy.wait_until(Duration::from_secs(5), || get(envoy, BALANCES, &app) == "allowed").is_some());
        assert_eq!(get(envoy, LEDGER, &sts), "allowed");
    }
    // A revocation reaches all three within two poll intervals.
    sources.set(FEED_PATH, 200, feed_document(2, json!({"partners": [{"id": "moneywise", "status": "offboarded"}]})));
    let published = Instant::now();
    let mut took = Vec::new();
    for envoy in &fleet {
        let t = envoy.wait_until(Duration::from_secs(5), || get(envoy, BALANCES, &app) == "403 partner_offboarded");
        assert!(t.is_some(), "an Envoy never took the offboarding: {}", get(envoy, BALANCES, &app));
        took.push(published.elapsed());
    }
    println!("offboarding reached the three Envoys after {took:?} (poll interval 1 s)");
    assert!(took.iter().all(|t| *t < Duration::from_millis(2500)), "{took:?}");
    // The feed server goes down: every Envoy keeps the last good feed until the 3 s bound, then
    // fails closed; it comes back: every Envoy recovers by itself.
    sources.set(FEED_PATH, 200, feed_document(3, Value::Null));
    for envoy in &fleet {
        assert!(envoy.wait_until(Duration::from_secs(5), || get(envoy, BALANCES, &app) == "allowed").is_some());
    }
    sources.set(FEED_PATH, 0, Vec::new());
    let down = Instant::now();
    for envoy in &fleet {
        let t = envoy.wait_until(Duration::from_secs(10), || get(envoy, BALANCES, &app) == "503 revocation_stale");
        assert!(t.is_some(), "an Envoy kept serving on a stale feed: {}", get(envoy, BALANCES, &app));
    }
    let failed_closed = down.elapsed();
    assert!(failed_closed >= Duration::from_secs(2), "failed closed before the bound: {failed_closed:?}");
    sources.set(FEED_PATH, 200, feed_document(4, Value::Null));
    let up = Instant::now();
    for envoy in &fleet {
        assert!(envoy.wait_until(Duration::from_secs(5), || get(envoy, BALANCES, &app) == "allowed").is_some());
    }
    println!(
        "feed down: all three failed closed after {failed_closed:?} (bound 3 s); recovered {:?} after it returned",
        up.elapsed()
    );
    // One fetch stream per Envoy, not per worker: at a 1 s poll, about 60 feed fetches a minute.
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let per_envoy: Vec<f64> =
        fleet.iter().zip(&baseline).map(|(e, before)| (fetches(e) - before) as f64 / minutes).collect();
    let jwks_per_envoy = (sources.fetches(JWKS_PATH) - jwks_baseline) as f64 / 3.0 / minutes;
    println!(
        "feed fetches per Envoy per minute: {per_envoy:.0?}; JWKS fetches per Envoy per minute: {jwks_per_envoy:.1}"
    );
    // Two workers and the main thread each tick: per-worker polling would be three times this.
    assert!(per_envoy.iter().all(|r| *r < 60.0 * 1.5), "more than one poller per Envoy? {per_envoy:?}");
}

/// The policy and the host environment keys a fleet manifest hands the plugin.
fn manifest_plugin(file: &str, kind: &str) -> (String, Vec<String>) {
    use serde::Deserialize;
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
        .collect();
    let plugin = docs.iter().find(|d| d["kind"] == kind).unwrap();
    if kind == "WasmPlugin" {
        let env = plugin["spec"]["vmConfig"]["env"].as_array().unwrap();
        let keys = env.iter().filter(|e| e["valueFrom"] == "HOST").map(|e| e["name"].as_str().unwrap().to_string());
        (plugin["spec"]["pluginConfig"].to_string(), keys.collect())
    } else {
        let wasm = &plugin["spec"]["wasm"][0];
        let keys = wasm["env"]["hostKeys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string());
        (wasm["config"].to_string(), keys.collect())
    }
}

#[test]
fn the_fleet_manifests_run_as_their_platforms_run_them() {
    // (manifest, resource, the filter name and VM id the platform gives the plugin)
    let platforms = [
        ("envoy/istio-wasmplugin.yaml", "WasmPlugin", "banking-api.nhi-guard", ""),
        (
            "envoy/envoy-gateway-extension-policy.yaml",
            "EnvoyExtensionPolicy",
            "nhi-guard-eg",
            "envoyextensionpolicy/banking-api/nhi-guard/wasm/0",
        ),
    ];
    for (file, kind, filter_name, vm_id) in platforms {
        let (policy, env_keys) = manifest_plugin(file, kind);
        assert_eq!(env_keys, ["NHI_GUARD_AUDIT_KEY"], "{file}");
        // Without the secret in the environment the plugin refuses to start.
        let (ok, out) = validate(&policy);
        assert!(!ok && out.contains("NHI_GUARD_AUDIT_KEY is not set"), "{file}:\n{out}");
        // ECDS, the platform's VM id and cluster names (here all served by the test's sources), no bootstrap.
        let doc: Value = serde_json::from_str(&policy).unwrap();
        let mut clusters = vec![doc["revocation"]["cluster"].as_str().unwrap().to_string()];
        clusters.extend(
            doc["issuers"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|i| i["remote_jwks"]["cluster"].as_str())
                .map(String::from),
        );
        let plugin = nhi_guard::tools::envoy_config::PluginSettings {
            filter_name: filter_name.into(),
            vm_id: vm_id.into(),
            env_keys,
            ..Default::default()
        };
        let env = vec![("NHI_GUARD_AUDIT_KEY".to_string(), "from-a-kubernetes-secret".to_string())];
        let launch = Launch { workers: 2, ecds: true, plugin, env, clusters, ..Launch::default() };
        let sources = Sources::start((200, feed_document(1, Value::Null)), (200, sts_jwks()));
        let envoy = Envoy::launch(&policy, sources.clone(), launch);
        envoy.wait_fed(&policy);
        let config = std::fs::read_to_string(envoy.dir.join("envoy.yaml")).unwrap();
        assert!(!config.contains("bootstrap_extensions") && config.contains("config_discovery"), "{file}");
        let app = bearer(&token(&claims("moneywise-app", "accounts")));
        let sts = bearer(&sts_token("ledger-sync", "ledger:read", &key("sts-es256"), "sts-es256"));
        assert!(
            envoy.wait_until(Duration::from_secs(5), || get(&envoy, BALANCES, &app) == "allowed").is_some(),
            "{file}"
        );
        assert_eq!(get(&envoy, LEDGER, &sts), "allowed", "{file}: remote JWKS through the platform's cluster");
        sources.set(
            FEED_PATH,
            200,
            feed_document(2, json!({"partners": [{"id": "moneywise", "status": "offboarded"}]})),
        );
        let took = envoy.wait_until(Duration::from_secs(5), || get(&envoy, BALANCES, &app) == "403 partner_offboarded");
        assert!(took.is_some(), "{file}: the live feed never took effect: {}", get(&envoy, BALANCES, &app));
        println!(
            "{file}: feed and remote JWKS live without a bootstrap; offboarding enforced after {:?}",
            took.unwrap()
        );
    }
}

#[test]
fn an_ecds_update_while_the_feed_host_hangs_then_goes_away_fails_closed_and_recovers() {
    let policy = fast_policy(3);
    let mut envoy = Envoy::start_fed(&policy, Launch { workers: 2, ecds: true, ..Launch::default() });
    let app = bearer(&token(&claims("moneywise-app", "accounts")));
    assert_eq!(get(&envoy, BALANCES, &app), "allowed");
    // The feed host answers slowly: the lease holder is mid-fetch when its plugin is replaced.
    envoy.sources.delay(FEED_PATH, 1500);
    std::thread::sleep(Duration::from_millis(1200));
    envoy.push_policy(&with(&policy, |d| d["routes"][0]["owner"] = json!("platform@bank.example"))).unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        assert_eq!(get(&envoy, BALANCES, &app), "allowed", "the new plugin must take the feed over in time");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The feed host goes away during the next update: the new plugin keeps the last good feed until
    // the staleness bound, then fails closed; the host returns: it recovers by itself.
    envoy.sources.delay(FEED_PATH, 0);
    envoy.sources.set(FEED_PATH, 0, Vec::new());
    envoy.push_policy(&with(&policy, |d| d["routes"][0]["owner"] = json!("api-platform@bank.example"))).unwrap();
    let stale = envoy.wait_until(Duration::from_secs(10), || get(&envoy, BALANCES, &app) == "503 revocation_stale");
    assert!(stale.is_some(), "never failed closed without the feed: {}", get(&envoy, BALANCES, &app));
    envoy.sources.set(FEED_PATH, 200, feed_document(9, Value::Null));
    let back = envoy.wait_until(Duration::from_secs(5), || get(&envoy, BALANCES, &app) == "allowed");
    assert!(back.is_some(), "never recovered: {}", get(&envoy, BALANCES, &app));
}
