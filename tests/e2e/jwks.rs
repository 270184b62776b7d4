//! Issuer keys from a JWKS endpoint through the real Envoy: the worker holding the lease fetches the
//! internal STS's JWKS (served by the echo upstream here) and every worker verifies with it.

use crate::harness::*;
use nhi_guard::tools::mint::SigningKey;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const LEDGER: &str = "/internal/ledger/accounts/7";

/// The example policy with the STS's refresh interval and unknown-kid refetch limit set.
fn sts_policy(refresh_ms: u64, refetch_ms: u64) -> String {
    let mut doc: Value = serde_json::from_str(&example_policy()).unwrap();
    let sts = doc["issuers"].as_array_mut().unwrap().iter_mut().find(|i| i["remote_jwks"].is_object()).unwrap();
    sts["remote_jwks"]["refresh_interval_ms"] = json!(refresh_ms);
    sts["remote_jwks"]["unknown_kid_refetch_min_interval_ms"] = json!(refetch_ms);
    doc.to_string()
}

fn ledger(envoy: &Envoy, token: &str) -> String {
    let r = envoy.send("GET", LEDGER, &[("authorization", &bearer(token))]);
    if r.status == 200 {
        assert_eq!(r.upstream_header("x-nhi-client").as_deref(), Some("ledger-sync"));
        "allowed".into()
    } else {
        format!("{} {}", r.status, r.reason())
    }
}

fn new_key(seed: u8) -> SigningKey {
    SigningKey::es256_from_bytes(&[seed; 32]).unwrap()
}

#[test]
fn a_rotated_key_verifies_after_the_unknown_kid_refetch() {
    // Refresh once a minute: only the unknown-kid refetch can bring the new key in time.
    let envoy = Envoy::start(&sts_policy(60_000, 1000));
    let current = sts_token("ledger-sync", "ledger:read", &key("sts-es256"), "sts-es256");
    assert!(envoy.wait_until(Duration::from_secs(3), || ledger(&envoy, &current) == "allowed").is_some());
    let next = new_key(21);
    let rotated = sts_token("ledger-sync", "ledger:read", &next, "sts-2026-11");
    assert_eq!(ledger(&envoy, &rotated), "401 kid_unknown", "not published yet");
    // The STS publishes the new key (keeping the old one for the overlap).
    envoy.set_jwks(200, jwks_document(&[(&key("sts-es256"), "sts-es256"), (&next, "sts-2026-11")]));
    let took = envoy.wait_until(Duration::from_secs(6), || ledger(&envoy, &rotated) == "allowed");
    let took =
        took.unwrap_or_else(|| panic!("rotated key never verified: {}\n{}", ledger(&envoy, &rotated), envoy.log()));
    println!("rotation: the new kid verified {took:?} after the JWKS changed (refresh interval 60 s)");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_eq!(ledger(&envoy, &current), "allowed", "the old key still verifies during the overlap");
    assert!(envoy.counter("nhi_guard.jwks.refetch_requested") >= 1);
    // The STS's keys are trusted for workloads only: a partner app's token from it is refused.
    let partner = sts_token("moneywise-app", "accounts", &key("sts-es256"), "sts-es256");
    let r = envoy.send("GET", "/account-access-consents/c1", &[("authorization", &bearer(&partner))]);
    assert_eq!((r.status, r.reason().as_str()), (401, "client_issuer_not_allowed"), "{}", r.body);
}

