//! The revocation feed poller: one per Envoy (a singleton `envoy.bootstrap.wasm` service with the
//! filter's `vm_id`), publishing into shared data for every worker.
//!
//! Shared data holds two keys: the document itself (read by a worker only when the version
//! changes) and a 16-byte status, version plus the time of the last successful fetch, that workers
//! read per request. A failed or malformed fetch publishes nothing, so the last good document
//! stays and its fetch time ages until the policy's staleness bound denies: fail closed.

use super::fetch::{Fetch, Reply};
use super::metrics::{bump, define, record};
use super::{log, now};
use crate::policy::{Policy, RevocationFeed};
use crate::revocation::{encode_status, RevocationSnapshot};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType};

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

pub struct FeedPoller {
    feed: RevocationFeed,
    fetch: Fetch,
    version: Option<u64>,
    last_success: Option<i64>,
    next_due_ms: i64,
    metrics: FeedMetrics,
}

impl FeedPoller {
    /// `None` when the policy has no feed. The first fetch goes out on the poller's first tick.
    pub fn start(policy: &Policy) -> Option<FeedPoller> {
        let feed = policy.revocation.clone()?;
        log(
            LogLevel::Info,
            &format!(
                "nhi-guard feed: polling cluster {} path {} every {} ms",
                feed.cluster, feed.path, feed.poll_interval_ms
            ),
        );
        Some(FeedPoller {
            fetch: Fetch::new(&feed.cluster, &feed.path, &feed.authority, feed.timeout_ms),
            feed,
            version: None,
            last_success: None,
            next_due_ms: 0,
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

    pub fn tick(&mut self, now_ms: i64) {
        if let Some(t) = self.last_success {
            record(self.metrics.age, u64::try_from((now_ms / 1000).saturating_sub(t)).unwrap_or(0));
        }
        if self.fetch.in_flight() || now_ms < self.next_due_ms {
            return;
        }
        self.next_due_ms = now_ms.saturating_add(i64::try_from(self.feed.poll_interval_ms).unwrap_or(i64::MAX));
        if let Err(e) = self.fetch.start(now_ms) {
            bump(self.metrics.failed);
            log(LogLevel::Warn, &format!("nhi-guard feed: {e}"));
        }
    }

    /// Handles the reply if `token` is this poller's call; says whether it was.
    pub fn response(&mut self, token: u32, body_size: usize) -> bool {
        let Some(reply) = self.fetch.reply(token, body_size) else { return false };
        let Some(now) = now() else { return true };
        match reply {
            Reply::NotModified => self.confirm(now),
            Reply::Body(body, etag) => match RevocationSnapshot::parse(&body) {
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
                            return true;
                        }
                        log(LogLevel::Info, &format!("nhi-guard feed: version {} published", s.version));
                        self.version = Some(s.version);
                        record(self.metrics.version, s.version);
                    }
                    self.fetch.accept_etag(etag);
                    self.confirm(now);
                }
                Err(e) => {
                    bump(self.metrics.malformed);
                    log(LogLevel::Warn, &format!("nhi-guard feed: {e}; keeping the last good version"));
                }
            },
            Reply::Failed(why) => {
                bump(self.metrics.failed);
                log(LogLevel::Warn, &format!("nhi-guard feed: fetch failed with {why}"));
            }
        }
        true
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
