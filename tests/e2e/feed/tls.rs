//! The service's own TLS listener with client certificates: a push stream and an API caller that
//! authenticate by certificate (SHA-256 pin, SPIFFE URI SAN), and everything that must not pass.

use super::*;
use crate::harness::{cert_sha256, pki};
use serde_json::json;

fn call(client: &reqwest::blocking::Client, url: &str, bearer: Option<&str>, body: &Value) -> u16 {
    let mut req = client.post(url).json(body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    req.send().map(|r| r.status().as_u16()).unwrap_or(0)
}

fn push(client: &reqwest::blocking::Client, url: &str, bearer: Option<&str>, set: &str) -> u16 {
    let mut req = client.post(url).header("content-type", "application/secevent+jwt").body(set.to_string());
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    req.send().map(|r| r.status().as_u16()).unwrap_or(0)
}

#[test]
fn pushes_and_api_callers_authenticate_by_client_certificate() {
    let pki = pki();
    let tx = Transmitter::start();
    let pin = nhi_guard::engine::base64url::encode(&cert_sha256("moneywise-insights"));
    let svc = Service::start(&Db::Sqlite, Some(&tx), |c| {
        c["tls"] = json!({"cert_file": pki.join("server.pem"), "key_file": pki.join("server.key"), "client_ca_file": pki.join("ca.pem")});
        // The transmitter pushes with its certificate (pinned by SHA-256) and no bearer secret.
        c["streams"][0]["delivery"] = json!({"method": "push", "client_certificate": {"sha256": pin}});
        // A platform job offboards by its SPIFFE ID; a caller with both needs both.
        let callers = c["api"]["callers"].as_array_mut().unwrap();
        callers.push(json!({"name": "statements-platform", "actions": ["revoke_client"],
            "client_certificate": {"uri_san": "spiffe://bank.internal/ns/statements/sa/statements-batch"}}));
        callers
            .push(json!({"name": "strict-caller", "token_env": "FEED_API_CONSENT_MGR", "actions": ["revoke_client"],
            "client_certificate": {"uri_san": "spiffe://bank.internal/ns/sandbox/sa/unknown-workload"}}));
        callers.remove(1);
    });
    let url = |p: &str| svc.url(p);
    let set = |jti: &str| tx.set(jti, &format!("{RISC}account-disabled"), json!({}), opaque(&format!("app-{jti}")));

    // Pushes: the pinned certificate passes; another certificate (same CA), none, or a bearer secret alone do not.
    assert_eq!(push(&tls_client(Some("moneywise-insights")), &url("/ssf/push/idp"), None, &set("a")), 202);
    assert_eq!(push(&tls_client(Some("moneywise-app")), &url("/ssf/push/idp"), None, &set("b")), 401);
    assert_eq!(push(&tls_client(None), &url("/ssf/push/idp"), Some(PUSH_TOKEN), &set("c")), 401);
    assert_eq!(svc.feed()["clients"], json!(["app-a"]));

    // API: the SPIFFE ID authenticates its caller; the audit names it.
    let body = json!({"reason": "decommissioned"});
    assert_eq!(call(&tls_client(Some("statements-batch")), &url("/v1/clients/old-batch/revoke"), None, &body), 200);
    assert_eq!(svc.audit("offboarding").last().unwrap()["who"], "statements-platform");
    // Another workload's certificate is no caller; nor is no certificate.
    assert_eq!(call(&tls_client(Some("unknown-workload")), &url("/v1/clients/x/revoke"), None, &body), 401);
    assert_eq!(call(&tls_client(None), &url("/v1/clients/x/revoke"), None, &body), 401);
    // Both credentials configured: both needed.
    assert_eq!(call(&tls_client(None), &url("/v1/clients/x/revoke"), Some(CONSENT_MGR), &body), 401);
    assert_eq!(
        call(&tls_client(Some("unknown-workload")), &url("/v1/clients/y/revoke"), Some(CONSENT_MGR), &body),
        200
    );
    // A bearer-only caller still works over TLS without a certificate.
    assert_eq!(call(&tls_client(None), &url("/v1/partners/acme/offboard"), Some(PARTNER_MGMT), &body), 200);

    // A certificate from outside the CA, even with the right SPIFFE ID, fails the handshake.
    let dir = scratch_dir("rogue");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args([
            "-subj",
            "/CN=rogue",
            "-addext",
            "subjectAltName=URI:spiffe://bank.internal/ns/statements/sa/statements-batch",
        ])
        .arg("-keyout")
        .arg(dir.join("rogue.key"))
        .arg("-out")
        .arg(dir.join("rogue.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut pem = std::fs::read(dir.join("rogue.pem")).unwrap();
    pem.extend(std::fs::read(dir.join("rogue.key")).unwrap());
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.pem")).unwrap()).unwrap();
    let rogue = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    assert_eq!(call(&rogue, &url("/v1/clients/z/revoke"), None, &body), 0, "a rogue certificate got an answer");
    // Plain HTTP on the TLS port gets nothing either.
    assert_eq!(
        call(&http(), &format!("http://127.0.0.1:{}/v1/clients/z/revoke", svc.port), Some(PARTNER_MGMT), &body),
        0
    );
    let clients = svc.feed()["clients"].clone();
    assert_eq!(clients, json!(["app-a", "old-batch", "y"]));
}
