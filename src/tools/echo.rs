//! A small HTTP/1.1 upstream that answers every request with what it received, as JSON, and can
//! also serve documents the filter's poller fetches: the revocation feed, an issuer's JWKS.
//!
//! The demo's upstream and the end-to-end tests' witness: it shows exactly which headers survived
//! the filter. Loopback only; one thread per connection; keep-alive supported.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

/// A document the server answers `path` with: a file re-read per request (the demo), or one tests
/// change at will. Answers 304 to a matching `If-None-Match`; counts the requests for it.
#[derive(Clone)]
pub struct Document {
    pub path: String,
    pub source: DocumentSource,
    pub fetches: Arc<AtomicUsize>,
    /// Answer this late (tests play a slow host).
    pub delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Clone)]
pub enum DocumentSource {
    File(PathBuf),
    /// (status, body): tests set 200 with a document, 503 or a redirect to play an outage, or
    /// status 0 to close the connection unanswered (the host is down).
    Shared(Arc<Mutex<(u16, Vec<u8>)>>),
}

impl Document {
    pub fn new(path: &str, source: DocumentSource) -> Document {
        Document { path: path.to_string(), source, fetches: Arc::new(AtomicUsize::new(0)), delay_ms: Arc::default() }
    }

    fn answer(&self, if_none_match: Option<&str>) -> (u16, Vec<u8>, String) {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let (status, body) = match &self.source {
            DocumentSource::File(p) => match std::fs::read(p) {
                Ok(b) => (200, b),
                Err(_) => (503, Vec::new()),
            },
            DocumentSource::Shared(state) => match state.lock() {
                Ok(s) => s.clone(),
                Err(_) => (503, Vec::new()),
            },
        };
        let etag = format!("\"{:016x}\"", crate::engine::jwt::jwks::fingerprint(&body));
        if status == 200 && if_none_match == Some(etag.as_str()) {
            return (304, Vec::new(), etag);
        }
        (status, body, etag)
    }
}

/// One request as the upstream saw it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names lowercased; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
}

/// Serves forever on `listener`. Every request is also sent to `seen`, if given; the paths of
/// `documents` are answered with those documents instead of an echo.
pub fn serve(listener: TcpListener, seen: Option<Sender<Received>>, documents: Vec<Document>) {
    let documents = Arc::new(documents);
    for stream in listener.incoming().flatten() {
        let (seen, documents) = (seen.clone(), documents.clone());
        std::thread::spawn(move || {
            let _ = handle(stream, seen, &documents);
        });
    }
}

fn handle(stream: TcpStream, seen: Option<Sender<Received>>, documents: &[Document]) -> std::io::Result<()> {
    // Answers go out in several writes: without this, Nagle's algorithm and delayed ACKs hold each
    // keep-alive answer for ~40 ms.
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut raw = Vec::new();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return Ok(());
        }
        // Header values may be obs-text (not UTF-8): show them lossily rather than drop the request.
        let line = String::from_utf8_lossy(&raw).to_string();
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        let mut length = 0usize;
        loop {
            let mut raw = Vec::new();
            if reader.read_until(b'\n', &mut raw)? == 0 {
                return Ok(());
            }
            let h = String::from_utf8_lossy(&raw);
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                }
                headers
                    .entry(k)
                    .and_modify(|e| {
                        e.push_str(", ");
                        e.push_str(&v);
                    })
                    .or_insert(v);
            }
        }
        let mut body = vec![0; length.min(1 << 20)];
        reader.read_exact(&mut body)?;
        if let Some(d) = documents.iter().find(|d| d.path == path) {
            let (status, body, etag) = d.answer(headers.get("if-none-match").map(String::as_str));
            if status == 0 {
                return Ok(());
            }
            let delay = d.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                std::thread::sleep(std::time::Duration::from_millis(delay));
            }
            let location = if (300..400).contains(&status) { "location: /moved\r\n" } else { "" };
            write!(out, "HTTP/1.1 {status} Document\r\ncontent-type: application/json\r\n{location}etag: {etag}\r\ncontent-length: {}\r\n\r\n", body.len())?;
            out.write_all(&body)?;
            out.flush()?;
            continue;
        }
        let received = Received { method, path, headers };
        let json = serde_json::to_string(&received).unwrap_or_default();
        if let Some(tx) = &seen {
            let _ = tx.send(received);
        }
        write!(
            out,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            json.len(),
            json
        )?;
        out.flush()?;
    }
}
