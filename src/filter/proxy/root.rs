//! The root context: one per worker (and one on Envoy's main thread) for each plugin. It loads
//! the policy on configure (refusing a bad one), builds the worker's engine, and on its 100 ms
//! tick takes part in polling the policy's sources: for each source, the root holding its lease
//! fetches, the others only read what it publishes. No bootstrap extension is needed, so the same
//! module works as Istio's `WasmPlugin` and Envoy Gateway's `EnvoyExtensionPolicy` deliver it.

use super::feed::FeedPoller;
use super::host::ProxyHost;
use super::http::RequestContext;
use super::jwks::JwksPoller;
use super::lease::LeaseHolder;
use super::log;
use super::replay::SharedReplayCache;
use crate::engine::audit::IdSource;
use crate::engine::jwt::native::{ForeignFunction, HostSignatureVerifier};
use crate::engine::jwt::verifier::{PureRust, SignatureVerifier};
use crate::engine::policy::{Policy, SignatureBackend};
use crate::filter::metrics::Metrics;
use crate::filter::request::{SharedWorker, Worker, WorkerSources};
use crate::Engine;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;

/// Where the policy comes from, as named in load errors.
const SOURCE: &str = "envoy.filters.http.wasm configuration (nhi-guard policy)";

pub struct Root {
    context_id: u32,
    lease: LeaseHolder,
    /// What this worker's request contexts share; no engine until a policy loads (refuse all).
    worker: SharedWorker,
    feed: Option<FeedPoller>,
    jwks: Vec<JwksPoller>,
}

impl Root {
    pub fn new(context_id: u32) -> Root {
        Root {
            context_id,
            lease: LeaseHolder::new(context_id),
            worker: Rc::new(Worker {
                engine: None,
                metrics: None,
                sources: WorkerSources::default(),
                ids: RefCell::new(IdSource::new(super::random_u64(context_id))),
            }),
            feed: None,
            jwks: Vec::new(),
        }
    }
}

/// The tick: lease renewal and each source's own schedule (poll, refresh, refetch requests) run
/// on it, so this bounds how late any of them runs.
const TICK_MS: u64 = 100;

/// Envoy's `verify_signature` foreign function.
pub struct EnvoyForeignFunction;

impl ForeignFunction for EnvoyForeignFunction {
    fn call(&self, name: &str, arguments: &[u8]) -> Result<Vec<u8>, String> {
        match proxy_wasm::hostcalls::call_foreign_function(name, Some(arguments)) {
            Ok(reply) => Ok(reply.unwrap_or_default()),
            Err(status) => Err(format!("{status:?}")),
        }
    }
}

fn load() -> Option<Policy> {
    let config =
        match proxy_wasm::hostcalls::get_buffer(proxy_wasm::types::BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            _ => {
                log(LogLevel::Critical, &format!("{SOURCE}: empty; the filter needs a policy and will not start"));
                return None;
            }
        };
    let Ok(json) = std::str::from_utf8(&config) else {
        log(LogLevel::Critical, &format!("{SOURCE}: not UTF-8; the filter will not start"));
        return None;
    };
    // The VM's environment is what Envoy passes in `vm_config.environment_variables`.
    match crate::engine::policy::load_with_env(json, SOURCE, &|name| std::env::var(name).ok()) {
        Ok(p) => Some(p),
        Err(e) => {
            log(LogLevel::Critical, &format!("{e}\nnhi-guard refuses to start with this policy"));
            None
        }
    }
}

impl Context for Root {
    /// The plugin is going away (a policy update, a drained listener): hand its leases on at once
    /// rather than leave the sources unpolled until the leases lapse.
    fn on_done(&mut self) -> bool {
        if let Some(m) = &self.worker.metrics {
            m.flush(&ProxyHost);
        }
        if let Some(feed) = &self.feed {
            feed.release(&self.lease);
        }
        for poller in &self.jwks {
            poller.release(&self.lease);
        }
        true
    }

    fn on_http_call_response(&mut self, token_id: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if let Some(feed) = &mut self.feed {
            if feed.response(token_id, body_size) {
                return;
            }
        }
        for poller in &mut self.jwks {
            if poller.response(token_id, body_size) {
                return;
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(policy) = load() else { return false };
        let policy = Rc::new(policy);
        self.feed = policy.revocation.as_ref().map(FeedPoller::new);
        self.jwks = JwksPoller::for_policy(&policy);
        let sources = WorkerSources::new(
            self.feed.as_ref().map(|f| f.keys().clone()),
            self.jwks.iter().map(|p| (p.source().0, p.source().1.clone())).collect(),
        );
        // Every root context ticks: pollers compete for their sources, and the worker's decision
        // counters reach Envoy's stats.
        let _ = proxy_wasm::hostcalls::set_tick_period(std::time::Duration::from_millis(TICK_MS));
        let metrics = Metrics::define(&ProxyHost, &policy);
        let native = HostSignatureVerifier::new(EnvoyForeignFunction);
        let verifier: Box<dyn SignatureVerifier> = match policy.signature_backend {
            SignatureBackend::Auto if native.probe() => Box::new(native),
            _ => Box::new(PureRust),
        };
        metrics.set_backend_native(&ProxyHost, verifier.name() == "envoy-native");
        log(
            LogLevel::Info,
            &format!(
                "nhi-guard: policy loaded ({} routes, {} clients, {} partners); signature backend {}{}",
                policy.routes.iter().count(),
                policy.clients.len(),
                policy.partners.len(),
                verifier.name(),
                if policy.revocation.is_some() { "; revocation feed on" } else { "" }
            ),
        );
        let mut engine = Engine::new(policy.clone(), verifier);
        if let Some(dpop) = &policy.dpop {
            engine.set_replay_guard(Box::new(SharedReplayCache::new(dpop.replay_cache_buckets, self.context_id)));
        }
        self.worker = Rc::new(Worker {
            engine: Some(RefCell::new(engine)),
            metrics: Some(metrics),
            sources,
            ids: RefCell::new(IdSource::new(super::random_u64(self.context_id))),
        });
        true
    }

    fn on_tick(&mut self) {
        if let Some(m) = &self.worker.metrics {
            m.flush(&ProxyHost);
        }
        let Some(now_ms) = super::now_ms() else { return };
        if let Some(feed) = &mut self.feed {
            feed.tick(now_ms, &self.lease);
        }
        for poller in &mut self.jwks {
            poller.tick(now_ms, &self.lease);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RequestContext::new(self.worker.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
