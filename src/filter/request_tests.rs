//! The request path against a fake host: what the filter gathers from the headers Envoy hands it,
//! and what it does with the decision (headers, replies, counters, audit state), including when
//! host calls fail. Runs natively and under wasm-bindgen-test.

use super::*;
use crate::engine::header_map;
use crate::engine::jwt::verifier::PureRust;
use crate::engine::shared_state::{encode_status, SourceKeys};
use crate::engine::testkit::{artefact, artefact_claims, bearer, claims, customer_claims, policy, token, NOW};
use crate::filter::host::MetricKind;
use std::collections::HashMap;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A local reply as the fake host saw it: status, headers, body.
type Reply = (u16, Vec<(String, String)>, String);
/// (what, request headers, expected status and reason)
type Case<'a> = (&'a str, Vec<(&'a str, Vec<u8>)>, (u16, &'a str));

/// A host that records every call. Failures are switched on per test.
#[derive(Default)]
struct FakeHost {
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    properties: HashMap<String, Vec<u8>>,
    shared: RefCell<HashMap<String, Vec<u8>>>,
    fail_remove: bool,
    fail_add: bool,
    fail_reply: bool,
    no_clock: bool,
    removed: RefCell<Vec<String>>,
    added: RefCell<Vec<(String, String)>>,
    set: RefCell<Vec<(String, String)>>,
    response_headers: RefCell<Vec<(String, String)>>,
    reply: RefCell<Option<Reply>>,
    reset: Cell<bool>,
    state: RefCell<HashMap<String, String>>,
    metrics: RefCell<Vec<String>>,
    counts: RefCell<HashMap<u32, u64>>,
    logs: RefCell<Vec<String>>,
}

impl Host for FakeHost {
    fn request_headers(&self) -> Option<Vec<u8>> {
        let pairs: Vec<(&[u8], &[u8])> = self.headers.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        Some(header_map::serialize(&pairs))
    }
    fn remove_request_header(&self, name: &str) -> bool {
        self.removed.borrow_mut().push(name.into());
        !self.fail_remove
    }
    fn add_request_header(&self, name: &str, value: &str) -> bool {
        self.added.borrow_mut().push((name.into(), value.into()));
        !self.fail_add
    }
    fn set_request_header(&self, name: &str, value: &str) -> bool {
        self.set.borrow_mut().push((name.into(), value.into()));
        true
    }
    fn set_response_header(&self, name: &str, value: &str) -> bool {
        self.response_headers.borrow_mut().push((name.into(), value.into()));
        true
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties.get(&path.join(".")).cloned()
    }
    fn send_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        *self.reply.borrow_mut() = Some((status, headers, String::from_utf8_lossy(body).into()));
        !self.fail_reply
    }
    fn reset_request(&self) {
        self.reset.set(true);
    }
    fn set_filter_state(&self, key: &str, value: &[u8]) -> bool {
        self.state.borrow_mut().insert(key.into(), String::from_utf8_lossy(value).into());
        true
    }
    fn now_ms(&self) -> Option<i64> {
        (!self.no_clock).then_some(NOW * 1000)
    }
    fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.borrow().get(key).cloned()
    }
    fn set_shared_data(&self, key: &str, value: &[u8]) -> bool {
        self.shared.borrow_mut().insert(key.into(), value.to_vec());
        true
    }
    fn define_metric(&self, _kind: MetricKind, name: &str) -> Option<u32> {
        let mut m = self.metrics.borrow_mut();
        m.push(name.into());
        u32::try_from(m.len() - 1).ok()
    }
    fn increment(&self, metric: u32, by: u64) {
        *self.counts.borrow_mut().entry(metric).or_default() += by;
    }
    fn record(&self, metric: u32, value: u64) {
        self.counts.borrow_mut().insert(metric, value);
    }
    fn log(&self, _level: Level, message: &str) {
        self.logs.borrow_mut().push(message.into());
    }
}

