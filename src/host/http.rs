//! HTTP context: one request's facts in, the decision applied.
//!
//! Host calls per request: one to read all request headers, one for the clock, then either the
//! identity headers (one call each) or one local reply, plus counters and audit lines. Spoofed
//! `x-nhi-*` headers are removed before anything else, whatever the decision.

use super::metrics::Metrics;
use super::{headers, log};
use crate::audit::{self, AuditContext, IdSource, Outcome, Stream};
use crate::credentials::{parse_hex_digest, PeerCertificate};
use crate::decision::{Deny, IDENTITY_HEADER_PREFIX, METHOD_OVERRIDE_HEADERS};
use crate::header_map;
use crate::policy::{AuditLog, Policy};
use crate::shared_state::{decode_status, SourceKeys};
use crate::{Decision, Engine, Reason, RequestFacts};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel, MapType};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// How often a worker looks at the feed status in shared data (a host call with a copy). The
/// staleness bound is in seconds, so this adds at most this much to propagation.
const FEED_CHECK_MS: i64 = 100;
/// FAPI interaction id header: echoed, or generated (Envoy's request UUID) when absent.
const INTERACTION_ID: &str = "x-fapi-interaction-id";

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
    /// every `FEED_CHECK_MS`, and a document only when its version or generation is new.
    fn observe(&self, engine: &mut Engine, now_ms: i64) {
        if now_ms < self.next_check_ms.get() {
            return;
        }
        self.next_check_ms.set(now_ms.saturating_add(FEED_CHECK_MS));
        if let Some(keys) = &self.feed {
            if let Some((version, fetched_at)) = read_status(keys) {
                let document = || read(&keys.document);
                if let Err(e) = engine.observe_feed(version, fetched_at, document) {
                    log(LogLevel::Warn, &format!("nhi-guard: revocation feed version {version} not applied: {e}"));
                }
            }
        }
        for (issuer, keys) in &self.jwks {
            let Some((generation, _)) = read_status(keys) else { continue };
            if let Err(e) = engine.observe_jwks(*issuer, generation, || read(&keys.document)) {
                log(LogLevel::Warn, &format!("nhi-guard: JWKS of issuer #{issuer} not applied: {e}"));
            }
        }
    }

    /// Passes the engine's refetch asks (a token named a `kid` the JWKS lacks; rate-limited in the
    /// core) to the polling worker, right after the refusal.
    fn ask_refetches(&self, engine: &mut Engine, now_ms: i64) {
        engine.jwks_refetch_requests(now_ms, |index, _| {
            if let Some((_, keys)) = self.jwks.iter().find(|(i, _)| *i == index) {
                let _ = hostcalls::set_shared_data(&keys.refetch, Some(&now_ms.to_le_bytes()), None);
            }
        });
    }
}

fn read(key: &str) -> Option<Vec<u8>> {
    hostcalls::get_shared_data(key).ok().and_then(|(d, _)| d)
}

fn read_status(keys: &SourceKeys) -> Option<(u64, i64)> {
    read(&keys.status).and_then(|s| decode_status(&s))
}

pub struct RequestContext {
    engine: Option<Rc<RefCell<Engine>>>,
    metrics: Option<Rc<Metrics>>,
    sources: Rc<WorkerSources>,
    ids: Rc<RefCell<IdSource>>,
    /// The interaction id to echo on the response.
    interaction_id: Option<String>,
}

impl RequestContext {
    pub fn new(
        engine: Option<Rc<RefCell<Engine>>>,
        metrics: Option<Rc<Metrics>>,
        sources: Rc<WorkerSources>,
        ids: Rc<RefCell<IdSource>>,
    ) -> Self {
        RequestContext { engine, metrics, sources, ids, interaction_id: None }
    }

    /// Fail closed without the engine's help (no policy, host error): a 503 with a reason code.
    fn refuse(&self, reason: Reason, request_id: &str) -> Action {
        let deny = Deny { reason, route: None, token: None, realm: "nhi-guard", dpop_algs: "", dpop_scheme: false };
        self.reply(&deny, request_id);
        if let Some(m) = &self.metrics {
            m.decision(Outcome::Deny, Some(reason), None, None);
        }
        Action::Pause
    }

