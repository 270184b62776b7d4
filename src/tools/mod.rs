//! Tools for people and tests, outside Envoy: the CLI's governance reports, token and consent
//! minting, `explain` (a request decided offline), Envoy config rendering and the echo upstream. They use the engine; the filter never
//! uses them, and none of this is in the filter's module.

pub mod explain;
pub mod governance;
pub mod mint;
pub mod report;
pub mod schema;
pub mod synthetic;

#[cfg(not(target_arch = "wasm32"))]
pub mod echo;
#[cfg(not(target_arch = "wasm32"))]
pub mod envoy_config;
