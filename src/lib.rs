//! nhi-guard: per-route machine authority, sender binding and customer consent for banking APIs, inline in Envoy.
//!
//! The core (every module but `host`) is plain Rust: facts in, `Decision` out. `host` is the only
//! code that talks to proxy-wasm, and exists only in the `wasm32-wasip1` filter build.
//!
//! Attacker-controlled numbers (token claims, host buffers, fetched documents) meet arithmetic,
//! indexing and casts here: each must be checked, saturating or explained, never a panic or a
//! silent wrap. Tests may do as they like.
#![deny(clippy::arithmetic_side_effects, clippy::indexing_slicing, clippy::cast_possible_truncation)]
#![cfg_attr(test, allow(clippy::arithmetic_side_effects, clippy::indexing_slicing, clippy::cast_possible_truncation))]

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

// Tools for people and tests, never on the request path: the core's arithmetic rules do not apply.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing, clippy::cast_possible_truncation)]
pub mod echo;
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing, clippy::cast_possible_truncation)]
pub mod envoy_config;
#[cfg(not(target_os = "wasi"))]
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing, clippy::cast_possible_truncation)]
pub mod mint;

#[cfg(target_os = "wasi")]
mod host;

#[cfg(test)]
mod testkit;

pub use decision::{Decision, Engine, RequestFacts};
pub use policy::{load as load_policy, Policy, PolicyError};
pub use reason::Reason;
