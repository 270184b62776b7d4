//! The revocation feed, polled from the filter's own plugin by whichever worker holds the feed's
//! lease (one fetch stream per Envoy), and published into shared data for every worker.
//!
//! Shared data holds, under names derived from the feed's source (`crate::engine::shared_state`), the
//! document itself (read by a worker only when the version changes) and a 16-byte status, version
//! plus the time of the last successful fetch, that workers read at most every 100 ms. A failed or
//! refused fetch publishes nothing, so the last good document stays and its fetch time ages until
//! the policy's staleness bound denies: fail closed.

use super::fetch::{Fetch, Reply};
use super::host::ProxyHost;
use super::lease::{LeaseHolder, Turn};
use super::{log, now};
use crate::engine::policy::RevocationFeed;
use crate::engine::revocation::{RevocationSnapshot, MAX_FEED_BYTES};
use crate::engine::shared_state::{decode_status, encode_status, SourceKeys};
use crate::filter::host::{Host, MetricKind};
use crate::filter::metrics;
use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

struct FeedMetrics {
    ok: Option<u32>,
    failed: Option<u32>,
    malformed: Option<u32>,
    older: Option<u32>,
    version: Option<u32>,
    age: Option<u32>,
    refused_seconds: Option<u32>,
}

pub struct FeedPoller {
    feed: RevocationFeed,
    keys: SourceKeys,
    fetch: Fetch,
    /// Whether this context held the lease at its last tick (a takeover fetches at once).
    holding: bool,
    /// Since when (Unix s) the feed has answered but every document was refused, if it has.
    refused_since: Option<i64>,
    next_due_ms: i64,
    metrics: FeedMetrics,
}

impl FeedPoller {
    pub fn new(feed: &RevocationFeed) -> FeedPoller {
        FeedPoller {
            fetch: Fetch::new(&feed.cluster, &feed.path, &feed.authority, feed.timeout_ms, MAX_FEED_BYTES),
            keys: SourceKeys::feed(feed),
            feed: feed.clone(),
            holding: false,
            refused_since: None,
            next_due_ms: 0,
            metrics: FeedMetrics {
                ok: ProxyHost.define_metric(MetricKind::Counter, "nhi_guard.feed.fetch_ok"),
                failed: ProxyHost.define_metric(MetricKind::Counter, "nhi_guard.feed.fetch_failed"),
                malformed: ProxyHost.define_metric(MetricKind::Counter, "nhi_guard.feed.malformed"),
                older: ProxyHost.define_metric(MetricKind::Counter, "nhi_guard.feed.older_version_ignored"),
                version: ProxyHost.define_metric(MetricKind::Gauge, "nhi_guard.feed.version"),
                age: ProxyHost.define_metric(MetricKind::Gauge, "nhi_guard.feed.age_seconds"),
                refused_seconds: ProxyHost.define_metric(MetricKind::Gauge, "nhi_guard.feed.refused_seconds"),
            },
        }
    }

    pub fn keys(&self) -> &SourceKeys {
        &self.keys
    }

    /// The published (version, fetch time), if any: what every worker decides with.
    fn published(&self) -> Option<(u64, i64)> {
        hostcalls::get_shared_data(&self.keys.status).ok().and_then(|(s, _)| s).and_then(|s| decode_status(&s))
    }

    pub fn tick(&mut self, now_ms: i64, lease: &LeaseHolder) {
        match lease.turn(&self.keys.lease, now_ms, &mut self.holding) {
            Turn::Idle => return,
            Turn::Holding => {}
            Turn::TookOver => {
                self.next_due_ms = 0;
                log(
                    LogLevel::Info,
                    &format!(
                        "nhi-guard feed: this worker polls cluster {} path {} every {} ms",
                        self.feed.cluster, self.feed.path, self.feed.poll_interval_ms
                    ),
                );
            }
        }
        if let Some((_, t)) = self.published() {
            metrics::record(
                &ProxyHost,
                self.metrics.age,
                u64::try_from((now_ms / 1000).saturating_sub(t)).unwrap_or(0),
            );
        }
        if self.fetch.in_flight() || now_ms < self.next_due_ms {
            return;
        }
        self.next_due_ms = now_ms.saturating_add(i64::try_from(self.feed.poll_interval_ms).unwrap_or(i64::MAX));
        if let Err(e) = self.fetch.start(now_ms) {
            metrics::bump(&ProxyHost, self.metrics.failed);
            log(LogLevel::Warn, &format!("nhi-guard feed: {e}"));
        }
    }

