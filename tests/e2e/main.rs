//! End-to-end: the built filter in the real Envoy, driven over real HTTP on loopback.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod audit;
mod consent;
mod explain;
mod fapi;
mod feed;
mod fleet;
mod harness;
mod interop;
mod jwks;
mod machine_authority;
mod report;
mod revocation;
mod sender;
mod startup;
mod trap;
