//! Audit events: one structured JSON event per decision and stream.
//!
//! Three streams a SIEM can route apart: `token` (the machine credential used), `consent` (the
//! customer's consent used or refused) and `delegation` (RFC 8693 actor chains). Every event has
//! the decision id, time, request id, interaction id, route, outcome and reason. Events never hold
//! a token, a signature or raw personal data: the customer subject appears only as a keyed hash.

use crate::engine::decision::{Decision, Deny};
use crate::engine::jwt::VerifiedToken;
use crate::engine::policy::{Policy, RouteConsent, RouteRule};
use crate::engine::reason::Reason;
use serde::Serialize;

/// The stream an event belongs to; the host writes it with the stream's log prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Token,
    Consent,
    Delegation,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::Token, Stream::Consent, Stream::Delegation];

    pub fn name(self) -> &'static str {
        match self {
            Stream::Token => "token",
            Stream::Consent => "consent",
            Stream::Delegation => "delegation",
        }
    }

    /// Stable log-line prefix, e.g. `nhi-guard.audit.token `.
    pub fn prefix(self) -> &'static str {
        match self {
            Stream::Token => "nhi-guard.audit.token ",
            Stream::Consent => "nhi-guard.audit.consent ",
            Stream::Delegation => "nhi-guard.audit.delegation ",
        }
    }
}

/// What happened to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allow,
    Deny,
    /// Dry-run: the decision was a denial, the request went through.
    WouldDeny,
}

/// Per-request facts the events carry besides the decision.
#[derive(Debug, Clone, Copy)]
pub struct AuditContext<'a> {
    pub decision_id: &'a str,
    /// Unix milliseconds.
    pub time_ms: i64,
    pub request_id: &'a str,
    pub interaction_id: &'a str,
    pub outcome: Outcome,
}

#[derive(Serialize)]
struct Common<'a> {
    stream: &'static str,
    decision_id: &'a str,
    time: &'a str,
    request_id: &'a str,
    interaction_id: &'a str,
    route: Option<&'a str>,
    outcome: Outcome,
    reason: Option<&'static str>,
}

#[derive(Serialize)]
struct TokenEvent<'a> {
    #[serde(flatten)]
    common: Common<'a>,
    client: Option<&'a str>,
    partner: Option<&'a str>,
    kid: Option<&'a str>,
    jti: Option<&'a str>,
    /// How the caller authenticated (allowed requests): bearer, mtls-bound, dpop, workload.
    auth_method: Option<&'static str>,
    cache_hit: Option<bool>,
}

#[derive(Serialize)]
struct ConsentEvent<'a> {
    #[serde(flatten)]
    common: Common<'a>,
    client: Option<&'a str>,
    consent_id: Option<&'a str>,
    consent_source: Option<&'static str>,
    /// HMAC-SHA256 of the customer subject under the policy's audit key (hex, 128 bits).
    subject_hash: Option<String>,
    permissions_used: Option<&'a str>,
    permissions_required: Vec<Vec<&'a str>>,
}

#[derive(Serialize)]
struct DelegationEvent<'a> {
    #[serde(flatten)]
    common: Common<'a>,
    client: Option<&'a str>,
    subject_hash: Option<String>,
    /// `act` chain, current actor first; only the first counted for access control.
    actor_chain: &'a [String],
}

