//! HTTP context: one request's facts in, the decision applied.
//!
//! Host calls per request: one to read all request headers, one for the clock, then either the
//! identity headers (one call each) or one local reply, plus counters. Spoofed `x-nhi-*` headers
//! are removed before anything else, whatever the decision.

use super::metrics::Metrics;
use super::{feed, headers, log};
use crate::decision::{Deny, IDENTITY_HEADER_PREFIX};
use crate::header_map;
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

pub struct RequestContext {
    engine: Option<Rc<RefCell<Engine>>>,
    metrics: Option<Rc<Metrics>>,
    /// This worker's next feed-status read, in Unix ms (shared by its request contexts).
    next_feed_check: Rc<Cell<i64>>,
}

impl RequestContext {
    pub fn new(
        engine: Option<Rc<RefCell<Engine>>>,
        metrics: Option<Rc<Metrics>>,
        next_feed_check: Rc<Cell<i64>>,
    ) -> Self {
        RequestContext { engine, metrics, next_feed_check }
    }

    /// Fail closed without the engine's help (no policy, host error): a 503 with a reason code.
    fn refuse(&self, reason: Reason, request_id: &str) -> Action {
        let deny = Deny { reason, route: None, client_id: None, realm: "nhi-guard" };
        self.reply(&deny, request_id);
        Action::Pause
    }

    fn reply(&self, deny: &Deny<'_>, request_id: &str) {
        let response = deny.response(request_id);
        let headers: Vec<(&str, &str)> = response.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if hostcalls::send_http_response(u32::from(response.status), headers, Some(response.body.as_bytes())).is_err() {
            // Could not answer: reset rather than let the request continue.
            let _ = hostcalls::reset_http_request();
        }
        if let Some(m) = &self.metrics {
            m.denied(deny.reason);
        }
        log(
            LogLevel::Info,
            &format!(
                "nhi-guard deny reason={} status={} route={} client={} request_id={}",
                deny.reason.code(),
                deny.reason.status(),
                deny.route.map_or("-", |r| r.id.as_str()),
                deny.client_id.as_deref().unwrap_or("-"),
                request_id
            ),
        );
    }
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
        let mut authorization: Vec<&[u8]> = Vec::new();
        let mut consent: Vec<&[u8]> = Vec::new();
        let mut removed_spoofed = true;
        for (name, value) in header_map::pairs(&serialized) {
            match name {
                b":method" => method = text(value).unwrap_or(""),
                b":path" => path = text(value).unwrap_or(""),
                b"x-request-id" => request_id = text(value).unwrap_or("-"),
                b"authorization" => authorization.push(value),
                n if n == consent_header => consent.push(value),
                n if n.starts_with(IDENTITY_HEADER_PREFIX.as_bytes()) => {
                    removed_spoofed &=
                        text(n).is_some_and(|n| hostcalls::remove_map_value(MapType::HttpRequestHeaders, n).is_ok());
                }
                _ => {}
            }
        }
        if !removed_spoofed {
            return self.refuse(Reason::HostError, request_id);
        }
        let Some(now_ms) = super::now_ms() else {
            return self.refuse(Reason::HostError, request_id);
        };
        let now = now_ms / 1000;
        if engine.policy().revocation.is_some() && now_ms >= self.next_feed_check.get() {
            self.next_feed_check.set(now_ms + FEED_CHECK_MS);
            observe_feed(&mut engine);
        }
        let facts = RequestFacts { method, path, authorization: &authorization, consent: &consent, now };
        match engine.decide(&facts) {
            Decision::Allow(allow) => {
                // Every client-sent x-nhi-* header is gone already, so add (cheaper than set, which
                // first searches for and removes existing copies).
                for (name, value) in allow.upstream_headers() {
                    if hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value).is_err() {
                        drop(allow);
                        return self.refuse(Reason::HostError, request_id);
                    }
                }
                if let Some(m) = &self.metrics {
                    m.allowed(allow.cache_hit);
                }
                Action::Continue
            }
            Decision::Deny(deny) => {
                self.reply(&deny, request_id);
                Action::Pause
            }
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

fn text(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).ok()
}
