//! Root contexts. The same module runs in two roles, told apart by the plugin's `root_id`:
//! `nhi_guard` (the HTTP filter, one per worker) and `nhi_guard_feed` (the revocation poller, a
//! singleton bootstrap service). Both load the same policy on configure and refuse a bad one.

use super::feed::FeedPoller;
use super::http::RequestContext;
use super::jwks::JwksPoller;
use super::log;
use super::metrics::Metrics;
use super::replay::SharedReplayCache;
use crate::jwt::native::{ForeignFunction, HostSignatureVerifier};
use crate::jwt::verifier::{PureRust, SignatureVerifier};
use crate::policy::{Policy, SignatureBackend};
use crate::Engine;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Where the policy comes from, as named in load errors.
const SOURCE: &str = "envoy.filters.http.wasm configuration (nhi-guard policy)";
/// The poller's root id in Envoy's config.
pub const FEED_ROOT_ID: &str = "nhi_guard_feed";

#[derive(Default)]
pub struct Root {
    engine: Option<Rc<RefCell<Engine>>>,
    metrics: Option<Rc<Metrics>>,
    feed: Option<FeedPoller>,
    jwks: Vec<JwksPoller>,
    next_feed_check: Rc<Cell<i64>>,
}

/// The poller's tick: each source keeps its own schedule on it (feed poll, JWKS refresh, refetch
/// requests), so this bounds how late any of them runs.
const POLLER_TICK_MS: u64 = 100;

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
    match crate::load_policy(json, SOURCE) {
        Ok(p) => Some(p),
        Err(e) => {
            log(LogLevel::Critical, &format!("{e}\nnhi-guard refuses to start with this policy"));
            None
        }
    }
}

fn root_id() -> String {
    match proxy_wasm::hostcalls::get_property(vec!["plugin_root_id"]) {
        Ok(Some(bytes)) => String::from_utf8(bytes).unwrap_or_default(),
        _ => String::new(),
    }
}

impl Context for Root {
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
        if root_id() == FEED_ROOT_ID {
            self.feed = FeedPoller::start(&policy);
            self.jwks = JwksPoller::start_all(&policy);
            if self.feed.is_some() || !self.jwks.is_empty() {
                let _ = proxy_wasm::hostcalls::set_tick_period(std::time::Duration::from_millis(POLLER_TICK_MS));
            }
            return true;
        }
        let metrics = Rc::new(Metrics::define(&policy));
        let native = HostSignatureVerifier::new(EnvoyForeignFunction);
        let verifier: Box<dyn SignatureVerifier> = match policy.signature_backend {
            SignatureBackend::Auto if native.probe() => Box::new(native),
            _ => Box::new(PureRust),
        };
        metrics.set_backend_native(verifier.name() == "envoy-native");
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
            engine.set_replay_guard(Box::new(SharedReplayCache::new(dpop.replay_cache_buckets)));
        }
        self.engine = Some(Rc::new(RefCell::new(engine)));
        self.metrics = Some(metrics);
        true
    }

    fn on_tick(&mut self) {
        let Some(now_ms) = super::now_ms() else { return };
        if let Some(feed) = &mut self.feed {
            feed.tick(now_ms);
        }
        for poller in &mut self.jwks {
            poller.tick(now_ms);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RequestContext::new(self.engine.clone(), self.metrics.clone(), self.next_feed_check.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
