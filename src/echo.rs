//! A small HTTP/1.1 upstream that answers every request with what it received, as JSON.
//!
//! The demo's upstream and the end-to-end tests' witness: it shows exactly which headers survived
//! the filter. Loopback only; one thread per connection; keep-alive supported.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::Sender;

/// One request as the upstream saw it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names lowercased; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
}

/// Serves forever on `listener`. Every request is also sent to `seen`, if given.
pub fn serve(listener: TcpListener, seen: Option<Sender<Received>>) {
    for stream in listener.incoming().flatten() {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let _ = handle(stream, seen);
        });
    }
}

fn handle(stream: TcpStream, seen: Option<Sender<Received>>) -> std::io::Result<()> {
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
