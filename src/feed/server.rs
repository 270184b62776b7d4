//! The service: state, routes, background tasks, start and stop.
//!
//! Routes: `GET {feed.path}` (the document, ETag/If-None-Match, `Age`), `POST /ssf/push/{stream}`
//! (RFC 8935), `POST /v1/...` (the API), `GET /healthz`, `GET /readyz`, `GET /metrics`.
//! Tasks: the document refresher (every `recheck_ms`), the pruner (every minute), the retired-key
//! watcher (per issuer JWKS) and one poller per poll stream.

use crate::feed::audit::AuditFiles;
use crate::feed::config::{Delivery, FeedConfig, Stream};
use crate::feed::document::{render, Published};
use crate::feed::keys::StreamKeys;
use crate::feed::metrics::{labels, Metrics};
use crate::feed::store::{Retention, Store};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Everything a request handler or task needs.
pub struct App {
    pub config: FeedConfig,
    pub store: Store,
    pub metrics: Metrics,
    pub audit: AuditFiles,
    pub http: reqwest::Client,
    pub stream_keys: HashMap<String, StreamKeys>,
    pub feed: FeedCache,
    pub retention: Retention,
}

/// This replica's copy of the document and what it knows of the database.
#[derive(Default)]
pub struct FeedCache {
    current: RwLock<Option<Arc<Published>>>,
    /// Unix ms of the last successful and of the last attempted database check, and of the last rebuild.
    last_ok_ms: AtomicI64,
    last_check_ms: AtomicI64,
    last_build_ms: AtomicI64,
    /// The version the database last reported.
    latest_version: AtomicI64,
    refresh: tokio::sync::Mutex<()>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl App {
    pub async fn new(config: FeedConfig) -> Result<Arc<App>, String> {
        let store = Store::open(&config.database_url, config.max_connections, config.limits.max_document_entries)
            .await
            .map_err(|e| format!("database: cannot open: {e}"))?;
        let audit = AuditFiles::new(&config.audit_dir)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .user_agent(concat!("nhi-guard-feed/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        let stream_keys = config
            .streams
            .iter()
            .map(|s| (s.id.clone(), StreamKeys::new(s.keys.clone(), s.jwks_url.clone())))
            .collect();
        let retention = Retention {
            token_seconds: config.token_retention_seconds,
            consent_skew_seconds: 300,
            set_jti_seconds: config.set_jti_seconds,
        };
        let app = Arc::new(App {
            config,
            store,
            metrics: Metrics::new(),
            audit,
            http,
            stream_keys,
            feed: FeedCache::default(),
            retention,
        });
        app.refresh(true, true).await.map_err(|e| format!("database: first read failed: {e}"))?;
        Ok(app)
    }

    pub fn stream(&self, id: &str) -> Option<&Stream> {
        self.config.streams.iter().find(|s| s.id == id)
    }

    /// Asks the database for its version (at most every `recheck_ms`, unless `force`), and with
    /// `rebuild` renders the document again when the version moved (at most every `recheck_ms`).
    /// Only fetches rebuild: a burst of writes with nobody fetching costs no document rendering,
    /// and with fetchers the rendering rate is bounded whatever the write rate.
    pub async fn refresh(&self, force: bool, rebuild: bool) -> Result<(), String> {
        // One refresh at a time. A fetch (rebuild) waits for the one running, within its budget, so
        // it serves what that one found; the background check skips when one is running.
        let _one = if force || rebuild {
            self.feed.refresh.lock().await
        } else {
            match self.feed.refresh.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(()),
            }
        };
        let now = now_ms();
        let recheck = i64::try_from(self.config.feed.recheck_ms).unwrap_or(100);
        if force || now.saturating_sub(self.feed.last_check_ms.load(Ordering::Acquire)) >= recheck {
            self.feed.last_check_ms.store(now, Ordering::Release);
            match self.store.version().await {
                Ok(v) => {
                    self.feed.latest_version.store(v, Ordering::Release);
                    self.database_answered(now);
                }
                Err(e) => {
                    self.database_failed(&e.0);
                    return Err(e.0);
                }
            }
        }
        let behind = self.current().map(|p| p.version) != Some(self.feed.latest_version.load(Ordering::Acquire));
        let due = force || now.saturating_sub(self.feed.last_build_ms.load(Ordering::Acquire)) >= recheck;
        if rebuild && behind && due {
            self.feed.last_build_ms.store(now, Ordering::Release);
            match self.store.snapshot().await {
                Ok(snapshot) => self.publish(render(&snapshot)),
                Err(e) => {
                    self.database_failed(&e.0);
                    return Err(e.0);
                }
            }
        }
        Ok(())
    }

    fn publish(&self, published: Published) {
        self.metrics.feed_version.set(published.version);
        self.metrics.feed_document_bytes.set(i64::try_from(published.body.len()).unwrap_or(i64::MAX));
        for (kind, n) in &published.counts {
            self.metrics.feed_entries.get_or_create(&labels(&[("kind", kind)])).set(i64::try_from(*n).unwrap_or(0));
        }
        if let Ok(mut slot) = self.feed.current.write() {
            *slot = Some(Arc::new(published));
        }
    }

    fn database_answered(&self, now: i64) {
        self.feed.last_ok_ms.store(now, Ordering::Release);
        self.metrics.database_up.set(1);
        self.metrics.feed_document_age_seconds.set(0);
    }

    /// After a local write: the next fetch asks the database again and renders the new version.
    pub fn invalidate(&self) {
        self.feed.last_check_ms.store(0, Ordering::Release);
        self.feed.last_build_ms.store(0, Ordering::Release);
    }

    pub fn database_failed(&self, error: &str) {
        if self.metrics.database_up.get() != 0 {
            tracing::error!(error = %error, "database unavailable: writes refused with 503, the last document served");
        }
        self.metrics.database_up.set(0);
        let age = now_ms().saturating_sub(self.feed.last_ok_ms.load(Ordering::Acquire)) / 1000;
        self.metrics.feed_document_age_seconds.set(age);
    }

    pub fn current(&self) -> Option<Arc<Published>> {
        self.feed.current.read().ok().and_then(|c| c.clone())
    }

    /// Seconds since the document was last confirmed against the database.
    pub fn document_age(&self) -> i64 {
        now_ms().saturating_sub(self.feed.last_ok_ms.load(Ordering::Acquire)).max(0) / 1000
    }
}

/// A JSON response.
pub fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// How long a fetch waits for its own database check before serving what it has: the Envoys'
/// fetch timeout (2 s by default) must never be spent waiting for a database that is away.
const FETCH_CHECK_BUDGET: Duration = Duration::from_millis(250);

async fn feed_document(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let _ = tokio::time::timeout(FETCH_CHECK_BUDGET, app.refresh(false, true)).await;
    let age = app.document_age();
    let down = app.metrics.database_up.get() == 0;
    let status = |code: &str| app.metrics.feed_requests.get_or_create(&labels(&[("status", code)])).inc();
    let Some(doc) = app.current() else {
        status("503");
        return json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"error": "no feed document yet"}));
    };
    if down && age > app.config.feed.serve_stale_max_seconds {
        // Past the bound: stop answering, so every Envoy's max_staleness_seconds fails closed.
        status("503");
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "database unavailable", "document_age_seconds": age}),
        );
    }
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&doc.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::AGE, HeaderValue::from(age));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-nhi-feed-database", HeaderValue::from_static(if down { "unavailable" } else { "up" }));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == doc.etag));
    if matches {
        status("304");
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    status("200");
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    (StatusCode::OK, h, doc.body.clone()).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let _ = tokio::time::timeout(FETCH_CHECK_BUDGET, app.refresh(false, false)).await;
    if app.metrics.database_up.get() == 1 && app.current().is_some() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    app.metrics.feed_document_age_seconds.set(app.document_age());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render()).into_response()
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(&app.config.feed.path, get(feed_document))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/ssf/push/{stream}", post(crate::feed::push::push))
        .route("/v1/{kind}/{id}/{verb}", post(crate::feed::api::entity_action))
        .route("/v1/tokens/revoke", post(crate::feed::api::revoke_token))
        .route("/v1/keys/retire", post(crate::feed::api::retire_key))
        .with_state(app)
}

