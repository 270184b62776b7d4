//! The HTTP context: proxy-wasm's per-request callbacks, handed to `filter::request`.

use super::host::ProxyHost;
use crate::filter::request::{Exchange, SharedWorker, Verdict};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

pub struct RequestContext {
    worker: SharedWorker,
    exchange: Exchange,
}

impl RequestContext {
    pub fn new(worker: SharedWorker) -> Self {
        RequestContext { worker, exchange: Exchange::default() }
    }
}

impl Context for RequestContext {}

impl HttpContext for RequestContext {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.exchange.on_request_headers(&ProxyHost, &self.worker) {
            Verdict::Continue => Action::Continue,
            Verdict::Stop => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.exchange.on_response_headers(&ProxyHost);
        Action::Continue
    }
}
