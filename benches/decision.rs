//! Microbenchmarks of the core decision, natively (`cargo bench`). The Envoy load benchmark is
//! scripts/bench.sh; these isolate the core's own cost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use nhi_guard::engine::credentials::PeerCertificate;
use nhi_guard::engine::jwt::verifier::PureRust;
use nhi_guard::engine::keys::Alg;
use nhi_guard::tools::mint::{
    access_token_header, bind_to_certificate, bind_to_dpop_key, dpop_proof, sign_jws, SigningKey,
};
use nhi_guard::{Decision, Engine, RequestFacts};
use std::rc::Rc;

const NOW: i64 = 1_795_478_400;

const FEED: &[u8] = br#"{"version": 1, "produced_at": "2026-11-24T00:00:00Z"}"#;

fn engine() -> Engine {
    let policy = nhi_guard::load_policy(include_str!("../policies/open-banking.json"), "bench").unwrap();
    with_feed(Engine::new(Rc::new(policy), Box::new(PureRust)))
}

fn with_feed(mut e: Engine) -> Engine {
    e.observe_feed(1, NOW, || Some(FEED.to_vec())).unwrap();
    e
}

fn token(key_pem: &str, kid: &str, alg: Alg, jti: u32) -> String {
    let key = SigningKey::from_pkcs8_pem(key_pem, alg).unwrap();
    let mut claims = nhi_guard::tools::mint::example::customer_claims("moneywise-app", "accounts payments", NOW - 5);
    claims["jti"] = serde_json::json!(format!("bench-{jti}"));
    format!("Bearer {}", sign_jws(&access_token_header(&key, kid), &claims, &key))
}

fn decide(engine: &mut Engine, auth: &str) -> bool {
    let a = [auth.as_bytes()];
    let facts = RequestFacts {
        method: "GET",
        path: "/accounts/22289/balances",
        authorization: &a,
        consent: &[],
        dpop: &[],
        peer: None,
        now: NOW,
        method_override: false,
    };
    matches!(engine.decide(&facts), Decision::Allow(_))
}

fn benches(c: &mut Criterion) {
    let es = token(include_str!("../policies/demo-keys/as-es256.pem"), "as-es256", Alg::ES256, 0);
    let mut e = engine();
    assert!(decide(&mut e, &es));
    c.bench_function("decision, cached ES256 token", |b| b.iter(|| decide(&mut e, black_box(&es))));

    for (name, pem, kid, alg) in [
        ("ES256", include_str!("../policies/demo-keys/as-es256.pem"), "as-es256", Alg::ES256),
        ("EdDSA", include_str!("../policies/demo-keys/as-eddsa.pem"), "as-eddsa", Alg::EdDSA),
        ("PS256", include_str!("../policies/demo-keys/as-ps256.pem"), "as-ps256", Alg::PS256),
    ] {
        let t = token(pem, kid, alg, 1);
        c.bench_function(&format!("decision, uncached {name} token (pure Rust verify)"), |b| {
            b.iter(|| {
                let mut e = engine_nocache();
                decide(&mut e, black_box(&t))
            })
        });
    }
    // Sender-constrained: a cached mTLS-bound token (binding checked per request), and a cached
    // DPoP-bound token with a fresh proof each time (proof signature and replay cache per request).
    let es_key = SigningKey::from_pkcs8_pem(include_str!("../policies/demo-keys/as-es256.pem"), Alg::ES256).unwrap();
    let payer = nhi_guard::tools::mint::example::customer_claims("moneywise-app", "payments", NOW - 5);
    let cert = [7u8; 32];
    let bound =
        sign_jws(&access_token_header(&es_key, "as-es256"), &bind_to_certificate(payer.clone(), &cert), &es_key);
    let bound = format!("Bearer {bound}");
    let mut e = engine();
    let vrp = |e: &mut Engine, auth: &str, dpop: &[&[u8]], peer| {
        let a = [auth.as_bytes()];
        let facts = RequestFacts {
            method: "POST",
            path: "/domestic-vrps",
            authorization: &a,
            consent: &[],
            dpop,
            peer,
            now: NOW,
            method_override: false,
        };
        matches!(e.decide(&facts), Decision::Allow(_))
    };
    let peer = Some(PeerCertificate { sha256: cert, uri_san: None });
    assert!(vrp(&mut e, &bound, &[], peer));
    c.bench_function("decision, cached mTLS-bound token", |b| b.iter(|| vrp(&mut e, black_box(&bound), &[], peer)));
    let dpop_key = SigningKey::es256_from_bytes(&[3u8; 32]).unwrap();
    let dpop_token = sign_jws(&access_token_header(&es_key, "as-es256"), &bind_to_dpop_key(payer, &dpop_key), &es_key);
    let scheme = format!("DPoP {dpop_token}");
    let mut n = 0u64;
    c.bench_function("decision, cached DPoP-bound token + new ES256 proof (pure Rust verify)", |b| {
        b.iter_batched(
            || {
                n += 1;
                dpop_proof(
                    &dpop_key,
                    "POST",
                    "https://api.bank.example/domestic-vrps",
                    &dpop_token,
                    NOW,
                    &format!("p{n}"),
                )
            },
            |proof| {
                let p = [proof.as_bytes()];
                assert!(vrp(&mut e, &scheme, &p, None));
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let garbage = "Bearer eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.c2ln".to_string();
    c.bench_function("decision, garbage token", |b| b.iter(|| decide(&mut e, black_box(&garbage))));
}

fn engine_nocache() -> Engine {
    thread_local! {
        static POLICY: Rc<nhi_guard::Policy> = {
            let mut doc: serde_json::Value = serde_json::from_str(include_str!("../policies/open-banking.json")).unwrap();
            doc["settings"]["token_cache_entries"] = serde_json::json!(0);
            Rc::new(nhi_guard::load_policy(&doc.to_string(), "bench").unwrap())
        };
    }
    POLICY.with(|p| with_feed(Engine::new(p.clone(), Box::new(PureRust))))
}

criterion_group! {
    name = core;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(core);
