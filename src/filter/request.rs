//! One request through the filter: gather facts -> decide -> record -> apply. Written against the
//! `Host` trait, so it runs in Envoy (`proxy::ProxyHost`) and against a fake host in unit tests.
//!
//! Host calls per request: one to read all request headers, one for the clock, then either the
//! identity headers (one call each) or one local reply, plus counters and audit state. Spoofed
//! `x-nhi-*` headers are removed before anything else, whatever the decision.

use super::host::{Host, Level};
use super::metrics::Metrics;
use crate::engine::audit::{self, AuditContext, IdSource, Outcome, Stream};
use crate::engine::credentials::{header_role, HeaderRole};
use crate::engine::credentials::{parse_hex_digest, PeerCertificate, RequestFacts};
use crate::engine::decision::{Decision, Deny, Engine, DPOP_NONCE};
use crate::engine::header_map;
use crate::engine::policy::{AuditLog, Policy};
use crate::engine::reason::Reason;
use crate::engine::shared_state::{decode_status, SourceKeys};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// How often a worker looks at the published feed and JWKS statuses in shared data (a host call
/// with a copy). The staleness bound is in seconds, so this adds at most this much to propagation.
pub const STATUS_CHECK_MS: i64 = 100;
/// FAPI interaction id header: echoed when the client's is a UUID, generated otherwise.
pub const INTERACTION_ID: &str = "x-fapi-interaction-id";
/// The filter-state keys of the audit streams (Envoy access logs read them).
const AUDIT_STATE: [(Stream, &str); 3] = [
    (Stream::Token, "nhi_guard_audit_token"),
    (Stream::Consent, "nhi_guard_audit_consent"),
    (Stream::Delegation, "nhi_guard_audit_delegation"),
];

/// What the filter does with the request next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// On to the upstream.
    Continue,
    /// Answered locally (or reset): stop here.
    Stop,
}

/// What a worker's requests know of the policy's fetched sources: where the polling worker
/// publishes them, and when this worker looks next.
#[derive(Default)]
pub struct WorkerSources {
    feed: Option<SourceKeys>,
    /// (issuer index in the policy, its JWKS entries)
    jwks: Vec<(usize, SourceKeys)>,
    /// This worker's next look at the published statuses, in Unix ms.
    next_check_ms: Cell<i64>,
}

impl WorkerSources {
    pub fn new(feed: Option<SourceKeys>, jwks: Vec<(usize, SourceKeys)>) -> WorkerSources {
        WorkerSources { feed, jwks, next_check_ms: Cell::new(0) }
    }

    /// Hands the engine what the polling worker published since this worker last looked: at most
    /// every `STATUS_CHECK_MS`, and a document only when its version or generation is new.
    fn observe(&self, host: &impl Host, engine: &mut Engine, now_ms: i64) {
        if now_ms < self.next_check_ms.get() {
            return;
        }
        self.next_check_ms.set(now_ms.saturating_add(STATUS_CHECK_MS));
        let status = |keys: &SourceKeys| host.shared_data(&keys.status).and_then(|s| decode_status(&s));
        if let Some(keys) = &self.feed {
            if let Some((version, fetched_at)) = status(keys) {
                if let Err(e) = engine.observe_feed(version, fetched_at, || host.shared_data(&keys.document)) {
                    host.log(Level::Warn, &format!("nhi-guard: revocation feed version {version} not applied: {e}"));
                }
            }
        }
        for (issuer, keys) in &self.jwks {
            let Some((generation, _)) = status(keys) else { continue };
            if let Err(e) = engine.observe_jwks(*issuer, generation, || host.shared_data(&keys.document)) {
                host.log(Level::Warn, &format!("nhi-guard: JWKS of issuer #{issuer} not applied: {e}"));
            }
        }
    }

    /// Passes the engine's refetch asks (a token named a `kid` the JWKS lacks; rate-limited in the
    /// engine) to the polling worker, right after the refusal.
    fn ask_refetches(&self, host: &impl Host, engine: &mut Engine, now_ms: i64) {
        engine.jwks_refetch_requests(now_ms, |index, _| {
            if let Some((_, keys)) = self.jwks.iter().find(|(i, _)| *i == index) {
                let _ = host.set_shared_data(&keys.refetch, &now_ms.to_le_bytes());
            }
        });
    }
}

/// What every request context of one worker shares, built by the root context at configure.
pub struct Worker {
    /// `None` when the policy did not load: every request is refused.
    pub engine: Option<RefCell<Engine>>,
    pub metrics: Option<Metrics>,
    pub sources: WorkerSources,
    pub ids: RefCell<IdSource>,
}

/// A request's headers as the engine needs them, borrowed from the host's serialized map.
struct Gathered<'a> {
    method: &'a str,
    path: &'a str,
    request_id: &'a str,
    interaction: Option<&'a str>,
    authorization: Vec<&'a [u8]>,
    consent: Vec<&'a [u8]>,
    dpop: Vec<&'a [u8]>,
    method_override: bool,
    /// Client-sent `x-nhi-*` header names, to remove before anything else.
    spoofed: Vec<&'a str>,
}