impl FakeHost {
    /// A request with these headers, and the example policy's feed published as fresh.
    fn with(headers: &[(&str, &[u8])]) -> FakeHost {
        let host = FakeHost {
            headers: headers.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec())).collect(),
            ..FakeHost::default()
        };
        let p = policy();
        let keys = SourceKeys::feed(p.revocation.as_ref().unwrap());
        host.set_shared_data(&keys.status, &encode_status(1, NOW));
        host.set_shared_data(&keys.document, br#"{"version": 1, "produced_at": "2026-11-24T00:00:00Z"}"#);
        host
    }

    fn count(&self, name: &str) -> u64 {
        let id = self.metrics.borrow().iter().position(|m| m == name);
        id.and_then(|i| self.counts.borrow().get(&u32::try_from(i).unwrap()).copied()).unwrap_or(0)
    }

    fn added(&self, name: &str) -> Option<String> {
        self.added.borrow().iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn reply_reason(&self) -> Option<(u16, String)> {
        let reply = self.reply.borrow();
        let (status, _, body) = reply.as_ref()?;
        let json: serde_json::Value = serde_json::from_str(body).ok()?;
        Some((*status, json["reason"].as_str()?.to_string()))
    }
}

/// A worker for the example policy, its metrics defined on `host`.
fn worker(host: &FakeHost) -> Worker {
    let p = policy();
    let sources = WorkerSources::new(p.revocation.as_ref().map(SourceKeys::feed), Vec::new());
    let metrics = Metrics::define(host, &p);
    Worker {
        engine: Some(RefCell::new(Engine::new(Rc::new(p), Box::new(PureRust)))),
        metrics: Some(metrics),
        sources,
        ids: RefCell::new(IdSource::new(7)),
    }
}

const BALANCES: &[u8] = b"/accounts/22289/balances";

fn run(host: &FakeHost) -> Verdict {
    let w = worker(host);
    let mut exchange = Exchange::default();
    let verdict = exchange.on_request_headers(host, &w);
    exchange.on_response_headers(host);
    // The worker's next tick hands the counts to Envoy.
    if let Some(m) = &w.metrics {
        m.flush(host);
    }
    verdict
}

#[test]
fn decision_counters_reach_the_host_on_the_tick_not_per_request() {
    let auth = bearer(&token(&claims("moneywise-app", "accounts")));
    let host = FakeHost::with(&[(":method", b"GET"), (":path", BALANCES), ("authorization", auth.as_bytes())]);
    let w = worker(&host);
    for _ in 0..3 {
        assert_eq!(Exchange::default().on_request_headers(&host, &w), Verdict::Continue);
    }
    assert_eq!(host.count("nhi_guard.allowed"), 0, "no host call per request");
    let m = w.metrics.as_ref().unwrap();
    m.flush(&host);
    assert_eq!(host.count("nhi_guard.allowed"), 3);
    assert_eq!(host.count("nhi_guard.route.balances.allowed"), 3);
    m.flush(&host);
    assert_eq!(host.count("nhi_guard.allowed"), 3, "a flush hands each count over once");
}

