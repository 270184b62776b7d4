//! Shared fixtures for the core's unit tests: the example policy, its demo keys, token builders.
//! Compiled for tests only; runs natively and under wasm-bindgen-test.

use crate::engine::credentials::RequestFacts;
use crate::engine::decision::{Decision, Engine};
use crate::engine::jwt::verifier::PureRust;
use crate::engine::keys::Alg;
use crate::engine::policy::Policy;
use crate::engine::reason::Reason;
use crate::tools::mint::{access_token_header, consent_header, example, sign_jws, SigningKey};
use serde_json::Value;
use std::rc::Rc;

/// 2026-11-24T00:00:00Z: every unit test runs at this instant.
pub const NOW: i64 = 1_795_478_400;
pub use crate::tools::mint::example::{AUD, ISS};

pub const POLICY_JSON: &str = include_str!("../../policies/open-banking.json");

pub fn policy() -> Policy {
    crate::engine::policy::load(POLICY_JSON, "policies/open-banking.json").unwrap()
}

pub fn es256() -> SigningKey {
    SigningKey::from_pkcs8_pem(include_str!("../../policies/demo-keys/as-es256.pem"), Alg::PS256).unwrap()
}

pub fn eddsa() -> SigningKey {
    SigningKey::from_pkcs8_pem(include_str!("../../policies/demo-keys/as-eddsa.pem"), Alg::PS256).unwrap()
}

pub fn ps256() -> SigningKey {
    SigningKey::from_pkcs8_pem(include_str!("../../policies/demo-keys/as-ps256.pem"), Alg::PS256).unwrap()
}

/// The internal STS's demo key (published through its JWKS endpoint, `remote_jwks`).
pub fn sts() -> SigningKey {
    SigningKey::from_pkcs8_pem(include_str!("../../policies/demo-keys/sts-es256.pem"), Alg::PS256).unwrap()
}

/// Index of the STS in the example policy's issuers.
pub const STS_INDEX: usize = 1;
pub use crate::tools::mint::example::STS_ISS;

/// A JWKS document publishing `keys` under their kids.
pub fn jwks_of(keys: &[(&SigningKey, &str)]) -> Vec<u8> {
    let keys: Vec<Value> = keys.iter().map(|(k, kid)| k.public_jwk(kid)).collect();
    serde_json::json!({ "keys": keys }).to_string().into_bytes()
}

/// A client-credentials token from the STS, signed by `key` under `kid`.
pub fn sts_token(client: &str, scope: &str, key: &SigningKey, kid: &str) -> String {
    let claims = crate::tools::mint::access_token_claims(STS_ISS, AUD, client, scope, NOW - 10, 300);
    sign_jws(&access_token_header(key, kid), &claims, key)
}

/// A key the bank never published: what a forger holds.
pub fn attacker() -> SigningKey {
    SigningKey::es256_from_bytes(&[7u8; 32]).unwrap()
}

pub use crate::tools::mint::example::CONSENT_ISS;

/// Valid claims for `client` acting for CUSTOMER with `scope` and a consent granting every
/// permission, issued 10 s before NOW, living 5 minutes.
pub fn claims(client: &str, scope: &str) -> Value {
    example::customer_claims(client, scope, NOW - 10)
}

/// Customer-bound claims without consent: the consent comes as an artefact.
pub fn customer_claims(client: &str, scope: &str) -> Value {
    example::customer_without_consent(client, scope, NOW - 10)
}

/// Client-credentials claims: no customer (`sub` is the client), no consent.
pub fn cc_claims(client: &str, scope: &str) -> Value {
    example::client_credentials_claims(client, scope, NOW - 10)
}

pub fn consent_key() -> SigningKey {
    SigningKey::from_pkcs8_pem(include_str!("../../policies/demo-keys/consent-es256.pem"), Alg::PS256).unwrap()
}

/// A consent artefact signed by the consent service.
pub fn artefact(claims: &Value) -> String {
    let key = consent_key();
    sign_jws(&consent_header(&key, "consent-es256"), claims, &key)
}

/// Artefact claims: CUSTOMER granted `client` the `permissions`, for an hour from NOW - 60.
pub fn artefact_claims(client: &str, consent_id: &str, permissions: &[&str]) -> Value {
    example::artefact_claims(client, consent_id, permissions, NOW - 60)
}

pub fn token(claims: &Value) -> String {
    let key = es256();
    sign_jws(&access_token_header(&key, "as-es256"), claims, &key)
}

/// An empty revocation feed document, version 1.
pub const EMPTY_FEED: &[u8] = br#"{"version": 1, "produced_at": "2026-11-24T00:00:00Z"}"#;

/// An engine on the example policy that has just seen an empty revocation feed.
pub fn engine() -> Engine {
    engine_with(Box::new(PureRust))
}

/// An engine on another policy document (JSON), having seen an empty feed.
pub fn engine_for(json: &str) -> Engine {
    engine_for_env(json, &|_| None)
}

/// `engine_for` on a policy that reads secrets from the VM environment (`env` stands in for it).
pub fn engine_for_env(json: &str, env: &dyn Fn(&str) -> Option<String>) -> Engine {
    let policy = crate::engine::policy::load_with_env(json, "test policy", env).unwrap();
    let mut e = Engine::new(Rc::new(policy), Box::new(PureRust));
    e.observe_feed(1, NOW, || Some(EMPTY_FEED.to_vec())).unwrap();
    e
}

pub fn engine_with(verifier: Box<dyn crate::engine::jwt::verifier::SignatureVerifier>) -> Engine {
    let mut e = Engine::new(Rc::new(policy()), verifier);
    e.observe_feed(1, NOW, || Some(EMPTY_FEED.to_vec())).unwrap();
    e
}

/// Runs one request; `Ok(route id)` when allowed.
pub fn decide(engine: &mut Engine, method: &str, path: &str, authorization: &[&str]) -> Result<String, Reason> {
    decide_with_consent(engine, method, path, authorization, &[])
}

/// Runs one request with consent-header values.
pub fn decide_with_consent(
    engine: &mut Engine,
    method: &str,
    path: &str,
    authorization: &[&str],
    consent: &[&str],
) -> Result<String, Reason> {
    let authorization: Vec<&[u8]> = authorization.iter().map(|a| a.as_bytes()).collect();
    let consent: Vec<&[u8]> = consent.iter().map(|a| a.as_bytes()).collect();
    let facts = RequestFacts {
        method,
        path,
        authorization: &authorization,
        consent: &consent,
        dpop: &[],
        peer: None,
        now: NOW,
        method_override: false,
    };
    match engine.decide(&facts) {
        Decision::Allow(a) => Ok(a.route.id.clone()),
        Decision::Deny(d) => Err(d.reason),
    }
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

thread_local! {
    /// The reasons the engine denied with on this thread (the coverage test reads them).
    static REASONS: std::cell::RefCell<std::collections::HashSet<Reason>> = std::cell::RefCell::default();
}

/// Called by the engine for every denial it decides in a test build.
pub fn record_reason(reason: Reason) {
    REASONS.with(|r| r.borrow_mut().insert(reason));
}

/// The reasons recorded on this thread so far, clearing them.
pub fn take_reasons() -> std::collections::HashSet<Reason> {
    REASONS.with(|r| std::mem::take(&mut *r.borrow_mut()))
}