    fn reply(&self, deny: &Deny<'_>, request_id: &str) {
        let response = deny.response(request_id);
        let mut headers: Vec<(&str, &str)> = response.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Some(id) = &self.interaction_id {
            headers.push((INTERACTION_ID, id.as_str()));
        }
        if hostcalls::send_http_response(u32::from(response.status), headers, Some(response.body.as_bytes())).is_err() {
            // Could not answer: reset rather than let the request continue.
            let _ = hostcalls::reset_http_request();
        }
    }
}

/// A client-sent interaction id we echo: FAPI's is an RFC 4122 UUID; anything else is replaced.
fn valid_interaction_id(v: &[u8]) -> Option<&str> {
    audit::is_uuid(v).then(|| text(v)).flatten()
}

impl Context for RequestContext {}

impl HttpContext for RequestContext {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(engine) = self.engine.clone() else {
            return self.refuse(Reason::PolicyUnavailable, "-");
        };
        let Ok(mut engine) = engine.try_borrow_mut() else {
            return self.refuse(Reason::HostError, "-");
        };
        // One host call, then borrowed slices: values are bytes (HTTP allows obs-text), names are
        // lowercase ASCII tokens (Envoy's codecs check them).
        let Some(serialized) = headers::request_headers() else {
            return self.refuse(Reason::HostError, "-");
        };
        let consent_header = engine.policy().consent.header.as_bytes();
        let (mut method, mut path, mut request_id) = ("", "", "-");
        let mut interaction: Option<&str> = None;
        let mut authorization: Vec<&[u8]> = Vec::new();
        let mut consent: Vec<&[u8]> = Vec::new();
        let mut dpop: Vec<&[u8]> = Vec::new();
        let mut removed_spoofed = true;
        let mut method_override = false;
        for (name, value) in header_map::pairs(&serialized) {
            match name {
                b":method" => method = text(value).unwrap_or(""),
                b":path" => path = text(value).unwrap_or(""),
                b"x-request-id" => request_id = text(value).unwrap_or("-"),
                b"x-fapi-interaction-id" => interaction = valid_interaction_id(value),
                b"authorization" => authorization.push(value),
                b"dpop" => dpop.push(value),
                #[cfg(feature = "test-trap")]
                #[allow(clippy::panic)] // the test-only module: shows what Envoy does after a trap
                b"x-test-trap" => panic!("test trap requested"),
                n if METHOD_OVERRIDE_HEADERS.iter().any(|h| h.as_bytes() == n) => method_override = true,
                n if n == consent_header => consent.push(value),
                n if n.starts_with(IDENTITY_HEADER_PREFIX.as_bytes()) => {
                    removed_spoofed &=
                        text(n).is_some_and(|n| hostcalls::remove_map_value(MapType::HttpRequestHeaders, n).is_ok());
                }
                _ => {}
            }
        }
        // Echo the client's interaction id, or give the request a new UUID as one (upstream too).
        let interaction_id = match interaction {
            Some(id) => id.to_string(),
            None => {
                let id = self.ids.borrow_mut().uuid();
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, INTERACTION_ID, Some(&id));
                id
            }
        };
        self.interaction_id = Some(interaction_id);
        if !removed_spoofed {
            return self.refuse(Reason::HostError, request_id);
        }
        let Some(now_ms) = super::now_ms() else {
            return self.refuse(Reason::HostError, request_id);
        };
        let now = now_ms / 1000;
        self.sources.observe(&mut engine, now_ms);
        // The client certificate Envoy verified (mTLS listeners only): one property read on
        // plaintext connections, two with a certificate.
        let uri_san;
        let peer = match peer_digest() {
            Some(sha256) => {
                uri_san = property("connection.uri_san_peer_certificate");
                Some(PeerCertificate { sha256, uri_san: uri_san.as_deref().and_then(text) })
            }
            None => None,
        };
        let facts = RequestFacts {
            method,
            path,
            authorization: &authorization,
            consent: &consent,
            dpop: &dpop,
            peer,
            now,
            method_override,
        };
        let action = self.decide_and_apply(&mut engine, &facts, request_id, now_ms);
        // A refusal for a kid this worker lacks asks for a refetch now, not on the next request.
        self.sources.ask_refetches(&mut engine, now_ms);
        action
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(id) = &self.interaction_id {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, INTERACTION_ID, Some(id));
        }
        Action::Continue
    }
}

