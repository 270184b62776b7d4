//! One background GET through an Envoy cluster, as the polled sources (revocation feed, issuers'
//! JWKS) need it: at most one call in flight, `If-None-Match` with the last ETag, a body over the
//! source's size limit refused on the size the host reports (before it is copied into the VM),
//! and the reply read back from the host without panicking on odd bytes.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::time::Duration;

pub struct Fetch {
    cluster: String,
    path: String,
    authority: String,
    timeout_ms: u64,
    max_bytes: usize,
    etag: Option<String>,
    in_flight: Option<u32>,
    /// When the last call was dispatched, in Unix ms.
    pub last_started_ms: Option<i64>,
}

/// What came back.
pub enum Reply {
    /// 200 with this body and ETag.
    Body(Vec<u8>, Option<String>),
    /// 304: what we hold is current.
    NotModified,
    /// 200 with a body larger than the source allows (not read).
    TooLarge(usize),
    /// Anything else (timeouts and resets arrive without a status).
    Failed(String),
}

impl Fetch {
    pub fn new(cluster: &str, path: &str, authority: &str, timeout_ms: u64, max_bytes: usize) -> Fetch {
        Fetch {
            max_bytes,
            cluster: cluster.to_string(),
            path: path.to_string(),
            authority: authority.to_string(),
            timeout_ms,
            etag: None,
            in_flight: None,
            last_started_ms: None,
        }
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    pub fn describe(&self) -> String {
        format!("cluster {} path {}", self.cluster, self.path)
    }

    /// Dispatches the GET. An error (an unknown cluster, say) is returned for the caller to count.
    pub fn start(&mut self, now_ms: i64) -> Result<(), String> {
        let mut headers =
            vec![(":method", "GET"), (":path", self.path.as_str()), (":authority", self.authority.as_str())];
        if let Some(tag) = &self.etag {
            headers.push(("if-none-match", tag.as_str()));
        }
        self.last_started_ms = Some(now_ms);
        let timeout = Duration::from_millis(self.timeout_ms);
        match hostcalls::dispatch_http_call(&self.cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                self.in_flight = Some(token);
                Ok(())
            }
            Err(e) => Err(format!("cannot call cluster {}: {e:?}", self.cluster)),
        }
    }

    /// The reply to our call `token`, or `None` when the call is not ours.
    pub fn reply(&mut self, token: u32, body_size: usize) -> Option<Reply> {
        if self.in_flight != Some(token) {
            return None;
        }
        self.in_flight = None;
        let headers = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default();
        let header = |name: &str| {
            headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| std::str::from_utf8(v).ok().map(String::from))
        };
        // The larger of what the host buffered and what the server declared.
        let declared = header("content-length").and_then(|l| l.parse::<usize>().ok()).unwrap_or(0);
        let size = declared.max(body_size);
        Some(match header(":status").as_deref() {
            Some("304") => Reply::NotModified,
            Some("200") if size > self.max_bytes => Reply::TooLarge(size),
            Some("200") => {
                let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                Reply::Body(body, header("etag"))
            }
            other => Reply::Failed(format!("status {}", other.unwrap_or("none (timeout or reset)"))),
        })
    }

    /// Remembers the ETag of a body the caller accepted (a refused body must be fetched again).
    pub fn accept_etag(&mut self, etag: Option<String>) {
        self.etag = etag;
    }
}