/// Starts the background tasks.
pub fn spawn_tasks(app: &Arc<App>) {
    let a = app.clone();
    tokio::spawn(async move {
        let every = Duration::from_millis(a.config.feed.recheck_ms);
        loop {
            tokio::time::sleep(every).await;
            let _ = a.refresh(false, false).await;
        }
    });
    let a = app.clone();
    tokio::spawn(async move {
        loop {
            match a.store.prune(crate::feed::unix_now(), a.retention).await {
                Ok(n) if n > 0 => tracing::info!(entries = n, "pruned entries that can no longer matter"),
                Ok(_) => {}
                Err(e) => a.database_failed(&e.0),
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });
    for i in 0..app.config.issuer_jwks.len() {
        let a = app.clone();
        tokio::spawn(async move { crate::feed::keys::watch_retired(&a, i).await });
    }
    for s in &app.config.streams {
        if let Delivery::Poll { .. } = s.delivery {
            let (a, id) = (app.clone(), s.id.clone());
            tokio::spawn(async move { crate::feed::poll::run(a, id).await });
        }
    }
}

/// Runs the service until SIGTERM or Ctrl-C.
pub async fn serve(config: FeedConfig) -> Result<(), String> {
    let listen = config.listen.clone();
    let app = App::new(config).await?;
    let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| format!("listen {listen}: {e}"))?;
    spawn_tasks(&app);
    tracing::info!(listen = %listen, backend = app.store.backend.name(), version = app.current().map(|p| p.version), "feed service ready");
    let shutdown = async {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term => {} }
        tracing::info!("stopping");
    };
    match &app.config.tls {
        Some(material) => {
            let config = crate::feed::tls::server_config(material)?;
            crate::feed::tls::serve(listener, config, router(app.clone()), shutdown).await;
        }
        None => axum::serve(listener, router(app.clone()))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| e.to_string())?,
    }
    app.store.close().await;
    Ok(())
}
