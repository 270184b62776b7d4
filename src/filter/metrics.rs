//! Envoy stats for decisions. Names are documented in docs/metrics-and-audit.md.
//!
//! Cardinality is bounded by the policy: one counter set per reason, per route id and per partner
//! id, all defined at configure. Defining a metric returns the same id for the same name in every
//! VM, so this is idempotent. Counter updates that fail are ignored: a lost count must not deny traffic.

use super::host::{Host, MetricKind};
use crate::engine::audit::Outcome;
use crate::engine::policy::Policy;
use crate::engine::reason::Reason;
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

/// Adds one to a counter, if it was defined.
pub fn bump(host: &impl Host, id: Option<u32>) {
    if let Some(id) = id {
        host.increment(id);
    }
}

/// Sets a gauge, if it was defined.
pub fn record(host: &impl Host, id: Option<u32>, value: u64) {
    if let Some(id) = id {
        host.record(id, value);
    }
}

fn index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Allow => 0,
        Outcome::Deny => 1,
        Outcome::WouldDeny => 2,
    }
}

impl Metrics {
    pub fn define(host: &impl Host, policy: &Policy) -> Metrics {
        let counter = |name: &str| host.define_metric(MetricKind::Counter, name);
        let outcomes = |prefix: &str| ["allowed", "denied", "would_deny"].map(|o| counter(&format!("{prefix}{o}")));
        let reasons =
            |stem: &str| Reason::ALL.iter().map(|r| (*r, counter(&format!("nhi_guard.{stem}.{}", r.code())))).collect();
        Metrics {
            totals: outcomes("nhi_guard."),
            denied_by_reason: reasons("denied"),
            would_deny_by_reason: reasons("would_deny"),
            by_route: policy
                .routes
                .iter()
                .map(|r| (r.id.clone(), outcomes(&format!("nhi_guard.route.{}.", r.id))))
                .collect(),
            by_partner: policy
                .partners
                .keys()
                .map(|p| (p.clone(), outcomes(&format!("nhi_guard.partner.{p}."))))
                .collect(),
            cache_hits: counter("nhi_guard.token_cache_hits"),
            backend_native: host.define_metric(MetricKind::Gauge, "nhi_guard.signature_backend_native"),
        }
    }

    /// Counts one decision: the total, the reason (for denials), the route and the partner.
    pub fn decision(
        &self,
        host: &impl Host,
        outcome: Outcome,
        reason: Option<Reason>,
        route: Option<&str>,
        partner: Option<&str>,
    ) {
        let i = index(outcome);
        bump(host, self.totals.get(i).copied().flatten());
        let by_reason = match outcome {
            Outcome::Allow => None,
            Outcome::Deny => Some(&self.denied_by_reason),
            Outcome::WouldDeny => Some(&self.would_deny_by_reason),
        };
        if let (Some(list), Some(reason)) = (by_reason, reason) {
            if let Some((_, id)) = list.iter().find(|(r, _)| *r == reason) {
                bump(host, *id);
            }
        }
        for (map, key) in [(&self.by_route, route), (&self.by_partner, partner)] {
            if let Some(counters) = key.and_then(|k| map.get(k)) {
                bump(host, counters.get(i).copied().flatten());
            }
        }
    }

    pub fn cache_hit(&self, host: &impl Host) {
        bump(host, self.cache_hits);
    }

    pub fn set_backend_native(&self, host: &impl Host, native: bool) {
        record(host, self.backend_native, u64::from(native));
    }
}
