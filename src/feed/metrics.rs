//! Prometheus metrics of the feed service (`GET /metrics`, text format), prefix `nhi_guard_feed_`.
//! docs/feed.md lists them; `tests::every_metric_is_documented` keeps the list true.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    /// SETs received (before validation), by stream and delivery (`push`, `poll`).
    pub sets_received: Family<Labels, Counter>,
    /// SETs stored that changed or confirmed feed entries, by stream and event.
    pub sets_accepted: Family<Labels, Counter>,
    /// SETs stored and acknowledged without a feed change, by stream, event and why.
    pub sets_unmapped: Family<Labels, Counter>,
    /// SETs refused, by stream and reason (`signature`, `audience`, ...; `unauthenticated`, `too_large`).
    pub sets_refused: Family<Labels, Counter>,
    /// SETs seen before (replays and retries), acknowledged, not applied again.
    pub sets_duplicate: Family<Labels, Counter>,
    /// Poll requests to transmitters, by stream and outcome (`ok`, `error`).
    pub polls: Family<Labels, Counter>,
    /// API calls by action and outcome (`changed`, `unchanged`, `conflict`, `denied`, `invalid`, `unavailable`).
    pub api_changes: Family<Labels, Counter>,
    /// Feed fetches by status (`200`, `304`, `503`).
    pub feed_requests: Family<Labels, Counter>,
    pub feed_version: Gauge,
    /// Entries in the served document, by kind.
    pub feed_entries: Family<Labels, Gauge>,
    pub feed_document_bytes: Gauge,
    /// Seconds since this replica last confirmed its document against the database.
    pub feed_document_age_seconds: Gauge,
    /// 1 when the last database call succeeded.
    pub database_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("nhi_guard_feed");
        let m = Metrics {
            sets_received: Family::default(),
            sets_accepted: Family::default(),
            sets_unmapped: Family::default(),
            sets_refused: Family::default(),
            sets_duplicate: Family::default(),
            polls: Family::default(),
            api_changes: Family::default(),
            feed_requests: Family::default(),
            feed_version: Gauge::default(),
            feed_entries: Family::default(),
            feed_document_bytes: Gauge::default(),
            feed_document_age_seconds: Gauge::default(),
            database_up: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("sets_received", "SETs received, by stream and delivery", m.sets_received.clone());
        registry.register(
            "sets_accepted",
            "SETs stored with a feed change, by stream and event",
            m.sets_accepted.clone(),
        );
        registry.register(
            "sets_unmapped",
            "SETs stored and acknowledged without a feed change",
            m.sets_unmapped.clone(),
        );
        registry.register("sets_refused", "SETs refused, by stream and reason", m.sets_refused.clone());
        registry.register(
            "sets_duplicate",
            "SETs seen before, acknowledged and not applied again",
            m.sets_duplicate.clone(),
        );
        registry.register("polls", "RFC 8936 poll requests, by stream and outcome", m.polls.clone());
        registry.register("api_changes", "API calls, by action and outcome", m.api_changes.clone());
        registry.register("feed_requests", "Feed document fetches, by status", m.feed_requests.clone());
        registry.register("feed_version", "Version of the served feed document", m.feed_version.clone());
        registry.register("feed_entries", "Entries in the served feed document, by kind", m.feed_entries.clone());
        registry.register("feed_document_bytes", "Size of the served feed document", m.feed_document_bytes.clone());
        registry.register(
            "feed_document_age_seconds",
            "Seconds since the served document was last confirmed against the database",
            m.feed_document_age_seconds.clone(),
        );
        registry.register("database_up", "1 when the last database call succeeded", m.database_up.clone());
        Metrics { registry, ..m }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Label helper: `labels(&[("stream", s), ("reason", r)])`.
pub fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_documented() {
        let m = Metrics::new();
        m.sets_received.get_or_create(&labels(&[("stream", "s"), ("delivery", "push")])).inc();
        let text = m.render();
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/feed.md")).unwrap();
        let mut names = 0;
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            let kind = line.split_whitespace().nth(3).unwrap();
            let exposed = if kind == "counter" { format!("{name}_total") } else { name.to_string() };
            assert!(doc.contains(&format!("`{exposed}`")), "docs/feed.md does not list {exposed}");
            names += 1;
        }
        assert_eq!(names, 13);
        assert!(text.contains("nhi_guard_feed_sets_received_total{stream=\"s\",delivery=\"push\"} 1"), "{text}");
    }
}
