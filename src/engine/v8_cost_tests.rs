//! The engine's own cost in V8, the JavaScript engine Envoy runs Wasm in (here under Node):
//! a cached decision, and a decision with its audit events and identity headers. Ignored by
//! default (a measurement, not a check); docs/performance.md has the command and the figures.
use crate::engine::credentials::RequestFacts;
use crate::engine::decision::Decision;
use crate::engine::testkit::*;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
#[ignore]
fn v8_cost_of_a_cached_decision_and_audit() {
    let mut e = engine();
    let t = bearer(&token(&claims("moneywise-app", "accounts")));
    let a = [t.as_bytes()];
    let facts = RequestFacts { authorization: &a, ..RequestFacts::new("GET", "/accounts/22289/balances", NOW) };
    for _ in 0..1000 {
        let _ = e.decide(&facts);
    }
    let n: u32 = 20_000;
    let t0 = js_sys::Date::now();
    for _ in 0..n {
        let _ = std::hint::black_box(e.decide(&facts));
    }
    let t1 = js_sys::Date::now();
    let ctx = crate::engine::audit::AuditContext {
        decision_id: "0123456789abcdef01234567",
        time_ms: NOW * 1000,
        request_id: "2702439b-97b0-43cd-a033-ecf81d45076f",
        interaction_id: "2702439b-97b0-43cd-a033-ecf81d45076f",
        outcome: crate::engine::audit::Outcome::Allow,
    };
    let t2 = js_sys::Date::now();
    for _ in 0..n {
        let (p, d) = e.decide_with_policy(&facts);
        let ev = crate::engine::audit::events(p, &d, &ctx);
        std::hint::black_box(ev);
        if let Decision::Allow(a) = &d {
            std::hint::black_box(a.upstream_headers());
        }
    }
    let t3 = js_sys::Date::now();
    wasm_bindgen_test::console_log!(
        "V8: cached decision {:.2} us; with audit events and identity headers {:.2} us",
        (t1 - t0) * 1000.0 / f64::from(n),
        (t3 - t2) * 1000.0 / f64::from(n)
    );
}
