//! `nhi-guard feed`: the service that produces the revocation feed the filter polls.
//!
//! Two kinds of writers feed one store, and every replica serves the same document from it:
//! - identity providers, by OpenID Shared Signals (SETs pushed per RFC 8935 or polled per RFC 8936),
//!   validated in [`set`], their subjects read in [`subject`] and mapped onto feed entries in [`mapping`];
//! - the bank's own systems, through the offboarding and consent API ([`api`]).
//!
//! Both become [`change::Change`]s, which [`store`] applies in one transaction with their audit
//! event; the document's version only grows, because it lives in the database. [`document`] renders
//! the filter's feed format and keeps serving the last one (with its age) while the database is
//! away, up to a bound. Native only: none of this is in the filter's module.
//!
//! Pure parts (config, set, subject, mapping, change) take values and return values; the server
//! ([`server`], [`push`], [`poll`], [`keys`]) does the I/O.

pub mod api;
pub mod audit;
pub mod change;
pub mod config;
pub mod document;
pub mod keys;
pub mod mapping;
pub mod metrics;
pub mod poll;
pub mod push;
pub mod receive;
pub mod server;
pub mod set;
pub mod store;
pub mod subject;
pub mod tls;

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
