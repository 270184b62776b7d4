//! Root context: loads the policy on configure and hands each request an HTTP context.

use super::http::RequestContext;
use super::log;
use super::metrics::Metrics;
use crate::jwt::native::{ForeignFunction, HostSignatureVerifier};
use crate::jwt::verifier::{PureRust, SignatureVerifier};
use crate::policy::SignatureBackend;
use crate::Engine;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;

/// Where the policy comes from, as named in load errors.
const SOURCE: &str = "envoy.filters.http.wasm configuration (nhi-guard policy)";

#[derive(Default)]
pub struct Root {
    engine: Option<Rc<RefCell<Engine>>>,
    metrics: Option<Rc<Metrics>>,
}

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

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = match proxy_wasm::hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        ) {
            Ok(Some(bytes)) => bytes,
            _ => {
                log(LogLevel::Critical, &format!("{SOURCE}: empty; the filter needs a policy and will not start"));
                return false;
            }
        };
        let Ok(json) = std::str::from_utf8(&config) else {
            log(LogLevel::Critical, &format!("{SOURCE}: not UTF-8; the filter will not start"));
            return false;
        };
        let policy = match crate::load_policy(json, SOURCE) {
            Ok(p) => Rc::new(p),
            Err(e) => {
                log(LogLevel::Critical, &format!("{e}\nnhi-guard refuses to start with this policy"));
                return false;
            }
        };
        let metrics = Rc::new(Metrics::define());
        let native = HostSignatureVerifier::new(EnvoyForeignFunction);
        let verifier: Box<dyn SignatureVerifier> = match policy.signature_backend {
            SignatureBackend::Auto if native.probe() => Box::new(native),
            _ => Box::new(PureRust),
        };
        metrics.set_backend_native(verifier.name() == "envoy-native");
        log(
            LogLevel::Info,
            &format!(
                "nhi-guard: policy loaded ({} routes, {} clients, {} partners); signature backend {}",
                policy.routes.iter().count(),
                policy.clients.len(),
                policy.partners.len(),
                verifier.name()
            ),
        );
        self.engine = Some(Rc::new(RefCell::new(Engine::new(policy, verifier))));
        self.metrics = Some(metrics);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RequestContext::new(self.engine.clone(), self.metrics.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
