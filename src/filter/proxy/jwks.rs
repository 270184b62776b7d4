//! Issuers' JWKS, polled from the filter's own plugin by whichever worker holds each issuer's
//! lease, and published into shared data for every worker.
//!
//! Per remote issuer, shared data holds (under names derived from the issuer and its source,
//! `crate::engine::shared_state`) the validated document, a 16-byte status (generation, a hash of the
//! document, plus the time of the last successful fetch) and a refetch request that workers write
//! (Unix ms) right after refusing a token whose `kid` they lack. The holder fetches on its refresh
//! interval, and early on a request, at most once per `unknown_kid_refetch_min_interval_ms`; until
//! the first document arrives it retries at that pace. A failed or refused fetch publishes
//! nothing, so the last good keys stay.

use super::fetch::{Fetch, Reply};
use super::host::ProxyHost;
use super::lease::{LeaseHolder, Turn};
use super::{log, now};
use crate::engine::jwt::jwks::{fingerprint, parse_fetched, MAX_JWKS_BYTES};
use crate::engine::policy::{Policy, RemoteJwks};
use crate::engine::shared_state::{decode_status, encode_status, SourceKeys};
use crate::filter::host::{Host, MetricKind};
use crate::filter::metrics;
use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;
use std::rc::Rc;

/// Counters shared by every remote issuer (names in the README, "Metrics").
pub struct JwksMetrics {
    ok: Option<u32>,
    unchanged: Option<u32>,
    failed: Option<u32>,
    malformed: Option<u32>,
    refetch_requested: Option<u32>,
    keys_published: Option<u32>,
}

impl JwksMetrics {
    pub fn define() -> Rc<JwksMetrics> {
        let c = |name: &str| ProxyHost.define_metric(MetricKind::Counter, name);
        Rc::new(JwksMetrics {
            ok: c("nhi_guard.jwks.fetch_ok"),
            unchanged: c("nhi_guard.jwks.unchanged"),
            failed: c("nhi_guard.jwks.fetch_failed"),
            malformed: c("nhi_guard.jwks.malformed"),
            refetch_requested: c("nhi_guard.jwks.refetch_requested"),
            keys_published: ProxyHost.define_metric(MetricKind::Gauge, "nhi_guard.jwks.keys"),
        })
    }
}

pub struct JwksPoller {
    policy: Rc<Policy>,
    issuer: usize,
    iss: String,
    remote: RemoteJwks,
    keys: SourceKeys,
    fetch: Fetch,
    /// Whether this context held the lease at its last tick (a takeover fetches at once).
    holding: bool,
    next_refresh_ms: i64,
    /// A worker asked for a refetch that has not gone out yet (rate limit).
    wanted: bool,
    /// The last request value seen in shared data.
    seen_request: Option<Vec<u8>>,
    metrics: Rc<JwksMetrics>,
}

impl JwksPoller {
    /// One poller per issuer with `remote_jwks`.
    pub fn for_policy(policy: &Rc<Policy>) -> Vec<JwksPoller> {
        let metrics = JwksMetrics::define();
        let mut out = Vec::new();
        for (i, issuer) in policy.issuers.iter().enumerate() {
            let Some(remote) = issuer.remote_jwks.clone() else { continue };
            out.push(JwksPoller {
                policy: policy.clone(),
                issuer: i,
                iss: issuer.id.clone(),
                fetch: Fetch::new(&remote.cluster, &remote.path, &remote.authority, remote.timeout_ms, MAX_JWKS_BYTES),
                keys: SourceKeys::jwks(&issuer.id, &remote),
                remote,
                holding: false,
                next_refresh_ms: 0,
                wanted: false,
                seen_request: None,
                metrics: metrics.clone(),
            });
        }
        out
    }

    /// The issuer's index in the policy and the shared-data names workers read.
    pub fn source(&self) -> (usize, &SourceKeys) {
        (self.issuer, &self.keys)
    }

    /// The published generation, if any.
    fn generation(&self) -> Option<u64> {
        hostcalls::get_shared_data(&self.keys.status)
            .ok()
            .and_then(|(s, _)| s)
            .and_then(|s| decode_status(&s))
            .map(|s| s.0)
    }

    pub fn release(&self, lease: &LeaseHolder) {
        lease.release(&self.keys.lease);
    }

