//! HTTP context: one request's facts in, the decision applied.
//!
//! Host calls per request: one to read all request headers, one for the clock, then either the
//! identity headers (one call each) or one local reply, plus counters and audit lines. Spoofed
//! `x-nhi-*` headers are removed before anything else, whatever the decision.

use super::metrics::Metrics;
use super::{feed, headers, jwks, log};
use crate::audit::{self, AuditContext, Outcome, Stream};
use crate::credentials::{parse_hex_digest, PeerCertificate};
use crate::decision::{Deny, IDENTITY_HEADER_PREFIX};
use crate::header_map;
use crate::policy::{AuditLog, Policy};
use crate::revocation::decode_status;
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

pub struct RequestContext {
    engine: Option<Rc<RefCell<Engine>>>,
    metrics: Option<Rc<Metrics>>,
    /// This worker's next feed-status read, in Unix ms (shared by its request contexts).
    next_feed_check: Rc<Cell<i64>>,
    /// The interaction id to echo on the response.
    interaction_id: Option<String>,
}

impl RequestContext {
    pub fn new(
        engine: Option<Rc<RefCell<Engine>>>,
        metrics: Option<Rc<Metrics>>,
        next_feed_check: Rc<Cell<i64>>,
    ) -> Self {
        RequestContext { engine, metrics, next_feed_check, interaction_id: None }
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

/// A client-sent interaction id we can echo safely (FAPI: a UUID; we accept 1-64 of [A-Za-z0-9-]).
fn valid_interaction_id(v: &[u8]) -> Option<&str> {
    (!v.is_empty() && v.len() <= 64 && v.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-'))
        .then(|| text(v))
        .flatten()
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
        for (name, value) in header_map::pairs(&serialized) {
            match name {
                b":method" => method = text(value).unwrap_or(""),
                b":path" => path = text(value).unwrap_or(""),
                b"x-request-id" => request_id = text(value).unwrap_or("-"),
                b"x-fapi-interaction-id" => interaction = valid_interaction_id(value),
                b"authorization" => authorization.push(value),
                b"dpop" => dpop.push(value),
                n if n == consent_header => consent.push(value),
                n if n.starts_with(IDENTITY_HEADER_PREFIX.as_bytes()) => {
                    removed_spoofed &=
                        text(n).is_some_and(|n| hostcalls::remove_map_value(MapType::HttpRequestHeaders, n).is_ok());
                }
                _ => {}
            }
        }
        // Echo the client's interaction id, or give the request Envoy's UUID as one (upstream too).
        let interaction_id = match interaction {
            Some(id) => id.to_string(),
            None => {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, INTERACTION_ID, Some(request_id));
                request_id.to_string()
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
        if now_ms >= self.next_feed_check.get() {
            self.next_feed_check.set(now_ms + FEED_CHECK_MS);
            if engine.policy().revocation.is_some() {
                observe_feed(&mut engine);
            }
            observe_jwks(&mut engine);
        }
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
        let facts =
            RequestFacts { method, path, authorization: &authorization, consent: &consent, dpop: &dpop, peer, now };
        // Asks left by the previous request (a kid we lack): tell the poller, rate-limited in the core.
        engine.jwks_refetch_requests(now_ms, |issuer| {
            let _ = hostcalls::set_shared_data(&jwks::refetch_key(&issuer.id), Some(&now_ms.to_le_bytes()), None);
        });
        let (policy, decision) = engine.decide_with_policy(&facts);
        let outcome = match &decision {
            Decision::Allow(_) => Outcome::Allow,
            Decision::Deny(d) if d.enforced(policy) => Outcome::Deny,
            Decision::Deny(_) => Outcome::WouldDeny,
        };
        let decision_id = audit::decision_id(request_id, now_ms);
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

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(id) = &self.interaction_id {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, INTERACTION_ID, Some(id));
        }
        Action::Continue
    }
}

impl RequestContext {
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
                    ctx.request_id,
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

/// Hands the worker's engine the poller's latest JWKS of each remote issuer; a document is read
/// only when its generation is new.
fn observe_jwks(engine: &mut Engine) {
    let remote: Vec<(usize, String)> = engine
        .policy()
        .issuers
        .iter()
        .enumerate()
        .filter(|(_, i)| i.remote_jwks.is_some())
        .map(|(n, i)| (n, i.id.clone()))
        .collect();
    for (index, iss) in remote {
        let Ok((Some(status), _)) = hostcalls::get_shared_data(&jwks::status_key(&iss)) else { continue };
        let Some((generation, _)) = decode_status(&status) else { continue };
        let document = || hostcalls::get_shared_data(&jwks::document_key(&iss)).ok().and_then(|(d, _)| d);
        if let Err(e) = engine.observe_jwks(index, generation, document) {
            log(LogLevel::Warn, &format!("nhi-guard: JWKS of {iss} not applied: {e}"));
        }
    }
}

/// Hands the worker's engine the poller's latest status; the document is read only on a new version.
fn observe_feed(engine: &mut Engine) {
    let Ok((Some(status), _)) = hostcalls::get_shared_data(feed::STATUS_KEY) else { return };
    let Some((version, fetched_at)) = decode_status(&status) else { return };
    let document = || hostcalls::get_shared_data(feed::DOCUMENT_KEY).ok().and_then(|(d, _)| d);
    if let Err(e) = engine.observe_feed(version, fetched_at, document) {
        log(LogLevel::Warn, &format!("nhi-guard: revocation feed version {version} not applied: {e}"));
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