#[test]
fn removed_keys_stop_verifying_and_outages_keep_the_last_good_keys() {
    let envoy = Envoy::start(&sts_policy(1000, 1000));
    let old = sts_token("ledger-sync", "ledger:read", &key("sts-es256"), "sts-es256");
    assert!(envoy.wait_until(Duration::from_secs(3), || ledger(&envoy, &old) == "allowed").is_some());
    assert_eq!(ledger(&envoy, &old), "allowed", "and now it sits in the verified-token cache");

    // JWKS endpoint down, then serving garbage: the last good keys stay.
    for (status, body, counter) in
        [(503, Vec::new(), "nhi_guard.jwks.fetch_failed"), (200, b"{\"keys\": [".to_vec(), "nhi_guard.jwks.malformed")]
    {
        let before = envoy.counter(counter);
        envoy.set_jwks(status, body);
        let seen = envoy.wait_until(Duration::from_secs(5), || envoy.counter(counter) > before);
        assert!(seen.is_some(), "{counter} never moved:\n{}", envoy.log());
        assert_eq!(ledger(&envoy, &old), "allowed", "after {counter}: last good keys kept");
    }
    let private = {
        let mut jwk = key("sts-es256").public_jwk("sts-es256");
        jwk["d"] = json!("c2VjcmV0");
        json!({"keys": [jwk]}).to_string().into_bytes()
    };
    let before = envoy.counter("nhi_guard.jwks.malformed");
    envoy.set_jwks(200, private);
    assert!(envoy.wait_until(Duration::from_secs(5), || envoy.counter("nhi_guard.jwks.malformed") > before).is_some());
    assert_eq!(ledger(&envoy, &old), "allowed", "a JWKS with private parts is refused whole");

    // The STS retires the old key: its token stops verifying at the next refresh, cached or not.
    let next = new_key(22);
    let fresh = sts_token("ledger-sync", "ledger:read", &next, "sts-next");
    envoy.set_jwks(200, jwks_document(&[(&next, "sts-next")]));
    let took = envoy.wait_until(Duration::from_secs(5), || ledger(&envoy, &old) == "401 kid_unknown");
    assert!(took.is_some(), "removed key still verifies: {}", ledger(&envoy, &old));
    println!("removal: the retired key stopped verifying {:?} after the JWKS changed (refresh 1 s)", took.unwrap());
    assert_eq!(ledger(&envoy, &fresh), "allowed");
    assert!(envoy.log_with("published keys [\"sts-next\"]").contains("published keys [\"sts-next\"]"));
}

