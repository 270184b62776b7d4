//! nhi-guard: per-route machine authority, sender binding and customer consent for banking APIs, inline in Envoy.
//!
//! The core (every module but `host`) is plain Rust: facts in, `Decision` out. `host` is the only
//! code that talks to proxy-wasm, and exists only in the `wasm32-wasip1` filter build.

pub mod audit;
pub mod authority;
pub mod binding;
pub mod consent;
pub mod credentials;
pub mod decision;
pub mod delegation;
pub mod dpop;
pub mod governance;
pub mod header_map;
pub mod jwt;
pub mod policy;
pub mod reason;
pub mod replay;
pub mod revocation;
pub mod route;
pub mod shared_state;
pub mod timestamp;

#[cfg(not(target_arch = "wasm32"))]
pub mod echo;
#[cfg(not(target_arch = "wasm32"))]
pub mod envoy_config;
#[cfg(not(target_os = "wasi"))]
pub mod mint;

#[cfg(target_os = "wasi")]
mod host;

#[cfg(test)]
mod testkit;

pub use decision::{Decision, Engine, RequestFacts};
pub use policy::{load as load_policy, Policy, PolicyError};
pub use reason::Reason;
