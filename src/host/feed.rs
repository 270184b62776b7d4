//! The revocation feed poller: one per Envoy (a singleton `envoy.bootstrap.wasm` service with the
//! filter's `vm_id`), publishing into shared data for every worker.
//!
//! Shared data holds two keys: the document itself (read by a worker only when the version
//! changes) and a 16-byte status, version plus the time of the last successful fetch, that workers
//! read per request. A failed or malformed fetch publishes nothing, so the last good document
//! stays and its fetch time ages until the policy's staleness bound denies: fail closed.

use super::{log, now};
use crate::policy::{Policy, RevocationFeed};
use crate::revocation::{encode_status, RevocationSnapshot};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};
use std::time::Duration;

pub const STATUS_KEY: &str = "nhi_guard.revocation.status";
pub const DOCUMENT_KEY: &str = "nhi_guard.revocation.document";

struct FeedMetrics {
    ok: Option<u32>,
    failed: Option<u32>,
    malformed: Option<u32>,
    older: Option<u32>,
    version: Option<u32>,
    age: Option<u32>,
}

fn define(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name).ok()
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

fn record(id: Option<u32>, value: u64) {
    if let Some(id) = id {
        let _ = hostcalls::record_metric(id, value);
    }
}

pub struct FeedPoller {
    feed: RevocationFeed,
    version: Option<u64>,
    etag: Option<String>,
    last_success: Option<i64>,
    in_flight: Option<u32>,
    /// Whether the configured poll interval is in force (after the quick first tick).
    ticking: bool,
    metrics: FeedMetrics,
}

/// Delay of the first fetch after start.
const FIRST_FETCH_MS: u64 = 50;

impl FeedPoller {
    /// `None` when the policy has no feed: the service then idles.
    pub fn start(policy: &Policy) -> Option<FeedPoller> {
        let feed = policy.revocation.clone()?;
        // First fetch soon after start (until it lands, routes needing fresh data are refused);
        // the first tick then sets the configured interval.
        let _ = hostcalls::set_tick_period(Duration::from_millis(FIRST_FETCH_MS.min(feed.poll_interval_ms)));
        log(
            LogLevel::Info,
            &format!(
                "nhi-guard feed: polling cluster {} path {} every {} ms",
                feed.cluster, feed.path, feed.poll_interval_ms
            ),
        );
        Some(FeedPoller {
            feed,
            version: None,
            etag: None,
            last_success: None,
            in_flight: None,
            ticking: false,
            metrics: FeedMetrics {
                ok: define(MetricType::Counter, "nhi_guard.feed.fetch_ok"),
                failed: define(MetricType::Counter, "nhi_guard.feed.fetch_failed"),
                malformed: define(MetricType::Counter, "nhi_guard.feed.malformed"),
                older: define(MetricType::Counter, "nhi_guard.feed.older_version_ignored"),
                version: define(MetricType::Gauge, "nhi_guard.feed.version"),
                age: define(MetricType::Gauge, "nhi_guard.feed.age_seconds"),
            },
        })
    }

    pub fn tick(&mut self) {
        if !self.ticking {
            self.ticking = true;
            let _ = hostcalls::set_tick_period(Duration::from_millis(self.feed.poll_interval_ms));
        }
        if let (Some(t), Some(n)) = (self.last_success, now()) {
            record(self.metrics.age, u64::try_from(n.saturating_sub(t)).unwrap_or(0));
        }
        if self.in_flight.is_some() {
            return;
        }
        let mut headers =
            vec![(":method", "GET"), (":path", self.feed.path.as_str()), (":authority", self.feed.authority.as_str())];
        if let Some(tag) = &self.etag {
            headers.push(("if-none-match", tag.as_str()));
        }
        match hostcalls::dispatch_http_call(
            &self.feed.cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(self.feed.timeout_ms),
        ) {
            Ok(token) => self.in_flight = Some(token),
            Err(e) => {
                bump(self.metrics.failed);
                log(LogLevel::Warn, &format!("nhi-guard feed: cannot call cluster {}: {e:?}", self.feed.cluster));
            }
        }
    }

    pub fn response(&mut self, token: u32, body_size: usize) {
        if self.in_flight != Some(token) {
            return;
        }
        self.in_flight = None;
        let headers = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default();
        let header = |name: &str| {
            headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| std::str::from_utf8(v).ok().map(String::from))
        };
        let Some(now) = now() else { return };
        match header(":status").as_deref() {
            Some("304") => self.confirm(now),
            Some("200") => {
                let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                match RevocationSnapshot::parse(&body) {
                    Ok(s) if self.version.is_some_and(|v| s.version < v) => {
                        bump(self.metrics.older);
                        log(
                            LogLevel::Warn,
                            &format!(
                                "nhi-guard feed: ignored version {} older than {}",
                                s.version,
                                self.version.unwrap_or(0)
                            ),
                        );
                    }
                    Ok(s) => {
                        if self.version != Some(s.version) {
                            if hostcalls::set_shared_data(DOCUMENT_KEY, Some(&body), None).is_err() {
                                bump(self.metrics.failed);
                                return;
                            }
                            log(LogLevel::Info, &format!("nhi-guard feed: version {} published", s.version));
                            self.version = Some(s.version);
                            record(self.metrics.version, s.version);
                        }
                        self.etag = header("etag");
                        self.confirm(now);
                    }
                    Err(e) => {
                        bump(self.metrics.malformed);
                        log(LogLevel::Warn, &format!("nhi-guard feed: {e}; keeping the last good version"));
                    }
                }
            }
            other => {
                bump(self.metrics.failed);
                log(LogLevel::Warn, &format!("nhi-guard feed: fetch failed with status {}", other.unwrap_or("none")));
            }
        }
    }

    /// The current version is confirmed as of `now`: publish the status workers read.
    fn confirm(&mut self, now: i64) {
        let Some(version) = self.version else { return };
        if hostcalls::set_shared_data(STATUS_KEY, Some(&encode_status(version, now)), None).is_ok() {
            self.last_success = Some(now);
            bump(self.metrics.ok);
            record(self.metrics.age, 0);
        }
    }
}