#[test]
fn an_allowed_request_gets_verified_identity_and_spoofed_copies_removed() {
    let auth = bearer(&token(&claims("moneywise-app", "accounts")));
    let host = FakeHost::with(&[
        (":method", b"GET"),
        (":path", BALANCES),
        ("authorization", auth.as_bytes()),
        ("x-nhi-client", b"internal-admin"),
        ("x-nhi-scopes", b"payments"),
    ]);
    assert_eq!(run(&host), Verdict::Continue);
    assert_eq!(*host.removed.borrow(), ["x-nhi-client", "x-nhi-scopes"]);
    assert_eq!(host.added("x-nhi-client").as_deref(), Some("moneywise-app"));
    assert_eq!(host.added("x-nhi-route").as_deref(), Some("balances"));
    assert_eq!(host.added("x-nhi-auth").as_deref(), Some("bearer"));
    assert!(host.reply.borrow().is_none());
    // No interaction id from the client: a UUID goes upstream and back on the response.
    let sent = host.set.borrow().iter().find(|(k, _)| k == INTERACTION_ID).map(|(_, v)| v.clone()).unwrap();
    assert!(audit::is_uuid(sent.as_bytes()));
    assert_eq!(*host.response_headers.borrow(), [(INTERACTION_ID.to_string(), sent)]);
    assert_eq!(host.count("nhi_guard.allowed"), 1);
    assert_eq!(host.count("nhi_guard.route.balances.allowed"), 1);
    assert_eq!(host.count("nhi_guard.partner.moneywise.allowed"), 1);
    assert!(host.state.borrow()["nhi_guard_audit_token"].contains("\"outcome\":\"allow\""));
    assert!(host.logs.borrow().is_empty(), "allowed requests log nothing by default: {:?}", host.logs.borrow());
}

#[test]
fn a_denied_request_gets_a_reply_counters_audit_and_one_log_line() {
    let auth = bearer(&token(&claims("quickloans-app", "accounts")));
    let uuid = "93bac548-d2de-4546-b106-880a5018460d";
    let host = FakeHost::with(&[
        (":method", b"GET"),
        (":path", BALANCES),
        ("authorization", auth.as_bytes()),
        ("x-request-id", b"evil decision_id=forged"),
        ("x-fapi-interaction-id", uuid.as_bytes()),
    ]);
    assert_eq!(run(&host), Verdict::Stop);
    assert_eq!(host.reply_reason(), Some((403, "partner_offboarded".into())));
    let reply = host.reply.borrow();
    let (_, headers, _) = reply.as_ref().unwrap();
    assert!(headers.contains(&(INTERACTION_ID.into(), uuid.into())), "the client's UUID is echoed: {headers:?}");
    assert!(headers.contains(&("cache-control".into(), "no-store".into())));
    assert!(host.added.borrow().is_empty(), "no identity headers on a denial");
    assert_eq!(host.count("nhi_guard.denied"), 1);
    assert_eq!(host.count("nhi_guard.denied.partner_offboarded"), 1);
    assert_eq!(host.count("nhi_guard.partner.quickloans.denied"), 1);
    let logs = host.logs.borrow();
    let deny: Vec<&String> = logs.iter().filter(|l| l.starts_with("nhi-guard deny ")).collect();
    assert_eq!(deny.len(), 1, "{logs:?}");
    assert!(deny[0].contains("request_id=\"evil decision_id=forged\"") && deny[0].matches("decision_id=").count() == 2);
    assert!(logs.iter().any(|l| l.starts_with("nhi-guard.audit.token ")), "denials are audited in the log");
}

#[test]
fn the_facts_gathered_from_odd_headers() {
    let ok = bearer(&token(&claims("moneywise-app", "accounts")));
    let cases: Vec<Case> = vec![
        (
            "duplicate Authorization headers",
            vec![
                (":method", b"GET".to_vec()),
                (":path", BALANCES.to_vec()),
                ("authorization", ok.clone().into_bytes()),
                ("authorization", ok.clone().into_bytes()),
            ],
            (400, "token_duplicated"),
        ),
        (
            "obs-text in the token",
            vec![
                (":method", b"GET".to_vec()),
                (":path", BALANCES.to_vec()),
                ("authorization", b"Bearer \xff\xfe.x.y".to_vec()),
            ],
            (401, "token_malformed"),
        ),
        (
            "no :path",
            vec![(":method", b"GET".to_vec()), ("authorization", ok.clone().into_bytes())],
            (400, "path_ambiguous"),
        ),
        (
            "no :method",
            vec![(":path", BALANCES.to_vec()), ("authorization", ok.clone().into_bytes())],
            (403, "route_unmatched"),
        ),
        (
            "a method override",
            vec![
                (":method", b"GET".to_vec()),
                (":path", BALANCES.to_vec()),
                ("authorization", ok.clone().into_bytes()),
                ("x-http-method-override", b"DELETE".to_vec()),
            ],
            (400, "method_override"),
        ),
        (
            "a consent header for the wrong customer",
            vec![
                (":method", b"GET".to_vec()),
                (":path", BALANCES.to_vec()),
                ("authorization", bearer(&token(&customer_claims("moneywise-app", "accounts"))).into_bytes()),
                (
                    "x-consent",
                    artefact(&artefact_claims("moneywise-insights", "aac-1", &["ReadBalances"])).into_bytes(),
                ),
            ],
            (403, "consent_client_mismatch"),
        ),
    ];
    for (what, headers, expected) in cases {
        let borrowed: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let host = FakeHost::with(&borrowed);
        assert_eq!(run(&host), Verdict::Stop, "{what}");
        assert_eq!(host.reply_reason(), Some((expected.0, expected.1.to_string())), "{what}");
    }
}