impl RequestContext {
    /// Decides, records the decision (metrics, audit), and applies it to the request.
    fn decide_and_apply(&self, engine: &mut Engine, facts: &RequestFacts<'_>, request_id: &str, now_ms: i64) -> Action {
        let (policy, decision) = engine.decide_with_policy(facts);
        let outcome = match &decision {
            Decision::Allow(_) => Outcome::Allow,
            Decision::Deny(d) if d.enforced(policy) => Outcome::Deny,
            Decision::Deny(_) => Outcome::WouldDeny,
        };
        let decision_id = self.ids.borrow_mut().decision_id();
        let ctx = AuditContext {
            decision_id: &decision_id,
            time_ms: now_ms,
            request_id,
            interaction_id: self.interaction_id.as_deref().unwrap_or(request_id),
            outcome,
        };
        self.record(policy, &decision, &ctx);
        match decision {
            Decision::Allow(allow) => {
                // Every client-sent x-nhi-* header is gone already, so add (cheaper than set, which
                // first searches for and removes existing copies).
                for (name, value) in allow.upstream_headers() {
                    if hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value).is_err() {
                        drop(allow);
                        return self.refuse(Reason::HostError, request_id);
                    }
                }
                Action::Continue
            }
            Decision::Deny(deny) if outcome == Outcome::WouldDeny => {
                // Dry-run: the request goes on, without verified identity, marked for the upstream.
                let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, "x-nhi-would-deny", deny.reason.code());
                Action::Continue
            }
            Decision::Deny(deny) => {
                self.reply(&deny, request_id);
                Action::Pause
            }
        }
    }

    /// Counts the decision, writes its audit events (filter state that Envoy access logs write to
    /// per-stream files, and log lines per `settings.audit_log`), and logs denials in one line.
    /// Filter-state writes cost Envoy real time (measured), so there is one per stream and no
    /// separate decision-id or reason entry: the token event carries both.
    fn record(&self, policy: &Policy, decision: &Decision<'_>, ctx: &AuditContext<'_>) {
        let (route, reason, token) = match decision {
            Decision::Allow(a) => (Some(a.route), None, a.token.as_ref()),
            Decision::Deny(d) => (d.route, Some(d.reason), d.token.as_ref()),
        };
        let client = match decision {
            Decision::Allow(a) => Some(a.authority.client),
            Decision::Deny(_) => token.and_then(|t| policy.clients.get(&t.client_id)),
        };
        let partner = client.and_then(|c| c.partner.as_deref());
        if let Some(m) = &self.metrics {
            m.decision(ctx.outcome, reason, route.map(|r| r.id.as_str()), partner);
            if matches!(decision, Decision::Allow(a) if a.cache_hit) {
                m.cache_hit();
            }
        }
        if let Some(reason) = reason {
            log(
                LogLevel::Info,
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
                log(LogLevel::Info, &format!("{}{json}", stream.prefix()));
            }
            let key = match stream {
                Stream::Token => "nhi_guard_audit_token",
                Stream::Consent => "nhi_guard_audit_consent",
                Stream::Delegation => "nhi_guard_audit_delegation",
            };
            let _ = hostcalls::set_property(vec![key], Some(json.as_bytes()));
        }
    }
}

/// A connection property as bytes (`None` when absent or on a host error).
fn property(path: &str) -> Option<Vec<u8>> {
    hostcalls::get_property(path.split('.').collect()).ok().flatten().filter(|v| !v.is_empty())
}

/// The peer certificate's SHA-256, from Envoy's lowercase hex digest.
fn peer_digest() -> Option<[u8; 32]> {
    property("connection.sha256_peer_certificate_digest").and_then(|hex| parse_hex_digest(&hex))
}

fn text(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).ok()
}
