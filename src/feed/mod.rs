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

// Pure: values in, values out (and the fuzz crate's targets).
pub mod change;
pub mod mapping;
pub mod set;
pub mod subject;

// The service: I/O, behind the default `feed-service` feature.
#[cfg(feature = "feed-service")]
pub mod api;
#[cfg(feature = "feed-service")]
pub mod audit;
#[cfg(feature = "feed-service")]
pub mod config;
#[cfg(feature = "feed-service")]
pub mod document;
#[cfg(feature = "feed-service")]
pub mod keys;
#[cfg(feature = "feed-service")]
pub mod metrics;
#[cfg(feature = "feed-service")]
pub mod poll;
#[cfg(feature = "feed-service")]
pub mod push;
#[cfg(feature = "feed-service")]
pub mod receive;
#[cfg(feature = "feed-service")]
pub mod server;
#[cfg(feature = "feed-service")]
pub mod store;
#[cfg(feature = "feed-service")]
pub mod tls;

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
