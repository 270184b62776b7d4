//! Arbitrary request facts (path, method, Authorization and consent values, a serialized header
//! map) through the whole decision on the example policy: it must decide, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nhi_guard::engine::jwt::verifier::PureRust;
use nhi_guard::engine::header_map;
use nhi_guard::{Engine, RequestFacts};
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    // Built once: loading the policy would otherwise dominate every run.
    static ENGINE: Option<RefCell<Engine>> = engine();
}

fn engine() -> Option<RefCell<Engine>> {
    let policy = nhi_guard::load_policy(include_str!("../../policies/open-banking.json"), "fuzz").ok()?;
    let mut engine = Engine::new(Rc::new(policy), Box::new(PureRust));
    engine.observe_feed(1, 1_795_478_400, || Some(br#"{"version":1,"produced_at":"2026-11-24T00:00:00Z"}"#.to_vec())).ok()?;
    Some(RefCell::new(engine))
}

fuzz_target!(|data: &[u8]| {
    let _ = header_map::pairs(data).count();
    let mut parts = data.splitn(5, |b| *b == b'\n');
    let method = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or("GET");
    let path = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or("/");
    let auth = parts.next().unwrap_or_default();
    let consent = parts.next().unwrap_or_default();
    let method_override = parts.next().is_some_and(|rest| rest.first() == Some(&b'!'));
    let facts = RequestFacts {
        method,
        path,
        authorization: &[auth],
        consent: &[consent],
        dpop: &[],
        peer: None,
        now: 1_795_478_400,
        method_override,
    };
    ENGINE.with(|e| {
        if let Some(engine) = e {
            let _ = engine.borrow_mut().decide(&facts);
        }
    });
});
