//! A certified OpenID provider in our own tests: panva's oidc-provider as the bank's authorization
//! server and panva's oauth4webapi as the partner apps' client library (npm packages pinned by
//! tests/interop/package-lock.json, installed into target/interop), against the real Envoy.
//! Client credentials with resource indicators (RFC 9068 JWT access tokens), DPoP with ES256,
//! PS256 and Ed25519 client keys, with and without server nonces, mTLS-bound tokens, a plain
//! bearer service account, keys from the provider's jwks_uri, and a key rotation at the provider.

use crate::harness::*;
use nhi_guard::engine::base64url;
use nhi_guard::tools::envoy_config::PluginSettings;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ISSUER: &str = "https://op.bank.example";
const RESOURCE: &str = "https://api.bank.example/open-banking";
const NONCE_ENV: &str = "NHI_GUARD_DPOP_NONCE_KEY";

/// target/interop with the pinned packages installed (`npm ci`, again only when the lockfile
/// changed) and the provider and client scripts beside them.
fn interop_dir() -> PathBuf {
    let src = repo().join("tests/interop");
    let dir = repo().join("target/interop");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::read(src.join("package-lock.json")).unwrap();
    let stamp = dir.join("node_modules/.nhi-guard-lock");
    if std::fs::read(&stamp).ok().as_deref() != Some(lock.as_slice()) {
        for f in ["package.json", "package-lock.json"] {
            std::fs::copy(src.join(f), dir.join(f)).unwrap();
        }
        let out = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "npm ci failed: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&stamp, &lock).unwrap();
    }
    for f in ["provider.mjs", "client.mjs"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    dir
}

/// oidc-provider on two loopback ports (HTTP for DPoP clients and the JWKS, HTTPS asking for a
/// client certificate), killed on drop.
struct Provider {
    child: Child,
    http: u16,
    https: u16,
    keys: PathBuf,
    log: PathBuf,
}

impl Provider {
    fn start(dir: &Path, scratch: &Path, http: u16, https: u16, rotate: bool) -> Provider {
        let keys = scratch.join("op-keys.json");
        let log = scratch.join(if rotate { "op-rotated.log" } else { "op.log" });
        let child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(dir)
            .env("OP_HTTP_PORT", http.to_string())
            .env("OP_HTTPS_PORT", https.to_string())
            .env("OP_PKI", pki())
            .env("OP_KEYS", &keys)
            .env("OP_ROTATE", if rotate { "1" } else { "0" })
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
            .spawn()
            .unwrap();
        let p = Provider { child, http, https, keys, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&p.log).unwrap_or_default().contains("ready; signing kid") {
            assert!(Instant::now() < deadline, "oidc-provider did not start:\n{}", p.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The kid the provider signs with now.
    fn signing_kid(&self) -> String {
        let keys: Value = serde_json::from_slice(&std::fs::read(&self.keys).unwrap()).unwrap();
        keys["keys"][0]["kid"].as_str().unwrap().to_string()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example policy plus the provider as an issuer (keys from its jwks_uri) that the two
/// partner apps may take tokens from, and DPoP nonces required on one route.
fn interop_policy() -> String {
    let mut doc: Value = serde_json::from_str(&example_policy()).unwrap();
    doc["issuers"].as_array_mut().unwrap().push(json!({
        "id": ISSUER,
        "audiences": [RESOURCE],
        "algorithms": ["ES256", "PS256", "Ed25519"],
        "clock_skew_seconds": 30,
        "require_typ_at_jwt": true,
        "remote_jwks": {"cluster": "oidc_provider", "path": "/jwks", "authority": "op.bank.example",
                        "refresh_interval_ms": 60000, "unknown_kid_refetch_min_interval_ms": 1000, "timeout_ms": 2000}
    }));
    for client in doc["clients"].as_array_mut().unwrap() {
        if client["id"] == "moneywise-app" || client["id"] == "moneywise-insights" {
            client["issuers"].as_array_mut().unwrap().push(json!(ISSUER));
        }
    }
    doc["sender_constraint"]["dpop"]["nonce"] = json!({"key_env": NONCE_ENV, "window_seconds": 60});
    for route in doc["routes"].as_array_mut().unwrap() {
        if route["id"] == "domestic-payment-consents-create" {
            route["require_dpop_nonce"] = json!(true);
        }
    }
    doc.to_string()
}

/// Runs the client for `cases`; one JSON value per line it printed.
fn client(dir: &Path, op: &Provider, envoy: &Envoy, cases: &str) -> Vec<Value> {
    let out = Command::new("node")
        .arg("client.mjs")
        .current_dir(dir)
        .env("OP_TOKEN_URL", format!("http://127.0.0.1:{}/token", op.http))
        .env("API_PORT", envoy.port.to_string())
        .env("CASES", cases)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed ({cases}):\n{stdout}\n{}\nprovider:\n{}",
        String::from_utf8_lossy(&out.stderr),
        op.log_text()
    );
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn claims_of(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64url::decode(part.as_bytes()).unwrap()).unwrap()
}

/// A certificate-bound token from the provider's mTLS port, for `client` presenting its certificate.
fn mtls_token(op: &Provider, client: &str) -> String {
    let pki = pki();
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "10", "--cacert"])
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(pki.join(format!("{client}.pem")))
        .arg("--key")
        .arg(pki.join(format!("{client}.key")))
        .args(["-u", &format!("{client}:{client}-secret-for-the-interop-test")])
        .args(["-d", "grant_type=client_credentials", "-d", "scope=accounts", "-d", &format!("resource={RESOURCE}")])
        .arg(format!("https://127.0.0.1:{}/token", op.https))
        .output()
        .unwrap();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    body["access_token"].as_str().unwrap_or_else(|| panic!("no token: {body}\n{}", op.log_text())).to_string()
}

#[test]
fn a_certified_provider_and_client_library_work_end_to_end() {
    let dir = interop_dir();
    let scratch = scratch_dir("interop");
    let op = Provider::start(&dir, &scratch, free_port(), free_port(), false);
    let plugin = PluginSettings { env_keys: vec![NONCE_ENV.to_string()], ..PluginSettings::default() };
    let launch = Launch {
        plugin,
        env: vec![(NONCE_ENV.to_string(), "interop-nonce-key-0123456789-abcdefghijklmnop".to_string())],
        cluster_ports: vec![("oidc_provider".to_string(), op.http)],
        ..Launch::default()
    };
    let envoy = Envoy::start_fed(&interop_policy(), launch);

    let lines = client(&dir, &op, &envoy, "claims,dpop-ES256,dpop-PS256,dpop-Ed25519,bearer");
    // What the provider's RFC 9068 tokens carry (recorded in the README's interoperability section).
    let claims = &lines[0];
    assert_eq!(claims["header"]["typ"], "at+jwt", "{claims}");
    assert_eq!(claims["header"]["alg"], "ES256");
    let c = &claims["claims"];
    assert_eq!(c["aud"], RESOURCE, "aud is a string: {c}");
    assert_eq!(c["sub"], "moneywise-app", "sub is the client id under client credentials");
    assert_eq!(c["client_id"], "moneywise-app");
    assert_eq!(c["iss"], ISSUER);
    assert!(c.get("nbf").is_none(), "no nbf: {c}");
    assert!(c["cnf"]["jkt"].is_string() && c["scope"] == "payments" && c["jti"].is_string(), "{c}");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);

    for alg in ["ES256", "PS256", "Ed25519"] {
        let case = format!("dpop-{alg}");
        let mine: Vec<&Value> = lines.iter().filter(|l| l["case"] == case.as_str()).collect();
        assert_eq!(mine.len(), 2, "{lines:?}");
        for l in &mine {
            assert_eq!(l["token_type"], "dpop", "{l}");
            assert_eq!((l["status"].as_u64(), l["auth"].as_str()), (Some(200), Some("dpop")), "{alg}: {l}");
            assert_eq!(l["client"], "moneywise-app");
        }
        // The nonce route asks once (use_dpop_nonce), the client retries with the nonce.
        let nonce_route = mine.iter().find(|l| l["path"] == "/domestic-payment-consents").unwrap();
        assert_eq!(nonce_route["nonce_retries"], 1, "{nonce_route}");
        let plain_route = mine.iter().find(|l| l["path"] == "/account-access-consents").unwrap();
        assert_eq!(plain_route["nonce_retries"], 0, "{plain_route}");
    }
    let bearer = lines.iter().find(|l| l["case"] == "bearer").unwrap();
    assert_eq!((bearer["status"].as_u64(), bearer["auth"].as_str()), (Some(200), Some("bearer")), "{bearer}");
    assert_eq!(bearer["token_type"], "bearer");
    assert!(envoy.counter("nhi_guard.denied.dpop_nonce_missing") >= 3);

    // mTLS-bound: the provider binds the token to the certificate on its TLS port; the gateway
    // takes it only over that certificate.
    let t = mtls_token(&op, "moneywise-insights");
    assert!(claims_of(&t)["cnf"]["x5t#S256"].is_string(), "{}", claims_of(&t));
    let auth = format!("Bearer {t}");
    let r = envoy.send_tls("POST", "/account-access-consents", &[("authorization", &auth)], Some("moneywise-insights"));
    let r = r.unwrap();
    assert_eq!((r.status, r.upstream_header("x-nhi-auth").as_deref()), (200, Some("mtls-bound")), "{}", r.body);
    let r = envoy.send_tls("POST", "/account-access-consents", &[("authorization", &auth)], Some("moneywise-app"));
    assert_eq!(r.unwrap().reason(), "certificate_binding_mismatch");
    let r = envoy.send("POST", "/account-access-consents", &[("authorization", &auth)]);
    assert_eq!(r.reason(), "certificate_binding_missing");

    // Key rotation at the provider: a new ES256 key signs, the old ones stay published. The gateway
    // meets the new kid, refetches the JWKS and takes the token.
    let old_kid = op.signing_kid();
    let (http, https) = (op.http, op.https);
    drop(op);
    let op = Provider::start(&dir, &scratch, http, https, true);
    let new_kid = op.signing_kid();
    assert_ne!(old_kid, new_kid);
    let lines = client(&dir, &op, &envoy, "dpop-ES256");
    for l in &lines {
        assert_eq!(l["kid"], new_kid.as_str(), "{l}");
        assert_eq!((l["status"].as_u64(), l["auth"].as_str()), (Some(200), Some("dpop")), "after rotation: {l}");
    }
    assert!(envoy.counter("nhi_guard.jwks.refetch_requested") >= 1);
}