/// One walk over the header map: values are bytes (HTTP allows obs-text), names are lowercase
/// ASCII tokens (Envoy's codecs check them). A missing pseudo-header leaves an empty method (no
/// route matches it) or an empty path (ambiguous): refused either way.
fn gather<'a>(serialized: &'a [u8], consent_header: &[u8]) -> Gathered<'a> {
    let mut g = Gathered {
        method: "",
        path: "",
        request_id: "-",
        interaction: None,
        authorization: Vec::new(),
        consent: Vec::new(),
        dpop: Vec::new(),
        method_override: false,
        spoofed: Vec::new(),
    };
    for (name, value) in header_map::pairs(serialized) {
        match name {
            b":method" => g.method = text(value).unwrap_or(""),
            b":path" => g.path = text(value).unwrap_or(""),
            b"x-request-id" => g.request_id = text(value).unwrap_or("-"),
            b"x-fapi-interaction-id" => g.interaction = audit::is_uuid(value).then(|| text(value)).flatten(),
            #[cfg(feature = "test-trap")]
            #[allow(clippy::panic)] // the test-only module: shows what Envoy does after a trap
            b"x-test-trap" => panic!("test trap requested"),
            n => match header_role(n, consent_header) {
                HeaderRole::Authorization => g.authorization.push(value),
                HeaderRole::Dpop => g.dpop.push(value),
                HeaderRole::Consent => g.consent.push(value),
                HeaderRole::MethodOverride => g.method_override = true,
                HeaderRole::Identity => g.spoofed.push(text(n).unwrap_or("")),
                HeaderRole::Other => {}
            },
        }
    }
    g
}

/// One request's state between its request and response phases.
#[derive(Default)]
pub struct Exchange {
    /// The interaction id to echo on the response.
    interaction_id: Option<String>,
    /// The next DPoP server nonce, when the client's one is due for rotation.
    dpop_nonce: Option<String>,
}

impl Exchange {
    pub fn on_request_headers(&mut self, host: &impl Host, worker: &Worker) -> Verdict {
        let Some(engine) = &worker.engine else {
            return self.refuse(host, worker, Reason::PolicyUnavailable, "-");
        };
        let Ok(mut engine) = engine.try_borrow_mut() else {
            return self.refuse(host, worker, Reason::HostError, "-");
        };
        let Some(serialized) = host.request_headers() else {
            return self.refuse(host, worker, Reason::HostError, "-");
        };
        let g = gather(&serialized, engine.policy().consent.header.as_bytes());
        let removed = g.spoofed.iter().all(|name| !name.is_empty() && host.remove_request_header(name));
        // Echo the client's interaction id, or give the request a new UUID as one (upstream too).
        let interaction_id = match g.interaction {
            Some(id) => id.to_string(),
            None => {
                let id = worker.ids.borrow_mut().uuid();
                let _ = host.set_request_header(INTERACTION_ID, &id);
                id
            }
        };
        self.interaction_id = Some(interaction_id);
        if !removed {
            return self.refuse(host, worker, Reason::HostError, g.request_id);
        }
        let Some(now_ms) = host.now_ms() else {
            return self.refuse(host, worker, Reason::HostError, g.request_id);
        };
        worker.sources.observe(host, &mut engine, now_ms);
        // The client certificate Envoy verified (mTLS listeners only): one property read on
        // plaintext connections, two with a certificate.
        let digest =
            host.property(&["connection", "sha256_peer_certificate_digest"]).and_then(|h| parse_hex_digest(&h));
        let uri_san = digest.and_then(|_| host.property(&["connection", "uri_san_peer_certificate"]));
        let peer = digest.map(|sha256| PeerCertificate { sha256, uri_san: uri_san.as_deref().and_then(text) });
        let facts = RequestFacts {
            method: g.method,
            path: g.path,
            authorization: &g.authorization,
            consent: &g.consent,
            dpop: &g.dpop,
            peer,
            now: now_ms / 1000,
            method_override: g.method_override,
        };
        let verdict = self.decide_and_apply(host, worker, &mut engine, &facts, g.request_id, now_ms);
        // A refusal for a kid this worker lacks asks for a refetch now, not on the next request.
        worker.sources.ask_refetches(host, &mut engine, now_ms);
        verdict
    }

    pub fn on_response_headers(&self, host: &impl Host) {
        if let Some(id) = &self.interaction_id {
            let _ = host.set_response_header(INTERACTION_ID, id);
        }
        if let Some(nonce) = &self.dpop_nonce {
            let _ = host.set_response_header(DPOP_NONCE, nonce);
        }
    }

