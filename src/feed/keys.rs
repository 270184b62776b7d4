//! Transmitters' keys: inline in the config, or fetched from the transmitter's `jwks_uri` and
//! refetched when a SET names a `kid` we do not hold (at most every 10 s; every second while the
//! fetch fails) or every 5 minutes. While the JWKS cannot be fetched, a SET under an unknown key is
//! answered "try again" rather than refused: a refusal would make the transmitter drop it.
//! Issuers' JWKS are also fetched to see when a retired key has left them.

use crate::engine::keys::{JwkSet, VerificationKey};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Largest JWKS accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
const REFRESH: Duration = Duration::from_secs(300);
const UNKNOWN_KID_MIN_INTERVAL: Duration = Duration::from_secs(10);

pub struct StreamKeys {
    inline: Arc<Vec<VerificationKey>>,
    url: Option<String>,
    fetched: Mutex<Fetched>,
}

struct Fetched {
    keys: Arc<Vec<VerificationKey>>,
    at: Option<Instant>,
    tried: Option<Instant>,
    /// Whether the last fetch failed (the keys we hold may be missing one).
    failing: bool,
}

/// After a failed fetch, the next one may come this soon.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The transmitter's JWKS could not be fetched and the SET names a key we do not hold: whether it
/// is genuine cannot be told now, so it is neither accepted nor refused (503: the transmitter retries).
#[derive(Debug)]
pub struct KeysUnavailable;

impl StreamKeys {
    pub fn new(inline: Vec<VerificationKey>, url: Option<String>) -> StreamKeys {
        StreamKeys {
            inline: Arc::new(inline),
            url,
            fetched: Mutex::new(Fetched { keys: Arc::new(Vec::new()), at: None, tried: None, failing: false }),
        }
    }

    /// The keys to check a SET naming `kid` against.
    pub async fn keys(
        &self,
        http: &reqwest::Client,
        kid: Option<&str>,
    ) -> Result<Arc<Vec<VerificationKey>>, KeysUnavailable> {
        let Some(url) = &self.url else { return Ok(self.inline.clone()) };
        let mut f = self.fetched.lock().await;
        let known = |f: &Fetched| kid.is_some_and(|k| f.keys.iter().any(|key| key.kid == k));
        let old = f.at.is_none_or(|t| t.elapsed() > REFRESH);
        let pause = if f.failing { RETRY_AFTER_FAILURE } else { UNKNOWN_KID_MIN_INTERVAL };
        let may_try = f.tried.is_none_or(|t| t.elapsed() > pause);
        if (old || !known(&f)) && may_try {
            f.tried = Some(Instant::now());
            match fetch_jwks(http, url).await {
                Ok(set) => {
                    let keys: Vec<VerificationKey> = set.keys.iter().filter_map(|k| k.to_key().ok()).collect();
                    f.keys = Arc::new(keys);
                    f.at = Some(Instant::now());
                    f.failing = false;
                }
                Err(e) => {
                    tracing::warn!(url = %url, error = %e, "transmitter JWKS fetch failed");
                    f.failing = true;
                }
            }
        }
        if f.failing && !known(&f) {
            return Err(KeysUnavailable);
        }
        Ok(f.keys.clone())
    }
}

/// GETs a JWKS (bounded size, 5 s timeout).
pub async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<JwkSet, String> {
    let body = get_bounded(http, url, MAX_JWKS_BYTES).await?;
    serde_json::from_slice(&body).map_err(|e| format!("{url}: not a JWKS: {e}"))
}

/// GETs a body of at most `limit` bytes.
pub async fn get_bounded(http: &reqwest::Client, url: &str, limit: usize) -> Result<Vec<u8>, String> {
    let resp = http.get(url).timeout(Duration::from_secs(5)).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: status {}", resp.status()));
    }
    read_bounded(resp, limit).await.map_err(|e| format!("{url}: {e}"))
}

/// Reads a response body, refusing it past `limit` bytes.
pub async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(format!("body over {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Watches one issuer's JWKS (`retention.issuer_jwks[i]`): a retired key that has left it leaves the
/// feed `key_grace_seconds` later (the Envoys' own JWKS copies may still hold it until then).
pub async fn watch_retired(app: &crate::feed::server::App, i: usize) {
    let Some(watch) = app.config.issuer_jwks.get(i) else { return };
    loop {
        match fetch_jwks(&app.http, &watch.jwks_url).await {
            Ok(set) => {
                let present: std::collections::HashSet<&str> =
                    set.keys.iter().filter_map(|k| k.kid.as_deref()).collect();
                match app.store.open_keys(&watch.iss).await {
                    Ok(kids) => {
                        let until = crate::feed::unix_now().saturating_add(app.config.key_grace_seconds);
                        for kid in kids.iter().filter(|k| !present.contains(k.as_str())) {
                            if let Err(e) = app.store.end_key(&watch.iss, kid, until).await {
                                app.database_failed(&e.0);
                            } else {
                                tracing::info!(iss = %watch.iss, kid = %kid, until, "retired key left its issuer's JWKS");
                            }
                        }
                    }
                    Err(e) => app.database_failed(&e.0),
                }
            }
            Err(e) => tracing::warn!(url = %watch.jwks_url, error = %e, "issuer JWKS fetch failed"),
        }
        tokio::time::sleep(Duration::from_secs(watch.check_interval_seconds)).await;
    }
}
