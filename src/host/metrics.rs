//! Envoy stats for decisions. Names are documented in the README ("Metrics").
//!
//! `define_metric` returns the same id for the same name in every VM, so defining at configure is
//! cheap and idempotent. Counter updates that fail are ignored: a lost count must not deny traffic.

use crate::Reason;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

pub struct Metrics {
    allowed: Option<u32>,
    denied: Option<u32>,
    by_reason: Vec<(Reason, Option<u32>)>,
    cache_hits: Option<u32>,
    backend_native: Option<u32>,
}

fn define(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name).ok()
}

impl Metrics {
    pub fn define() -> Metrics {
        Metrics {
            allowed: define(MetricType::Counter, "nhi_guard.allowed"),
            denied: define(MetricType::Counter, "nhi_guard.denied"),
            by_reason: Reason::ALL
                .iter()
                .map(|r| (*r, define(MetricType::Counter, &format!("nhi_guard.denied.{}", r.code()))))
                .collect(),
            cache_hits: define(MetricType::Counter, "nhi_guard.token_cache_hits"),
            backend_native: define(MetricType::Gauge, "nhi_guard.signature_backend_native"),
        }
    }

    fn bump(id: Option<u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    pub fn allowed(&self, cache_hit: bool) {
        Self::bump(self.allowed);
        if cache_hit {
            Self::bump(self.cache_hits);
        }
    }

    pub fn denied(&self, reason: Reason) {
        Self::bump(self.denied);
        if let Some((_, id)) = self.by_reason.iter().find(|(r, _)| *r == reason) {
            Self::bump(*id);
        }
    }

    pub fn set_backend_native(&self, native: bool) {
        if let Some(id) = self.backend_native {
            let _ = hostcalls::record_metric(id, u64::from(native));
        }
    }
}
