//! Envoy stats for decisions. Names are documented in the README ("Metrics").
//!
//! Cardinality is bounded by the policy: one counter set per reason, per route id and per partner
//! id, all defined at configure. `define_metric` returns the same id for the same name in every VM,
//! so this is idempotent. Counter updates that fail are ignored: a lost count must not deny traffic.

use crate::audit::Outcome;
use crate::policy::Policy;
use crate::Reason;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::collections::HashMap;

/// Counters per outcome: allowed, denied, would_deny (dry-run).
type OutcomeCounters = [Option<u32>; 3];

pub struct Metrics {
    totals: OutcomeCounters,
    denied_by_reason: Vec<(Reason, Option<u32>)>,
    would_deny_by_reason: Vec<(Reason, Option<u32>)>,
    by_route: HashMap<String, OutcomeCounters>,
    by_partner: HashMap<String, OutcomeCounters>,
    cache_hits: Option<u32>,
    backend_native: Option<u32>,
}

/// Defines a metric; `None` if the host refuses (counting is then skipped, never fatal).
pub(super) fn define(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name).ok()
}

/// Adds one to a counter, if it was defined.
pub(super) fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

/// Sets a gauge, if it was defined.
pub(super) fn record(id: Option<u32>, value: u64) {
    if let Some(id) = id {
        let _ = hostcalls::record_metric(id, value);
    }
}

fn outcome_counters(prefix: &str) -> OutcomeCounters {
    ["allowed", "denied", "would_deny"].map(|o| define(MetricType::Counter, &format!("{prefix}{o}")))
}

fn index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Allow => 0,
        Outcome::Deny => 1,
        Outcome::WouldDeny => 2,
    }
}

impl Metrics {
    pub fn define(policy: &Policy) -> Metrics {
        let reasons = |stem: &str| {
            Reason::ALL
                .iter()
                .map(|r| (*r, define(MetricType::Counter, &format!("nhi_guard.{stem}.{}", r.code()))))
                .collect()
        };
        Metrics {
            totals: outcome_counters("nhi_guard."),
            denied_by_reason: reasons("denied"),
            would_deny_by_reason: reasons("would_deny"),
            by_route: policy
                .routes
                .iter()
                .map(|r| (r.id.clone(), outcome_counters(&format!("nhi_guard.route.{}.", r.id))))
                .collect(),
            by_partner: policy
                .partners
                .keys()
                .map(|p| (p.clone(), outcome_counters(&format!("nhi_guard.partner.{p}."))))
                .collect(),
            cache_hits: define(MetricType::Counter, "nhi_guard.token_cache_hits"),
            backend_native: define(MetricType::Gauge, "nhi_guard.signature_backend_native"),
        }
    }

    /// Counts one decision: the total, the reason (for denials), the route and the partner.
    pub fn decision(&self, outcome: Outcome, reason: Option<Reason>, route: Option<&str>, partner: Option<&str>) {
        let i = index(outcome);
        bump(self.totals.get(i).copied().flatten());
        let by_reason = match outcome {
            Outcome::Allow => None,
            Outcome::Deny => Some(&self.denied_by_reason),
            Outcome::WouldDeny => Some(&self.would_deny_by_reason),
        };
        if let (Some(list), Some(reason)) = (by_reason, reason) {
            if let Some((_, id)) = list.iter().find(|(r, _)| *r == reason) {
                bump(*id);
            }
        }
        for (map, key) in [(&self.by_route, route), (&self.by_partner, partner)] {
            if let Some(counters) = key.and_then(|k| map.get(k)) {
                bump(counters.get(i).copied().flatten());
            }
        }
    }

    pub fn cache_hit(&self) {
        bump(self.cache_hits);
    }

    pub fn set_backend_native(&self, native: bool) {
        record(self.backend_native, u64::from(native));
    }
}
