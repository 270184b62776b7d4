//! `Host` over proxy-wasm's host calls. Zero-sized: the request path pays nothing for the trait.
//! Every call's error is handled (the SDK's trait helpers would panic on them, killing the worker).

use crate::filter::host::{Host, Level, MetricKind};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType, MetricType};

#[derive(Clone, Copy, Default)]
pub struct ProxyHost;

impl Host for ProxyHost {
    fn request_headers(&self) -> Option<Vec<u8>> {
        super::headers::request_headers()
    }

    fn remove_request_header(&self, name: &str) -> bool {
        hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).is_ok()
    }

    fn add_request_header(&self, name: &str, value: &str) -> bool {
        hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value).is_ok()
    }

    fn set_request_header(&self, name: &str, value: &str) -> bool {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)).is_ok()
    }

    fn set_response_header(&self, name: &str, value: &str) -> bool {
        hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)).is_ok()
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten().filter(|v| !v.is_empty())
    }

    fn send_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool {
        hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body)).is_ok()
    }

    fn reset_request(&self) {
        let _ = hostcalls::reset_http_request();
    }

    fn set_filter_state(&self, key: &str, value: &[u8]) -> bool {
        hostcalls::set_property(vec![key], Some(value)).is_ok()
    }

    fn now_ms(&self) -> Option<i64> {
        super::now_ms()
    }

    fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
        hostcalls::get_shared_data(key).ok().and_then(|(d, _)| d)
    }

    fn set_shared_data(&self, key: &str, value: &[u8]) -> bool {
        hostcalls::set_shared_data(key, Some(value), None).is_ok()
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        hostcalls::define_metric(kind, name).ok()
    }

    fn increment(&self, metric: u32, by: u64) {
        let _ = hostcalls::increment_metric(metric, i64::try_from(by).unwrap_or(i64::MAX));
    }

    fn record(&self, metric: u32, value: u64) {
        let _ = hostcalls::record_metric(metric, value);
    }

    fn log(&self, level: Level, message: &str) {
        super::log(level, message);
    }
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> LogLevel {
        match level {
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Critical => LogLevel::Critical,
        }
    }
}
