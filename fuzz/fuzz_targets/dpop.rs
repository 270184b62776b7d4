//! Any bytes as a DPoP proof for a DPoP-bound token, through the whole decision (proof parsing,
//! embedded-JWK decoding, thumbprint, replay cache), and as the mTLS peer's URI SAN: decided,
//! never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nhi_guard::engine::credentials::PeerCertificate;
use nhi_guard::engine::jwt::verifier::PureRust;
use nhi_guard::tools::mint::{access_token_header, bind_to_dpop_key, example, sign_jws, SigningKey};
use nhi_guard::{Engine, RequestFacts};
use std::cell::RefCell;
use std::rc::Rc;

const NOW: i64 = 1_795_478_400;

thread_local! {
    // Built once: loading the policy and verifying the token would dominate every run otherwise
    // (the engine's token cache then answers; the proof is checked afresh each run).
    static FIXTURE: Option<(RefCell<Engine>, String)> = fixture();
}

fn fixture() -> Option<(RefCell<Engine>, String)> {
    let policy = nhi_guard::load_policy(include_str!("../../policies/open-banking.json"), "fuzz").ok()?;
    let mut engine = Engine::new(Rc::new(policy), Box::new(PureRust));
    engine.observe_feed(1, NOW, || Some(br#"{"version":1,"produced_at":"2026-11-24T00:00:00Z"}"#.to_vec())).ok()?;
    let issuer = SigningKey::from_pkcs8_pem(include_str!("../../policies/demo-keys/as-es256.pem"), nhi_guard::engine::keys::Alg::PS256).ok()?;
    let dpop_key = SigningKey::es256_from_bytes(&[2u8; 32]).ok()?;
    let claims = bind_to_dpop_key(example::customer_claims("moneywise-app", "payments", NOW - 5), &dpop_key);
    Some((RefCell::new(engine), format!("DPoP {}", sign_jws(&access_token_header(&issuer, "as-es256"), &claims, &issuer))))
}

fuzz_target!(|data: &[u8]| {
    FIXTURE.with(|f| {
        if let Some((engine, auth)) = f {
            run(&mut engine.borrow_mut(), auth, data);
        }
    });
});

fn run(engine: &mut Engine, auth: &str, data: &[u8]) {
    let (proof, san) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], std::str::from_utf8(&data[i + 1..]).ok()),
        None => (data, None),
    };
    let peer = san.map(|s| PeerCertificate { sha256: [0u8; 32], uri_san: Some(s) });
    let facts = RequestFacts {
        method: "POST",
        path: "/domestic-vrps",
        authorization: &[auth.as_bytes()],
        consent: &[],
        dpop: &[proof],
        peer,
        now: NOW, method_override: false,
    };
    let _ = engine.decide(&facts);
}
