//! What the filter needs from its host, and nothing more: read and write headers, read connection
//! properties and the clock, answer locally, keep shared data, count, log and write filter state.
//! `proxy::ProxyHost` implements it with proxy-wasm calls (a zero-sized type, so the request path
//! pays nothing for the trait); the unit tests implement it with a fake that records every call.
//!
//! Every method reports failure instead of panicking: the callers fail closed.

/// Log levels the filter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Critical,
}

/// Metric kinds the filter defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

pub trait Host {
    /// The request's headers, serialized as `engine::header_map` reads them (one host call).
    fn request_headers(&self) -> Option<Vec<u8>>;
    fn remove_request_header(&self, name: &str) -> bool;
    /// Adds a value (without removing existing ones: callers remove spoofed copies first).
    fn add_request_header(&self, name: &str, value: &str) -> bool;
    fn set_request_header(&self, name: &str, value: &str) -> bool;
    fn set_response_header(&self, name: &str, value: &str) -> bool;
    /// A connection or request property (`["connection", "uri_san_peer_certificate"]`); `None`
    /// when absent, empty, or on a host error.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Answers the request locally; false if the host refused.
    fn send_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool;
    /// Resets the request (when even a local reply failed: it must not continue).
    fn reset_request(&self);
    /// Writes filter state that Envoy's access logs can read (the audit streams).
    fn set_filter_state(&self, key: &str, value: &[u8]) -> bool;
    /// Unix milliseconds, `None` if the host cannot tell.
    fn now_ms(&self) -> Option<i64>;
    fn shared_data(&self, key: &str) -> Option<Vec<u8>>;
    fn set_shared_data(&self, key: &str, value: &[u8]) -> bool;
    /// Defines a metric (idempotent per name); `None` if the host refuses.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32>;
    /// Adds `by` to a counter.
    fn increment(&self, metric: u32, by: u64);
    fn record(&self, metric: u32, value: u64);
    fn log(&self, level: Level, message: &str);
}
