//! The engine: a compiled policy and a request's facts in, a `Decision` out. Pure: no host calls.
//!
//! The request's way through it, one concern per module: `route` (which rule), `credentials` (what
//! the request presents), `jwt` (the token: pre-checks, cache, signature), `authority` (client,
//! partner, scopes, lifetimes), `binding`, `dpop` and `dpop_nonce` (who presents it), `delegation` (actors),
//! `consent` (the customer's word), `revocation` (the live feed), then `decision` (the pipeline)
//! and `reason` (every denial's code and status). `audit` describes decisions for the logs;
//! `policy`, `keys` and `base64url` are what the rest is configured with and built on;
//! `shared_state` and `replay` are what workers share through the host.

pub mod audit;
pub mod authority;
pub mod base64url;
pub mod binding;
pub mod consent;
pub mod credentials;
pub mod decision;
pub mod delegation;
pub mod dpop;
pub mod dpop_nonce;
pub mod header_map;
pub mod jwt;
pub mod keys;
pub mod policy;
pub mod reason;
pub mod replay;
pub mod revocation;
pub mod route;
pub mod shared_state;
pub mod timestamp;

#[cfg(test)]
pub(crate) mod testkit;
#[cfg(all(test, target_arch = "wasm32"))]
mod v8_cost_tests;
