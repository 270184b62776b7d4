//! The decision pipeline, by concern: one file per part of the request's way (machine authority,
//! consent, revocation, fetched keys, sender constraint), each a table of cases read like the
//! reason table, and one test that every reason the engine can give is produced by some case.

use super::*;
use crate::engine::base64url;
use crate::engine::credentials::IDENTITY_HEADER_PREFIX;
use crate::engine::jwt::verifier::VerifierFault;
use crate::engine::keys::VerificationKey;
use crate::engine::testkit::*;
use crate::tools::mint::{sign_jws, signing_input, SigningKey};
use serde_json::json;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod consent;
mod jwks;
mod machine_authority;
mod revocation;
mod sender;

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    authorization: Vec<String>,
    consent: Vec<String>,
    expect: Result<&'static str, Reason>,
}

impl Case {
    fn consent(mut self, values: Vec<String>) -> Case {
        self.consent = values;
        self
    }
}

fn case(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    auth: Vec<String>,
    expect: Result<&'static str, Reason>,
) -> Case {
    Case { name, method, path, authorization: auth, consent: Vec::new(), expect }
}

fn with(mut claims: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    claims[key] = value;
    claims
}

fn without(mut claims: serde_json::Value, key: &str) -> serde_json::Value {
    if let Some(o) = claims.as_object_mut() {
        o.remove(key);
    }
    claims
}

fn header_token(header: serde_json::Value, claims: &serde_json::Value) -> String {
    sign_jws(&header, claims, &es256())
}

/// Runs each case on one engine (so caches carry over, as in a worker) and reports every mismatch.
fn check_cases(cases: Vec<Case>) {
    let mut engine = engine();
    let mut failures = Vec::new();
    for c in cases {
        let auth: Vec<&str> = c.authorization.iter().map(String::as_str).collect();
        let consent: Vec<&str> = c.consent.iter().map(String::as_str).collect();
        let got = decide_with_consent(&mut engine, c.method, c.path, &auth, &consent);
        let got = got.as_ref().map(String::as_str).map_err(|r| *r);
        if got != c.expect {
            failures.push(format!("{}: expected {:?}, got {:?}", c.name, c.expect, got));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every reason the engine can give is produced by some test here: the tests of every file run
/// again on this thread, and the reasons the engine actually answered with are collected (not the
/// ones the tables expect). Two come only from the filter shell, which has its own tests.
#[test]
fn every_reason_the_engine_gives_is_produced_by_a_test() {
    take_reasons();
    for test in [machine_authority::TESTS, consent::TESTS, revocation::TESTS, jwks::TESTS, sender::TESTS].concat() {
        test();
    }
    let produced = take_reasons();
    let filter_only = [Reason::PolicyUnavailable, Reason::HostError];
    let missing: Vec<_> = Reason::ALL.iter().filter(|r| !produced.contains(r) && !filter_only.contains(r)).collect();
    assert!(missing.is_empty(), "reasons no test produces: {missing:?}");
}