#[test]
fn host_failures_fail_closed() {
    let auth = bearer(&token(&claims("moneywise-app", "accounts")));
    let base = || {
        FakeHost::with(&[
            (":method", b"GET"),
            (":path", BALANCES),
            ("authorization", auth.as_bytes()),
            ("x-nhi-client", b"x"),
        ])
    };
    let mut cannot_remove = base();
    cannot_remove.fail_remove = true;
    assert_eq!(run(&cannot_remove), Verdict::Stop);
    assert_eq!(cannot_remove.reply_reason(), Some((503, "host_error".into())), "a spoofed header could not be removed");
    let mut cannot_add = base();
    cannot_add.fail_add = true;
    assert_eq!(run(&cannot_add), Verdict::Stop, "identity headers could not be added");
    assert_eq!(cannot_add.reply_reason(), Some((503, "host_error".into())));
    let mut no_clock = base();
    no_clock.no_clock = true;
    assert_eq!(run(&no_clock), Verdict::Stop);
    assert_eq!(no_clock.reply_reason(), Some((503, "host_error".into())));
    let mut cannot_reply = FakeHost::with(&[(":method", b"GET"), (":path", b"/admin")]);
    cannot_reply.fail_reply = true;
    assert_eq!(run(&cannot_reply), Verdict::Stop);
    assert!(cannot_reply.reset.get(), "a request that cannot be answered is reset, never passed");
    // No policy loaded: every request refused.
    let host = base();
    let mut w = worker(&host);
    w.engine = None;
    assert_eq!(Exchange::default().on_request_headers(&host, &w), Verdict::Stop);
    assert_eq!(host.reply_reason(), Some((503, "policy_unavailable".into())));
}

#[test]
fn the_published_feed_is_read_from_shared_data() {
    let auth = bearer(&token(&claims("moneywise-app", "accounts")));
    let host = FakeHost::with(&[(":method", b"GET"), (":path", BALANCES), ("authorization", auth.as_bytes())]);
    let keys = SourceKeys::feed(policy().revocation.as_ref().unwrap());
    host.set_shared_data(&keys.status, &encode_status(2, NOW));
    host.set_shared_data(
        &keys.document,
        br#"{"version": 2, "produced_at": "2026-11-24T00:00:00Z", "partners": [{"id": "moneywise", "status": "offboarded"}]}"#,
    );
    assert_eq!(run(&host), Verdict::Stop);
    assert_eq!(host.reply_reason(), Some((403, "partner_offboarded".into())));
    // Nothing published: fail closed.
    let host = FakeHost::with(&[(":method", b"GET"), (":path", BALANCES), ("authorization", auth.as_bytes())]);
    host.shared.borrow_mut().clear();
    assert_eq!(run(&host), Verdict::Stop);
    assert_eq!(host.reply_reason(), Some((503, "revocation_stale".into())));
}