    pub fn release(&self, lease: &LeaseHolder) {
        lease.release(&self.keys.lease);
    }

    /// Handles the reply if `token` is this poller's call; says whether it was.
    pub fn response(&mut self, token: u32, body_size: usize) -> bool {
        let Some(reply) = self.fetch.reply(token, body_size) else { return false };
        let Some(now) = now() else { return true };
        let published = self.published();
        match reply {
            Reply::NotModified => self.confirm(published.map(|(v, _)| v), now),
            Reply::Body(body, etag) => match RevocationSnapshot::parse(&body) {
                Ok(s) if published.is_some_and(|(v, _)| s.version < v) => {
                    metrics::bump(&ProxyHost, self.metrics.older);
                    let current = published.map_or(0, |(v, _)| v);
                    self.refused(now, &format!("version {} is older than the published {current}", s.version));
                }
                Ok(s) => {
                    if published.map(|(v, _)| v) != Some(s.version) {
                        if hostcalls::set_shared_data(&self.keys.document, Some(&body), None).is_err() {
                            metrics::bump(&ProxyHost, self.metrics.failed);
                            return true;
                        }
                        log(LogLevel::Info, &format!("nhi-guard feed: version {} published", s.version));
                        metrics::record(&ProxyHost, self.metrics.version, s.version);
                    }
                    self.fetch.accept_etag(etag);
                    self.confirm(Some(s.version), now);
                }
                Err(e) => {
                    metrics::bump(&ProxyHost, self.metrics.malformed);
                    self.refused(now, &e);
                }
            },
            Reply::TooLarge(size) => {
                metrics::bump(&ProxyHost, self.metrics.malformed);
                self.refused(now, &format!("document of {size} bytes refused unread (limit {MAX_FEED_BYTES})"));
            }
            Reply::Failed(why) => {
                metrics::bump(&ProxyHost, self.metrics.failed);
                log(LogLevel::Warn, &format!("nhi-guard feed: fetch failed with {why}"));
            }
        }
        true
    }

    /// The feed answered, but with a document that cannot be used (a rolled-back replica, a broken
    /// writer). Fail closed stays right; silent is not: say how long it has lasted, and why.
    fn refused(&mut self, now: i64, why: &str) {
        let since = *self.refused_since.get_or_insert(now);
        let seconds = now.saturating_sub(since);
        metrics::record(&ProxyHost, self.metrics.refused_seconds, u64::try_from(seconds).unwrap_or(0));
        log(
            LogLevel::Warn,
            &format!(
                "nhi-guard feed: reachable, but its document has been refused for {seconds} s: {why}; keeping the last \
                 good version (routes needing fresh revocation data fail closed once it is older than {} s)",
                self.feed.max_staleness
            ),
        );
    }

    /// `version` is confirmed as of `now`: publish the status workers read.
    fn confirm(&mut self, version: Option<u64>, now: i64) {
        self.refused_since = None;
        metrics::record(&ProxyHost, self.metrics.refused_seconds, 0);
        let Some(version) = version else { return };
        if hostcalls::set_shared_data(&self.keys.status, Some(&encode_status(version, now)), None).is_ok() {
            metrics::bump(&ProxyHost, self.metrics.ok);
            metrics::record(&ProxyHost, self.metrics.age, 0);
        }
    }
}
