//! The filter shell: everything between Envoy and the engine. It gathers a request's facts, hands
//! them to the engine, applies the decision (headers, local reply), counts and logs
//! (`request`, `metrics`), and polls the policy's sources in the background.
//!
//! The request path is written against the small `host::Host` trait, so its unit tests run it
//! against a fake host natively and under wasm-bindgen-test. `proxy` (`wasm32-wasip1` only) is the
//! only code that calls proxy-wasm: the `Host` implementation, the root and HTTP contexts, and the
//! background pollers (feed, issuers' JWKS, their lease) and the shared DPoP replay cache.

pub mod host;
pub mod metrics;
pub mod request;

#[cfg(target_os = "wasi")]
mod proxy;
