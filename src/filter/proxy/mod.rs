//! The proxy-wasm glue: the only code that talks to the host (wasm32-wasip1 builds only). The
//! `Host` implementation, the root and HTTP contexts, the background pollers and the shared DPoP
//! replay cache. Every host call's error is handled; none may panic a worker.

mod feed;
mod fetch;
mod headers;
mod host;
mod http;
mod jwks;
mod lease;
mod replay;
mod root;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // A panic aborts the VM (Envoy then refuses or reloads, per failure_policy); say why first, in
    // Envoy's own log, where an operator looks.
    std::panic::set_hook(Box::new(|info| log(LogLevel::Critical, &format!("nhi-guard panicked, this VM stops: {info}"))));
    proxy_wasm::set_root_context(|id| -> Box<dyn proxy_wasm::traits::RootContext> { Box::new(root::Root::new(id)) });
}}

/// Logs through the host; a failed log call has nowhere else to go, so it is dropped.
fn log(level: impl Into<LogLevel>, message: &str) {
    let _ = proxy_wasm::hostcalls::log(level.into(), message);
}

/// Envoy's clock, in Unix seconds. `None` if the host cannot tell (the caller fails closed).
fn now() -> Option<i64> {
    now_ms().map(|ms| ms / 1000)
}

/// Envoy's clock, in Unix milliseconds.
fn now_ms() -> Option<i64> {
    let t = proxy_wasm::hostcalls::get_current_time().ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// 64 random bits from the VM's random source (WASI `random_get`, through std's hasher keys), mixed
/// with the clock and a context id so that even a host with a weak source gives each context its own.
fn random_u64(context_id: u32) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(context_id);
    h.write_i64(now_ms().unwrap_or(0));
    h.finish()
}