    pub fn tick(&mut self, now_ms: i64, lease: &LeaseHolder) {
        match lease.turn(&self.keys.lease, now_ms, &mut self.holding) {
            Turn::Idle => return,
            Turn::Holding => {}
            Turn::TookOver => {
                self.next_refresh_ms = 0;
                log(
                    LogLevel::Info,
                    &format!(
                        "nhi-guard jwks: this worker polls {} from cluster {} path {} every {} ms",
                        self.iss, self.remote.cluster, self.remote.path, self.remote.refresh_interval_ms
                    ),
                );
            }
        }
        if let Ok((Some(request), _)) = hostcalls::get_shared_data(&self.keys.refetch) {
            if self.seen_request.as_ref() != Some(&request) {
                self.seen_request = Some(request);
                self.wanted = true;
                metrics::bump(&ProxyHost, self.metrics.refetch_requested);
            }
        }
        if self.fetch.in_flight() {
            return;
        }
        let min = i64::try_from(self.remote.unknown_kid_refetch_min_interval_ms).unwrap_or(i64::MAX);
        let quiet = self.fetch.last_started_ms.is_none_or(|t| now_ms.saturating_sub(t) >= min);
        // Without keys, retry at the rate-limit pace: every request is refused until they arrive.
        let early = (self.wanted || self.generation().is_none()) && quiet;
        if now_ms < self.next_refresh_ms && !early {
            return;
        }
        self.wanted = false;
        self.next_refresh_ms =
            now_ms.saturating_add(i64::try_from(self.remote.refresh_interval_ms).unwrap_or(i64::MAX));
        if let Err(e) = self.fetch.start(now_ms) {
            metrics::bump(&ProxyHost, self.metrics.failed);
            log(LogLevel::Warn, &format!("nhi-guard jwks: {}: {e}", self.iss));
        }
    }

    /// Handles the reply if `token` is this poller's call; says whether it was.
    pub fn response(&mut self, token: u32, body_size: usize) -> bool {
        let Some(reply) = self.fetch.reply(token, body_size) else { return false };
        let Some(now) = now() else { return true };
        match reply {
            Reply::NotModified => {
                if let Some(generation) = self.generation() {
                    self.confirm(generation, now);
                }
            }
            Reply::TooLarge(size) => {
                metrics::bump(&ProxyHost, self.metrics.malformed);
                log(
                    LogLevel::Warn,
                    &format!(
                        "nhi-guard jwks: {}: document of {size} bytes refused unread (limit {MAX_JWKS_BYTES}); keeping the last good keys",
                        self.iss
                    ),
                );
            }
            Reply::Body(body, etag) => {
                let Some(issuer) = self.policy.issuers.get(self.issuer) else { return true };
                match parse_fetched(&body, &self.policy, issuer) {
                    Ok(keys) => {
                        let generation = fingerprint(&body);
                        if self.generation() != Some(generation) {
                            if hostcalls::set_shared_data(&self.keys.document, Some(&body), None).is_err() {
                                metrics::bump(&ProxyHost, self.metrics.failed);
                                return true;
                            }
                            metrics::record(&ProxyHost, self.metrics.keys_published, keys.keys.len() as u64);
                            let kids: Vec<&str> = keys.keys.iter().map(|k| k.kid.as_str()).collect();
                            log(
                                LogLevel::Info,
                                &format!(
                                    "nhi-guard jwks: {} published keys {kids:?} ({} skipped)",
                                    self.iss, keys.skipped
                                ),
                            );
                        } else {
                            metrics::bump(&ProxyHost, self.metrics.unchanged);
                        }
                        self.fetch.accept_etag(etag);
                        self.confirm(generation, now);
                    }
                    Err(e) => {
                        metrics::bump(&ProxyHost, self.metrics.malformed);
                        log(LogLevel::Warn, &format!("nhi-guard jwks: {}: {e}; keeping the last good keys", self.iss));
                    }
                }
            }
            Reply::Failed(why) => {
                metrics::bump(&ProxyHost, self.metrics.failed);
                log(
                    LogLevel::Warn,
                    &format!(
                        "nhi-guard jwks: {} ({}) failed with {why}; keeping the last good keys",
                        self.iss,
                        self.fetch.describe()
                    ),
                );
            }
        }
        true
    }

    fn confirm(&mut self, generation: u64, now: i64) {
        if hostcalls::set_shared_data(&self.keys.status, Some(&encode_status(generation, now)), None).is_ok() {
            metrics::bump(&ProxyHost, self.metrics.ok);
        }
    }
}
