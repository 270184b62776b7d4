//! nhi-guard: per-route machine authority, sender binding and customer consent for banking APIs, inline in Envoy.
//!
//! Four parts, one direction (README "Design notes"; `tests/module_graph.rs` keeps it so):
//! - [`engine`]: the core. The policy, the request's facts, every check and the `Decision`. Plain
//!   Rust, no host calls: it runs natively, under wasm-bindgen-test and in the filter alike.
//! - `filter`: the shell around the engine inside Envoy: gathers facts, applies decisions, counts,
//!   logs, polls the policy's sources. The only code that touches proxy-wasm (`filter::proxy`,
//!   `wasm32-wasip1` only); its request logic runs against a fake host in unit tests.
//! - [`tools`]: what people and tests use outside Envoy (CLI subcommands' logic, token minting,
//!   Envoy config rendering, the echo upstream, governance). Never in the filter's module.
//! - [`feed`]: `nhi-guard feed`, the service producing the revocation feed from Shared Signals and
//!   the bank's offboarding API (async, SQLite/PostgreSQL). Native only, never in the filter's module.
//!
//! The engine depends on none of the others; the filter, the tools and the feed never on each other.
//!
//! Attacker-controlled numbers (token claims, host buffers, fetched documents) meet arithmetic,
//! indexing and casts in the engine and the filter: each must be checked, saturating or explained,
//! never a panic or a silent wrap. Tools and tests may do as they like.
#![deny(clippy::arithmetic_side_effects, clippy::indexing_slicing, clippy::cast_possible_truncation)]
#![cfg_attr(test, allow(clippy::arithmetic_side_effects, clippy::indexing_slicing, clippy::cast_possible_truncation))]

pub mod engine;

pub mod filter;

#[cfg(not(target_os = "wasi"))]
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing, clippy::cast_possible_truncation)]
pub mod tools;

/// `nhi-guard feed`, the revocation feed service: a native service beside the filter, never in it.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing, clippy::cast_possible_truncation)]
pub mod feed;

pub use engine::credentials::RequestFacts;
pub use engine::decision::{Decision, Engine};
pub use engine::policy::{load as load_policy, Policy, PolicyError};
pub use engine::reason::Reason;