#[test]
fn jwks_down_at_start_fails_closed_for_that_issuer_only_and_recovers() {
    let envoy = Envoy::start_with(&sts_policy(60_000, 500), (200, feed_document(1, Value::Null)), (503, Vec::new()));
    assert!(envoy.wait_until(Duration::from_secs(10), || envoy.counter("nhi_guard.feed.fetch_ok") > 0).is_some());
    let sts = sts_token("ledger-sync", "ledger:read", &key("sts-es256"), "sts-es256");
    let r = envoy.send("GET", LEDGER, &[("authorization", &bearer(&sts))]);
    assert_eq!((r.status, r.reason().as_str()), (503, "jwks_unavailable"), "{}", r.body);
    assert!(r.header("www-authenticate").is_none());
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    // Inline-keyed issuers are not held hostage by another issuer's JWKS.
    let partner = token(&claims("moneywise-app", "accounts"));
    let r = envoy.send("GET", "/accounts/22289/balances", &[("authorization", &bearer(&partner))]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(envoy.wait_until(Duration::from_secs(3), || envoy.counter("nhi_guard.jwks.fetch_failed") >= 2).is_some());
    // The endpoint comes up: keys arrive without a restart (retries at the rate-limit pace).
    envoy.set_jwks(200, sts_jwks());
    let took = envoy.wait_until(Duration::from_secs(5), || ledger(&envoy, &sts) == "allowed");
    assert!(took.is_some(), "never recovered: {}", ledger(&envoy, &sts));
}

#[test]
fn an_unknown_kid_flood_triggers_only_rate_limited_refetches() {
    let envoy = Envoy::start(&sts_policy(60_000, 1000));
    let before = envoy.jwks_fetch_count();
    let attacker = new_key(23);
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(3) {
        let t = sts_token("ledger-sync", "ledger:read", &attacker, &format!("made-up-{sent}"));
        assert_eq!(ledger(&envoy, &t), "401 kid_unknown");
        sent += 1;
    }
    let window = start.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    let fetches = envoy.jwks_fetch_count() - before;
    let bound = window.as_secs() as usize + 2;
    println!(
        "unknown-kid flood: {sent} requests in {window:?} caused {fetches} JWKS fetches (limit 1/s, bound {bound})"
    );
    assert!(sent > 50, "the flood was too small to mean anything ({sent})");
    assert!(fetches >= 1, "an unknown kid must trigger a refetch");
    assert!(fetches <= bound, "{fetches} fetches for {sent} made-up kids in {window:?}");
}

#[test]
fn a_quiet_gateway_accepts_a_new_kid_on_the_first_retry() {
    // Refresh once a minute: only the refetch asked for by the refusal itself can bring the key.
    let envoy = Envoy::start(&sts_policy(60_000, 1000));
    let current = sts_token("ledger-sync", "ledger:read", &key("sts-es256"), "sts-es256");
    assert!(envoy.wait_until(Duration::from_secs(3), || ledger(&envoy, &current) == "allowed").is_some());
    // The STS rotates and signs with the new key at once; the gateway sees no other traffic.
    let next = new_key(24);
    envoy.set_jwks(200, jwks_document(&[(&key("sts-es256"), "sts-es256"), (&next, "sts-2026-12")]));
    let rotated = sts_token("ledger-sync", "ledger:read", &next, "sts-2026-12");
    let published = envoy.counter("nhi_guard.jwks.fetch_ok");
    let refused_at = Instant::now();
    assert_eq!(ledger(&envoy, &rotated), "401 kid_unknown");
    // No request in between: the refusal alone must have asked for the refetch.
    let fetched = envoy.wait_until(Duration::from_secs(5), || envoy.counter("nhi_guard.jwks.fetch_ok") > published);
    assert!(fetched.is_some(), "the refusal did not trigger a refetch:\n{}", envoy.log());
    std::thread::sleep(Duration::from_millis(150)); // the worker looks at published keys every 100 ms
    assert_eq!(ledger(&envoy, &rotated), "allowed", "the first retry after the refetch");
    let took = refused_at.elapsed();
    println!("quiet gateway: the new kid was accepted on the first retry, {took:?} after the first refusal");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn slow_redirecting_and_oversized_jwks_hosts_keep_the_last_good_keys() {
    let envoy = Envoy::start(&sts_policy(1000, 1000));
    let t = sts_token("ledger-sync", "ledger:read", &key("sts-es256"), "sts-es256");
    assert!(envoy.wait_until(Duration::from_secs(3), || ledger(&envoy, &t) == "allowed").is_some());
    let grew = |counter: &str, before: u64| {
        envoy.wait_until(Duration::from_secs(8), || envoy.counter(counter) > before).is_some()
    };
    // A redirect is not followed (the filter fetches exactly where the policy says).
    let before = envoy.counter("nhi_guard.jwks.fetch_failed");
    envoy.set_jwks(302, Vec::new());
    assert!(grew("nhi_guard.jwks.fetch_failed", before), "a redirect was not counted as a failed fetch");
    assert_eq!(ledger(&envoy, &t), "allowed");
    // A body far over the 64 KiB limit: refused on the size the host reports, never read.
    let mut huge = jwks_document(&[(&key("sts-es256"), "sts-es256")]);
    huge.extend(std::iter::repeat_n(b' ', 1 << 20));
    let before = envoy.counter("nhi_guard.jwks.malformed");
    envoy.set_jwks(200, huge);
    assert!(grew("nhi_guard.jwks.malformed", before), "an oversized JWKS was not refused");
    assert!(envoy.log_with("refused unread").contains("refused unread"));
    assert_eq!(ledger(&envoy, &t), "allowed");
    // A host slower than the policy's 2 s timeout.
    envoy.set_jwks(200, sts_jwks());
    envoy.sources.delay(JWKS_PATH, 3000);
    let before = envoy.counter("nhi_guard.jwks.fetch_failed");
    assert!(grew("nhi_guard.jwks.fetch_failed", before), "a timed-out fetch was not counted");
    assert_eq!(ledger(&envoy, &t), "allowed");
    envoy.sources.delay(JWKS_PATH, 0);
}

/// An HTTPS server on "another host" (a fixture, standard library Python) serving `jwks`.
struct HttpsHost {
    child: std::process::Child,
    port: u16,
}

impl HttpsHost {
    fn start(cert: &str, jwks: &[u8]) -> HttpsHost {
        use std::io::BufRead;
        let dir = repo().join("target/e2e").join(format!("https-{cert}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("jwks.json"), jwks).unwrap();
        let pki = pki();
        let mut child = std::process::Command::new("python3")
            .arg(repo().join("tests/e2e/fixtures/https_document.py"))
            .arg(pki.join(format!("{cert}.pem")))
            .arg(pki.join(format!("{cert}.key")))
            .arg(JWKS_PATH)
            .arg(dir.join("jwks.json"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        HttpsHost { child, port: line.trim().parse().unwrap_or_else(|_| panic!("no port from the fixture: {line:?}")) }
    }
}

impl Drop for HttpsHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example policy with its external issuer's JWKS on 127.0.0.1:`port` over TLS, checked
/// against the test CA and the name auth-eu.bank.example.
fn external_issuer_policy(port: u16) -> String {
    let mut doc: Value = serde_json::from_str(&example_policy()).unwrap();
    let eu = doc["issuers"].as_array_mut().unwrap().iter_mut().find(|i| i["id"] == EU_ISS).unwrap();
    eu["remote_jwks"]["upstream"] = json!({
        "host": "127.0.0.1", "port": port,
        "tls": {"server_name": "auth-eu.bank.example", "ca_file": pki().join("ca.pem").display().to_string()}
    });
    eu["remote_jwks"]["unknown_kid_refetch_min_interval_ms"] = json!(500);
    doc.to_string()
}

const EU_ISS: &str = "https://auth-eu.bank.example";

#[test]
fn an_issuer_on_another_host_serves_its_keys_over_verified_tls() {
    let eu_key = new_key(25);
    let jwks = jwks_document(&[(&eu_key, "eu-1")]);
    let claims = nhi_guard::tools::mint::access_token_claims(
        EU_ISS,
        nhi_guard::tools::mint::example::AUD,
        "ledger-sync",
        "ledger:read",
        now() - 5,
        300,
    );
    let t = nhi_guard::tools::mint::sign_jws(
        &nhi_guard::tools::mint::access_token_header(&eu_key, "eu-1"),
        &claims,
        &eu_key,
    );

    let host = HttpsHost::start("auth-eu", &jwks);
    let envoy = Envoy::start(&external_issuer_policy(host.port));
    let took = envoy.wait_until(Duration::from_secs(10), || ledger(&envoy, &t) == "allowed");
    assert!(took.is_some(), "keys over HTTPS never arrived: {}\n{}", ledger(&envoy, &t), envoy.log());
    let published = "auth-eu.bank.example published keys [\"eu-1\"]";
    assert!(envoy.log_with(published).contains(published), "the log file is flushed on an interval: waited for it");

    // The same host name, but the server presents a certificate for another name: never trusted.
    let impostor = HttpsHost::start("impostor", &jwks);
    let envoy = Envoy::start(&external_issuer_policy(impostor.port));
    let failed = envoy.wait_until(Duration::from_secs(10), || envoy.counter("nhi_guard.jwks.fetch_failed") >= 1);
    assert!(failed.is_some(), "no failed fetch against the impostor:\n{}", envoy.log());
    assert_eq!(ledger(&envoy, &t), "503 jwks_unavailable");
}