/// The customer subject as it may appear in logs: a keyed hash, stable per key.
pub fn subject_hash(key: &[u8], subject: &str) -> String {
    let mac = hmac_sha256::HMAC::mac(subject.as_bytes(), key);
    mac.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Ids the filter makes up for a worker: decision ids, unique whatever the request carries (a
/// client's `x-request-id` is repeated by fan-out calls, and can be anything), and FAPI interaction
/// ids (RFC 4122 UUIDs) for requests that bring none or a malformed one. Seeded once per worker from
/// the VM's random source by the filter shell; a SplitMix64 sequence after that (unique, not secret).
pub struct IdSource {
    worker: u32,
    counter: u64,
    state: u64,
}

impl IdSource {
    pub fn new(seed: u64) -> IdSource {
        let mut ids = IdSource { worker: 0, counter: 0, state: seed };
        ids.worker = (ids.next_u64() >> 32) as u32;
        ids
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// 24 hex digits: this worker's random prefix and its decision counter.
    pub fn decision_id(&mut self) -> String {
        self.counter = self.counter.wrapping_add(1);
        format!("{:08x}{:016x}", self.worker, self.counter)
    }

    /// A random (version 4) UUID in its canonical lowercase form.
    pub fn uuid(&mut self) -> String {
        let (hi, lo) = (self.next_u64(), self.next_u64());
        let hi = (hi & !0xf000) | 0x4000; // version 4
        let lo = (lo & !(0xc000 << 48)) | (0x8000 << 48); // RFC 4122 variant
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }
}

/// Whether `v` is a UUID in canonical form (8-4-4-4-12 hex digits), as FAPI's
/// `x-fapi-interaction-id` must be; only such values are echoed.
pub fn is_uuid(v: &[u8]) -> bool {
    v.len() == 36
        && v.iter()
            .enumerate()
            .all(|(i, b)| if matches!(i, 8 | 13 | 18 | 23) { *b == b'-' } else { b.is_ascii_hexdigit() })
}

/// A value for a `key=value` log line, quoted and escaped as a JSON string, so no value a client
/// sends can end the field and forge the ones after it.
pub fn log_value(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "\"?\"".to_string())
}

/// Every event for one decision, as (stream, JSON line).
pub fn events(policy: &Policy, decision: &Decision<'_>, ctx: &AuditContext<'_>) -> Vec<(Stream, String)> {
    let (route, reason, token): (Option<&RouteRule>, Option<Reason>, Option<&VerifiedToken>) = match decision {
        Decision::Allow(a) => (Some(a.route), None, a.token.as_deref()),
        Decision::Deny(Deny { reason, route, token, .. }) => (*route, Some(*reason), token.as_deref()),
    };
    let time = crate::engine::timestamp::format_rfc3339_ms(ctx.time_ms);
    let common = |stream: Stream| Common {
        stream: stream.name(),
        decision_id: ctx.decision_id,
        time: &time,
        request_id: ctx.request_id,
        interaction_id: ctx.interaction_id,
        route: route.map(|r| r.id.as_str()),
        outcome: ctx.outcome,
        reason: reason.map(Reason::code),
    };
    let client = match decision {
        Decision::Allow(a) => Some(a.authority.client.id.as_str()),
        Decision::Deny(_) => token.map(|t| t.client_id.as_str()),
    };
    let key = policy.audit_key.as_bytes();
    let hashed = |t: &VerifiedToken| {
        t.is_customer_bound().then(|| t.subject_hash.get_or_init(|| subject_hash(key, &t.subject)).clone())
    };
    let mut out = Vec::with_capacity(2);
    let partner = client.and_then(|c| policy.clients.get(c)).and_then(|c| c.partner.as_deref());
    let token_event = TokenEvent {
        common: common(Stream::Token),
        client,
        partner,
        kid: token.map(|t| t.kid.as_str()),
        jti: token.map(|t| t.jti.as_str()),
        auth_method: match decision {
            Decision::Allow(a) => Some(a.auth.name()),
            Decision::Deny(_) => None,
        },
        cache_hit: match decision {
            Decision::Allow(a) => Some(a.cache_hit),
            Decision::Deny(_) => None,
        },
    };
    push(&mut out, Stream::Token, &token_event);
    if let Some(RouteConsent::Permissions(groups)) = route.map(|r| &r.consent) {
        let used = match decision {
            Decision::Allow(a) => a.consent.as_ref(),
            Decision::Deny(_) => None,
        };
        let event = ConsentEvent {
            common: common(Stream::Consent),
            client,
            consent_id: used
                .map(|c| c.id.as_str())
                .or_else(|| token.and_then(|t| t.consent.as_ref()).map(|c| c.id.as_str())),
            consent_source: used.map(|c| c.source.name()),
            subject_hash: token.and_then(hashed),
            permissions_used: used.map(|c| c.permissions_used.as_str()),
            permissions_required: groups.iter().map(|g| g.iter().map(String::as_str).collect()).collect(),
        };
        push(&mut out, Stream::Consent, &event);
    }
    if let Some(t) = token.filter(|t| !t.actor_chain.is_empty()) {
        let event = DelegationEvent {
            common: common(Stream::Delegation),
            client,
            subject_hash: hashed(t),
            actor_chain: &t.actor_chain,
        };
        push(&mut out, Stream::Delegation, &event);
    }
    out
}

fn push<T: Serialize>(out: &mut Vec<(Stream, String)>, stream: Stream, event: &T) {
    if let Ok(json) = serde_json::to_string(event) {
        out.push((stream, json));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::credentials::RequestFacts;
    use crate::engine::testkit::*;
    use serde_json::{json, Value};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn run(auth: &[&str], path: &str) -> Vec<(Stream, Value)> {
        let mut e = engine();
        let a: Vec<&[u8]> = auth.iter().map(|s| s.as_bytes()).collect();
        let facts = RequestFacts {
            method: "GET",
            path,
            authorization: &a,
            consent: &[],
            dpop: &[],
            peer: None,
            now: NOW,
            method_override: false,
        };
        let (policy, decision) = e.decide_with_policy(&facts);
        let ctx = AuditContext {
            decision_id: "d1",
            time_ms: NOW * 1000,
            request_id: "r1",
            interaction_id: "i1",
            outcome: Outcome::Allow,
        };
        events(policy, &decision, &ctx).into_iter().map(|(s, j)| (s, serde_json::from_str(&j).unwrap())).collect()
    }

    #[test]
    fn a_delegated_consented_request_fills_all_three_streams() {
        let mut c = claims("moneywise-app", "accounts");
        c["act"] = json!({"sub": "moneywise-insights", "act": {"sub": "batch-7"}});
        let t = bearer(&token(&c));
        let ev = run(&[&t], "/accounts/1/balances");
        let streams: Vec<Stream> = ev.iter().map(|(s, _)| *s).collect();
        assert_eq!(streams, vec![Stream::Token, Stream::Consent, Stream::Delegation]);
        assert_eq!(ev[0].1["client"], "moneywise-app");
        assert_eq!(ev[0].1["partner"], "moneywise");
        assert_eq!(ev[1].1["consent_id"], "aac-8841");
        assert_eq!(ev[2].1["actor_chain"], json!(["moneywise-insights", "batch-7"]));
        for (_, e) in &ev {
            assert_eq!((e["decision_id"].as_str(), e["interaction_id"].as_str()), (Some("d1"), Some("i1")));
            assert_eq!(e["time"], "2026-11-24T00:00:00.000Z");
            let text = e.to_string();
            assert!(!text.contains("customer-8841") && !text.contains(t.trim_start_matches("Bearer ")));
        }
    }

    #[test]
    fn a_denial_before_authentication_has_a_token_event_without_identity() {
        let ev = run(&[], "/accounts");
        assert_eq!(ev.len(), 2, "token and consent streams (the route needs consent)");
        assert_eq!(ev[0].1["reason"], "token_missing");
        assert!(ev[0].1["client"].is_null() && ev[1].1["subject_hash"].is_null());
    }

    #[test]
    fn subject_hashes_are_keyed() {
        assert_eq!(subject_hash(b"k1", "customer-1"), subject_hash(b"k1", "customer-1"));
        assert_ne!(subject_hash(b"k1", "customer-1"), subject_hash(b"k2", "customer-1"));
        assert_eq!(subject_hash(b"k1", "customer-1").len(), 32);
        let mut ids = IdSource::new(7);
        assert_ne!(ids.decision_id(), ids.decision_id());
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn decision_ids_are_unique_per_worker_and_across_workers() {
        let mut seen = std::collections::HashSet::new();
        for seed in [1u64, 2, 0xdead_beef] {
            let mut ids = IdSource::new(seed);
            for _ in 0..10_000 {
                assert!(seen.insert(ids.decision_id()), "a decision id repeated");
            }
        }
        assert_eq!(IdSource::new(1).decision_id().len(), 24);
    }

    #[test]
    fn interaction_ids_are_version_4_uuids_and_only_uuids_are_echoed() {
        let mut ids = IdSource::new(42);
        let a = ids.uuid();
        assert!(is_uuid(a.as_bytes()), "{a}");
        assert_eq!(a.as_bytes()[14], b'4', "{a}");
        assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{a}");
        assert_ne!(a, ids.uuid());
        for bad in [
            &b"evil decision_id=forged"[..],
            b"93bac548d2de4546b106880a5018460d",
            b"",
            b"93bac548-d2de-4546-b106-880a5018460g",
        ] {
            assert!(!is_uuid(bad), "{}", String::from_utf8_lossy(bad));
        }
        assert!(is_uuid(b"93BAC548-d2de-4546-b106-880a5018460d"));
    }

    #[test]
    fn log_values_cannot_forge_fields() {
        assert_eq!(log_value("evil decision_id=forged reason=allow"), "\"evil decision_id=forged reason=allow\"");
        assert_eq!(log_value("a\"b\nc"), "\"a\\\"b\\nc\"");
    }
}
