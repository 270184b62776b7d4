//! RFC 8936 poll delivery: we POST `{"ack": [...], "setErrs": {...}, "maxEvents": n,
//! "returnImmediately": true}` to the transmitter and get `{"sets": {jti: SET}, "moreAvailable": b}`.
//! A SET is acknowledged in the next request only once it is stored (or was stored before), so a
//! crash or a database outage makes the transmitter deliver it again. A down or slow transmitter
//! costs a timeout and a growing pause (up to 30 s), never the service.

use crate::feed::config::Delivery;
use crate::feed::metrics::labels;
use crate::feed::receive::{receive, Received};
use crate::feed::server::App;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Largest poll response read.
pub const MAX_POLL_BYTES: usize = 4 << 20;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct PollResponse {
    #[serde(default)]
    sets: BTreeMap<String, String>,
    #[serde(default, rename = "moreAvailable")]
    more_available: bool,
}

pub async fn run(app: Arc<App>, id: String) {
    let Some(stream) = app.stream(&id) else { return };
    let Delivery::Poll { endpoint, bearer_token, interval_ms, max_events, timeout_ms } = &stream.delivery else {
        return;
    };
    let interval = Duration::from_millis(*interval_ms);
    let mut acks: Vec<String> = Vec::new();
    let mut errs: Map<String, Value> = Map::new();
    let mut failures: u32 = 0;
    loop {
        let body = json!({"ack": acks, "setErrs": errs, "maxEvents": max_events, "returnImmediately": true});
        let mut req = app.http.post(endpoint).timeout(Duration::from_millis(*timeout_ms)).json(&body);
        if let Some(t) = bearer_token {
            req = req.bearer_auth(t);
        }
        let answer = async {
            let resp = req.send().await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("status {}", resp.status()));
            }
            let bytes = crate::feed::keys::read_bounded(resp, MAX_POLL_BYTES).await?;
            serde_json::from_slice::<PollResponse>(&bytes).map_err(|e| format!("not a poll response: {e}"))
        }
        .await;
        let outcome = if answer.is_ok() { "ok" } else { "error" };
        app.metrics.polls.get_or_create(&labels(&[("stream", &id), ("outcome", outcome)])).inc();
        let resp = match answer {
            Ok(r) => {
                // The transmitter has our acks now.
                acks.clear();
                errs.clear();
                failures = 0;
                r
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = interval.saturating_mul(2u32.saturating_pow(failures.min(8))).min(MAX_BACKOFF);
                tracing::warn!(stream = %id, error = %e, pause_ms = pause.as_millis() as u64, "poll failed");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let mut stalled = false;
        for (jti, set) in resp.sets.iter().take(usize::try_from(*max_events).unwrap_or(usize::MAX)) {
            match receive(&app, stream, set, "poll").await {
                Received::Stored(j) | Received::Duplicate(j) if &j == jti => acks.push(j),
                Received::Stored(_) | Received::Duplicate(_) => {
                    // Stored under its own jti; the key it came under names another SET.
                    errs.insert(
                        jti.clone(),
                        json!({"err": "invalid_request", "description": "the key is not the SET's jti"}),
                    );
                }
                Received::Refused(e) => {
                    errs.insert(jti.clone(), json!({"err": e.code(), "description": e.description()}));
                }
                Received::Unavailable => {
                    // Not stored: not acknowledged; the transmitter delivers it again.
                    stalled = true;
                    break;
                }
            }
        }
        if stalled {
            tokio::time::sleep(interval.max(Duration::from_secs(1))).await;
        } else if !resp.more_available {
            tokio::time::sleep(interval).await;
        }
    }
}