    /// Decides, records the decision (metrics, audit), and applies it to the request.
    fn decide_and_apply(
        &mut self,
        host: &impl Host,
        worker: &Worker,
        engine: &mut Engine,
        facts: &RequestFacts<'_>,
        request_id: &str,
        now_ms: i64,
    ) -> Verdict {
        let (policy, decision) = engine.decide_with_policy(facts);
        let outcome = match &decision {
            Decision::Allow(_) => Outcome::Allow,
            Decision::Deny(d) if d.enforced(policy) => Outcome::Deny,
            Decision::Deny(_) => Outcome::WouldDeny,
        };
        let decision_id = worker.ids.borrow_mut().decision_id();
        let ctx = AuditContext {
            decision_id: &decision_id,
            time_ms: now_ms,
            request_id,
            interaction_id: self.interaction_id.as_deref().unwrap_or(request_id),
            outcome,
        };
        record(host, worker, policy, &decision, &ctx);
        match decision {
            Decision::Allow(allow) => {
                self.dpop_nonce = allow.dpop_nonce.clone();
                // Every client-sent x-nhi-* header is gone already, so add (cheaper than set, which
                // first searches for and removes existing copies).
                let added =
                    allow.upstream_headers().into_iter().all(|(name, value)| host.add_request_header(name, value));
                if added {
                    Verdict::Continue
                } else {
                    self.refuse(host, worker, Reason::HostError, request_id)
                }
            }
            Decision::Deny(deny) if outcome == Outcome::WouldDeny => {
                // Dry-run: the request goes on, without verified identity, marked for the upstream.
                let _ = host.add_request_header("x-nhi-would-deny", deny.reason.code());
                Verdict::Continue
            }
            Decision::Deny(deny) => {
                self.reply(host, &deny, request_id);
                Verdict::Stop
            }
        }
    }

    /// Fail closed without the engine's help (no policy, host error): a 503 with a reason code.
    fn refuse(&self, host: &impl Host, worker: &Worker, reason: Reason, request_id: &str) -> Verdict {
        let deny = Deny {
            reason,
            route: None,
            token: None,
            realm: "nhi-guard",
            dpop_algs: "",
            dpop_scheme: false,
            dpop_nonce: None,
        };
        self.reply(host, &deny, request_id);
        if let Some(m) = &worker.metrics {
            m.decision(Outcome::Deny, Some(reason), None, None);
        }
        Verdict::Stop
    }

    fn reply(&self, host: &impl Host, deny: &Deny<'_>, request_id: &str) {
        let response = deny.response(request_id);
        let mut headers: Vec<(&str, &str)> = response.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Some(id) = &self.interaction_id {
            headers.push((INTERACTION_ID, id.as_str()));
        }
        if !host.send_reply(response.status, &headers, response.body.as_bytes()) {
            // Could not answer: reset rather than let the request continue.
            host.reset_request();
        }
    }
}

/// Counts the decision, writes its audit events (filter state that Envoy access logs write to
/// per-stream files, and log lines per `settings.audit_log`), and logs denials in one line.
/// Filter-state writes cost Envoy real time (measured), so there is one per stream and no
/// separate decision-id or reason entry: the token event carries both.
fn record(host: &impl Host, worker: &Worker, policy: &Policy, decision: &Decision<'_>, ctx: &AuditContext<'_>) {
    let (route, reason, token) = match decision {
        Decision::Allow(a) => (Some(a.route), None, a.token.as_ref()),
        Decision::Deny(d) => (d.route, Some(d.reason), d.token.as_ref()),
    };
    let client = match decision {
        Decision::Allow(a) => Some(a.authority.client),
        Decision::Deny(_) => token.and_then(|t| policy.clients.get(&t.client_id)),
    };
    let partner = client.and_then(|c| c.partner.as_deref());
    if let Some(m) = &worker.metrics {
        m.decision(ctx.outcome, reason, route.map(|r| r.id.as_str()), partner);
        if matches!(decision, Decision::Allow(a) if a.cache_hit) {
            m.cache_hit();
        }
    }
    if let Some(reason) = reason {
        host.log(
            Level::Info,
            &format!(
                "nhi-guard {} reason={} status={} route={} client={} request_id={} decision_id={}",
                if ctx.outcome == Outcome::WouldDeny { "would_deny" } else { "deny" },
                reason.code(),
                reason.status(),
                route.map_or("-", |r| r.id.as_str()),
                client.map_or("-", |c| c.id.as_str()),
                audit::log_value(ctx.request_id),
                ctx.decision_id,
            ),
        );
    }
    let to_log = match policy.audit_log {
        AuditLog::All => true,
        AuditLog::Denials => reason.is_some(),
        AuditLog::None => false,
    };
    for (stream, json) in audit::events(policy, decision, ctx) {
        if to_log {
            host.log(Level::Info, &format!("{}{json}", stream.prefix()));
        }
        if let Some((_, key)) = AUDIT_STATE.iter().find(|(s, _)| *s == stream) {
            let _ = host.set_filter_state(key, json.as_bytes());
        }
    }
}

fn text(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).ok()
}

/// Shared by a worker's request contexts.
pub type SharedWorker = Rc<Worker>;

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
