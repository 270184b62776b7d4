//! The durable state, in SQLite (one file, the default) or PostgreSQL (several replicas), through
//! one driver and one set of statements.
//!
//! One writer task per process commits whatever writes are waiting in one transaction (group
//! commit), which starts by locking the feed's single meta row, so replicas queue too and the
//! version is the database's, not a replica's: it only grows, across restarts and replicas. The
//! version moves only when an entry does, and every entry change moves it, so one version is one
//! document everywhere. A write is acknowledged only after its commit: nothing acknowledged is lost.

use crate::feed::change::{AuditStream, Change};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use std::time::Duration;

pub struct Store {
    pool: AnyPool,
    pub backend: Backend,
    writer: tokio::sync::mpsc::Sender<Job>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Any database failure: the caller answers 503 and acknowledges nothing.
#[derive(Debug)]
pub struct StoreError(pub String);

impl ChangeResult {
    pub fn name(self) -> &'static str {
        match self {
            ChangeResult::Changed => "changed",
            ChangeResult::Unchanged => "unchanged",
            ChangeResult::Conflict => "conflict",
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeResult {
    Changed,
    /// Already so (idempotent repeat).
    Unchanged,
    /// Refused: an offboarded partner cannot be suspended or reinstated.
    Conflict,
}

/// A SET being stored: its (stream, jti) is the replay key.
pub struct ReceivedSet<'a> {
    pub stream: &'a str,
    pub jti: &'a str,
    pub event: &'a str,
    /// `mapped` or `unmapped:<why>`.
    pub outcome: &'a str,
    pub detail: serde_json::Value,
}

/// One write: changes, who asked and why.
pub struct Write<'a> {
    pub changes: &'a [Change],
    pub who: &'a str,
    pub why: &'a str,
    pub received: Option<ReceivedSet<'a>>,
    pub now: i64,
}

/// One line of an audit stream.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub at: String,
    pub stream: AuditStream,
    pub who: String,
    pub action: String,
    pub target: String,
    pub reason: String,
    pub outcome: String,
    pub version: i64,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

#[derive(Debug)]
pub struct Outcome {
    pub version: i64,
    pub results: Vec<ChangeResult>,
    /// The SET was stored before (a replay or a retry): nothing done.
    pub duplicate: bool,
    pub audit: Vec<AuditEvent>,
}

/// The feed's entries at one version.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub version: i64,
    pub produced_at: i64,
    /// (kind, k1, k2, status), sorted.
    pub entries: Vec<(String, String, String, String)>,
}

/// Retention the store applies when it writes entries.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub token_seconds: i64,
    /// Added to a consent's own expiry.
    pub consent_skew_seconds: i64,
    pub set_jti_seconds: i64,
}

const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS nhi_feed_meta (id BIGINT PRIMARY KEY, version BIGINT NOT NULL, produced_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS nhi_feed_entries (kind TEXT NOT NULL, k1 TEXT NOT NULL, k2 TEXT NOT NULL, \
     status TEXT NOT NULL, expires_at BIGINT, PRIMARY KEY (kind, k1, k2))",
    "CREATE TABLE IF NOT EXISTS nhi_feed_sets (stream TEXT NOT NULL, jti TEXT NOT NULL, received_at BIGINT NOT NULL, \
     event TEXT NOT NULL, outcome TEXT NOT NULL, PRIMARY KEY (stream, jti))",
    "CREATE TABLE IF NOT EXISTS nhi_feed_audit (at BIGINT NOT NULL, stream TEXT NOT NULL, who TEXT NOT NULL, \
     action TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL, outcome TEXT NOT NULL, version BIGINT NOT NULL, \
     detail TEXT NOT NULL)",
];

impl Store {
    /// Connects (creating a SQLite file and its folder if needed) and creates the tables.
    /// `max_entries`: the most entries the document may hold (the filter refuses a document over
    /// 4 MiB, so a feed grown past it would make every Envoy stale).
    pub async fn open(url: &str, max_connections: u32, max_entries: i64) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let mut url = url.to_string();
        if backend == Backend::Sqlite {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or(path).to_string();
            if let Some(dir) = std::path::Path::new(&path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
            }
            if !url.contains('?') {
                url.push_str("?mode=rwc");
            }
        }
        let sqlite = backend == Backend::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            // A write while the database is away answers 503 within a second, not after a long wait.
            .acquire_timeout(Duration::from_secs(1))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL: readers never wait for the writer. FULL: a commit is on disk before we
                        // acknowledge it, also across a power cut. busy_timeout: writers queue.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let (writer_tx, jobs) = tokio::sync::mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(pool.clone(), jobs, max_entries));
        let store = Store { pool, backend, writer: writer_tx };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // Replicas starting together: one creates the tables, the others wait.
            tx.execute("SELECT pg_advisory_xact_lock(7470281)").await?;
        }
        for s in SCHEMA {
            tx.execute(s).await?;
        }
        sqlx::query(
            "INSERT INTO nhi_feed_meta (id, version, produced_at) VALUES (1, 1, $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(crate::feed::unix_now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The current version (cheap: replicas ask it every `recheck_ms`).
    pub async fn version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT version FROM nhi_feed_meta WHERE id = 1").fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Every entry at one version: read between two reads of the version, retried if it moved.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        for _ in 0..10 {
            let meta = sqlx::query("SELECT version, produced_at FROM nhi_feed_meta WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
            let (version, produced_at): (i64, i64) = (meta.try_get(0)?, meta.try_get(1)?);
            let rows = sqlx::query("SELECT kind, k1, k2, status FROM nhi_feed_entries ORDER BY kind, k1, k2")
                .fetch_all(&self.pool)
                .await?;
            if self.version().await? != version {
                continue;
            }
            let entries = rows
                .iter()
                .map(|r: &AnyRow| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            return Ok(Snapshot { version, produced_at, entries });
        }
        Err(StoreError("the feed moved on ten times while being read".into()))
    }

    /// Applies a write. Returns after the commit of the transaction that carried it.
    pub async fn apply(&self, w: Write<'_>, retention: Retention) -> Result<Outcome, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            changes: w.changes.to_vec(),
            who: w.who.to_string(),
            why: w.why.to_string(),
            received: w.received.map(|r| OwnedReceived {
                stream: r.stream.to_string(),
                jti: r.jti.to_string(),
                event: r.event.to_string(),
                outcome: r.outcome.to_string(),
                detail: r.detail,
            }),
            now: w.now,
            retention,
            reply,
        };
        self.writer.send(job).await.map_err(|_| StoreError("the writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError("the writer dropped the write".into()))?
    }

    /// Drops entries that can no longer matter and SET ids past the replay window; moves the
    /// version when the document changed. Safe on every replica at once.
    pub async fn prune(&self, now: i64, retention: Retention) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        tx.execute("UPDATE nhi_feed_meta SET version = version WHERE id = 1").await?;
        let gone = sqlx::query("DELETE FROM nhi_feed_entries WHERE expires_at IS NOT NULL AND expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone > 0 {
            sqlx::query("UPDATE nhi_feed_meta SET version = version + 1, produced_at = $1 WHERE id = 1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM nhi_feed_sets WHERE received_at < $1")
            .bind(now.saturating_sub(retention.set_jti_seconds))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone)
    }

    /// Retired keys of `iss` still listed without an end (kid list).
    pub async fn open_keys(&self, iss: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT k2 FROM nhi_feed_entries WHERE kind = 'key' AND k1 = $1 AND expires_at IS NULL")
            .bind(iss)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).collect())
    }

    /// A retired key left its issuer's JWKS: it leaves the feed at `until`.
    pub async fn end_key(&self, iss: &str, kid: &str, until: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE nhi_feed_entries SET expires_at = $1 WHERE kind = 'key' AND k1 = $2 AND k2 = $3 AND expires_at IS NULL")
            .bind(until)
            .bind(iss)
            .bind(kid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Writes queued for the writer task, owned.
struct Job {
    changes: Vec<Change>,
    who: String,
    why: String,
    received: Option<OwnedReceived>,
    now: i64,
    retention: Retention,
    reply: tokio::sync::oneshot::Sender<Result<Outcome, StoreError>>,
}

struct OwnedReceived {
    stream: String,
    jti: String,
    event: String,
    outcome: String,
    detail: serde_json::Value,
}

/// Most writes committed together.
const MAX_BATCH: usize = 256;

/// The one writer of this process: it takes every write waiting and commits them in one
/// transaction (group commit), then answers each. One commit, one fsync, for a burst of SETs; and
/// writers never spin on SQLite's busy handler.
async fn writer(pool: AnyPool, mut jobs: tokio::sync::mpsc::Receiver<Job>, max_entries: i64) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match commit_batch(&pool, &batch, max_entries).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(StoreError(e.0.clone())));
                }
            }
        }
    }
}

async fn commit_batch(pool: &AnyPool, batch: &[Job], max_entries: i64) -> Result<Vec<Outcome>, StoreError> {
    let mut tx = pool.begin().await?;
    // The lock every writer queues on, replicas included (the first statement writes, so SQLite
    // takes its write lock here and waits its busy_timeout rather than failing on a lock upgrade).
    tx.execute("UPDATE nhi_feed_meta SET version = version WHERE id = 1").await?;
    // Per write: its results, or None for a SET stored before.
    let mut staged: Vec<Option<Vec<ChangeResult>>> = Vec::with_capacity(batch.len());
    let mut latest = 0;
    for job in batch {
        if let Some(r) = &job.received {
            let done = sqlx::query(
                "INSERT INTO nhi_feed_sets (stream, jti, received_at, event, outcome) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (stream, jti) DO NOTHING",
            )
            .bind(&r.stream)
            .bind(&r.jti)
            .bind(job.now)
            .bind(&r.event)
            .bind(&r.outcome)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                staged.push(None);
                continue;
            }
        }
        let mut results = Vec::with_capacity(job.changes.len());
        for c in &job.changes {
            results.push(apply_one(&mut tx, c, job.now, job.retention).await?);
        }
        if results.contains(&ChangeResult::Changed) {
            latest = latest.max(job.now);
        }
        staged.push(Some(results));
    }
    if latest > 0 {
        let entries: i64 =
            sqlx::query("SELECT COUNT(*) FROM nhi_feed_entries").fetch_one(&mut *tx).await?.try_get(0)?;
        if entries > max_entries {
            tx.rollback().await?;
            tracing::error!(
                entries,
                max_entries,
                "the feed is full: writes refused until entries expire or the limit is raised"
            );
            return Err(StoreError(format!(
                "the feed would hold {entries} entries, over limits.max_document_entries ({max_entries})"
            )));
        }
        sqlx::query("UPDATE nhi_feed_meta SET version = version + 1, produced_at = $1 WHERE id = 1")
            .bind(latest)
            .execute(&mut *tx)
            .await?;
    }
    let version: i64 =
        sqlx::query("SELECT version FROM nhi_feed_meta WHERE id = 1").fetch_one(&mut *tx).await?.try_get(0)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for (job, results) in batch.iter().zip(staged) {
        let Some(results) = results else {
            outcomes.push(Outcome { version, results: Vec::new(), duplicate: true, audit: Vec::new() });
            continue;
        };
        let audit = audit_events(job, &results, version);
        for a in &audit {
            sqlx::query(
                "INSERT INTO nhi_feed_audit (at, stream, who, action, target, reason, outcome, version, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(job.now)
            .bind(a.stream.name())
            .bind(&a.who)
            .bind(&a.action)
            .bind(&a.target)
            .bind(&a.reason)
            .bind(&a.outcome)
            .bind(version)
            .bind(a.detail.to_string())
            .execute(&mut *tx)
            .await?;
        }
        outcomes.push(Outcome { version, results, duplicate: false, audit });
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// One audit event per change, and one for the SET that carried them.
fn audit_events(job: &Job, results: &[ChangeResult], version: i64) -> Vec<AuditEvent> {
    let at = crate::engine::timestamp::format_rfc3339(job.now);
    let detail = job.received.as_ref().map(|r| r.detail.clone()).unwrap_or(serde_json::Value::Null);
    let mut audit: Vec<AuditEvent> = job
        .changes
        .iter()
        .zip(results)
        .map(|(c, r)| AuditEvent {
            at: at.clone(),
            stream: c.stream(),
            who: job.who.clone(),
            action: c.action().to_string(),
            target: c.target(),
            reason: job.why.clone(),
            outcome: r.name().to_string(),
            version,
            detail: detail.clone(),
        })
        .collect();
    if let Some(r) = &job.received {
        audit.push(AuditEvent {
            at,
            stream: AuditStream::Signal,
            who: job.who.clone(),
            action: "security_event".into(),
            target: format!("set:{}#{}", r.stream, r.jti),
            reason: job.why.clone(),
            outcome: r.outcome.clone(),
            version,
            detail,
        });
    }
    audit
}

async fn apply_one(
    conn: &mut sqlx::AnyConnection,
    c: &Change,
    now: i64,
    retention: Retention,
) -> Result<ChangeResult, StoreError> {
    use ChangeResult::*;
    Ok(match c {
        Change::OffboardPartner { partner } => match partner_status(conn, partner).await?.as_deref() {
            Some("offboarded") => Unchanged,
            Some(_) => set_partner(conn, partner, Some("offboarded")).await?,
            None => insert_entry(conn, "partner", partner, "", "offboarded", None).await?,
        },
        Change::SuspendPartner { partner } => match partner_status(conn, partner).await?.as_deref() {
            Some("offboarded") => Conflict,
            Some(_) => Unchanged,
            None => insert_entry(conn, "partner", partner, "", "suspended", None).await?,
        },
        Change::ReinstatePartner { partner } => match partner_status(conn, partner).await?.as_deref() {
            Some("offboarded") => Conflict,
            Some(_) => set_partner(conn, partner, None).await?,
            None => Unchanged,
        },
        Change::RevokeClient { client } => insert_entry(conn, "client", client, "", "revoked", None).await?,
        Change::RevokeConsent { consent, expires_at } => {
            let until = expires_at.map(|e| e.saturating_add(retention.consent_skew_seconds));
            insert_entry(conn, "consent", consent, "", "revoked", until).await?
        }
        Change::RevokeToken { iss, jti } => {
            insert_entry(conn, "token", iss, jti, "revoked", Some(now.saturating_add(retention.token_seconds))).await?
        }
        Change::RetireKey { iss, kid } => insert_entry(conn, "key", iss, kid, "revoked", None).await?,
    })
}

async fn partner_status(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT status FROM nhi_feed_entries WHERE kind = 'partner' AND k1 = $1 AND k2 = ''")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get::<String, _>(0)?),
        None => None,
    })
}

/// Sets a listed partner's status, or lists it no more (`None`).
async fn set_partner(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    status: Option<&str>,
) -> Result<ChangeResult, StoreError> {
    match status {
        Some(s) => {
            sqlx::query("UPDATE nhi_feed_entries SET status = $1 WHERE kind = 'partner' AND k1 = $2 AND k2 = ''")
                .bind(s)
                .bind(id)
                .execute(&mut *conn)
                .await?
        }
        None => {
            sqlx::query("DELETE FROM nhi_feed_entries WHERE kind = 'partner' AND k1 = $1 AND k2 = ''")
                .bind(id)
                .execute(&mut *conn)
                .await?
        }
    };
    Ok(ChangeResult::Changed)
}

async fn insert_entry(
    conn: &mut sqlx::AnyConnection,
    kind: &str,
    k1: &str,
    k2: &str,
    status: &str,
    expires_at: Option<i64>,
) -> Result<ChangeResult, StoreError> {
    let done = sqlx::query(
        "INSERT INTO nhi_feed_entries (kind, k1, k2, status, expires_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (kind, k1, k2) DO NOTHING",
    )
    .bind(kind)
    .bind(k1)
    .bind(k2)
    .bind(status)
    .bind(expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(if done.rows_affected() > 0 { ChangeResult::Changed } else { ChangeResult::Unchanged })
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Store {
        /// Whether a SET was stored.
        async fn has_set(&self, stream: &str, jti: &str) -> Result<bool, StoreError> {
            let row = sqlx::query("SELECT COUNT(*) FROM nhi_feed_sets WHERE stream = $1 AND jti = $2")
                .bind(stream)
                .bind(jti)
                .fetch_one(&self.pool)
                .await?;
            Ok(row.try_get::<i64, _>(0)? > 0)
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    async fn fresh(name: &str) -> Store {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/unit-feed");
        let path = dir.join(format!("{name}-{}.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        Store::open(&format!("sqlite://{}", path.display()), 2, 5).await.unwrap()
    }

    const RETENTION: Retention = Retention { token_seconds: 600, consent_skew_seconds: 300, set_jti_seconds: 3600 };

    async fn apply(store: &Store, changes: &[Change], now: i64) -> Outcome {
        store.apply(Write { changes, who: "t", why: "test", received: None, now }, RETENTION).await.unwrap()
    }

    #[test]
    fn entries_leave_the_document_once_they_can_no_longer_matter() {
        runtime().block_on(async {
            let s = fresh("prune").await;
            let now = 1_800_000_000;
            let token = Change::RevokeToken { iss: "https://as".into(), jti: "j1".into() };
            let consent = Change::RevokeConsent { consent: "c1".into(), expires_at: Some(now + 100) };
            let partner = Change::OffboardPartner { partner: "p1".into() };
            let key = Change::RetireKey { iss: "https://as".into(), kid: "k1".into() };
            let v = apply(&s, &[token, consent, partner, key], now).await.version;
            // Nothing is due yet: no change, no version step.
            assert_eq!(s.prune(now + 399, RETENTION).await.unwrap(), 0);
            assert_eq!(s.version().await.unwrap(), v);
            // The consent leaves after its expiry plus the skew; the version moves with it.
            assert_eq!(s.prune(now + 401, RETENTION).await.unwrap(), 1);
            assert_eq!(s.version().await.unwrap(), v + 1);
            // The jti after the longest token lifetime.
            assert_eq!(s.prune(now + 601, RETENTION).await.unwrap(), 1);
            // A retired key stays until it has left its issuer's JWKS, then for the grace period.
            assert_eq!(s.open_keys("https://as").await.unwrap(), ["k1"]);
            s.end_key("https://as", "k1", now + 700).await.unwrap();
            assert!(s.open_keys("https://as").await.unwrap().is_empty());
            assert_eq!(s.prune(now + 701, RETENTION).await.unwrap(), 1);
            // The offboarded partner stays for good.
            assert_eq!(s.prune(now + 10 * 365 * 86_400, RETENTION).await.unwrap(), 0);
            let snap = s.snapshot().await.unwrap();
            assert_eq!(
                snap.entries,
                [("partner".to_string(), "p1".to_string(), String::new(), "offboarded".to_string())]
            );
            assert_eq!(snap.version, v + 3);
        });
    }

    #[test]
    fn a_full_feed_refuses_new_entries_and_keeps_what_it_has() {
        runtime().block_on(async {
            let s = fresh("full").await;
            let clients: Vec<Change> = (0..5).map(|i| Change::RevokeClient { client: format!("c{i}") }).collect();
            let v = apply(&s, &clients, 1).await.version;
            let more = [Change::RevokeClient { client: "c5".into() }];
            let err = s.apply(Write { changes: &more, who: "t", why: "x", received: None, now: 2 }, RETENTION).await;
            assert!(err.unwrap_err().0.contains("over limits.max_document_entries (5)"));
            assert_eq!(s.version().await.unwrap(), v, "nothing stored");
            // Repeats of what is listed still answer (nothing new to hold).
            assert_eq!(apply(&s, &clients[..1], 3).await.results, [ChangeResult::Unchanged]);
        });
    }

    #[test]
    fn a_partner_moves_suspended_offboarded_and_never_back() {
        runtime().block_on(async {
            let s = fresh("partner").await;
            let p = |c: fn(String) -> Change| c("acme".into());
            let one = |o: Outcome| o.results[0];
            assert_eq!(
                one(apply(&s, &[p(|partner| Change::ReinstatePartner { partner })], 1).await),
                ChangeResult::Unchanged
            );
            assert_eq!(
                one(apply(&s, &[p(|partner| Change::SuspendPartner { partner })], 1).await),
                ChangeResult::Changed
            );
            assert_eq!(
                one(apply(&s, &[p(|partner| Change::SuspendPartner { partner })], 1).await),
                ChangeResult::Unchanged
            );
            assert_eq!(
                one(apply(&s, &[p(|partner| Change::ReinstatePartner { partner })], 1).await),
                ChangeResult::Changed
            );
            assert_eq!(
                one(apply(&s, &[p(|partner| Change::SuspendPartner { partner })], 1).await),
                ChangeResult::Changed
            );
            assert_eq!(
                one(apply(&s, &[p(|partner| Change::OffboardPartner { partner })], 1).await),
                ChangeResult::Changed
            );
            assert_eq!(
                one(apply(&s, &[p(|partner| Change::SuspendPartner { partner })], 1).await),
                ChangeResult::Conflict
            );
            assert_eq!(
                one(apply(&s, &[p(|partner| Change::ReinstatePartner { partner })], 1).await),
                ChangeResult::Conflict
            );
            assert_eq!(s.snapshot().await.unwrap().entries[0].3, "offboarded");
        });
    }

    #[test]
    fn a_set_is_stored_once_and_forgotten_after_the_replay_window() {
        runtime().block_on(async {
            let s = fresh("sets").await;
            let changes = [Change::RevokeClient { client: "c".into() }];
            let write = |now| Write {
                changes: &changes,
                who: "ssf:idp",
                why: "x",
                received: Some(ReceivedSet {
                    stream: "idp",
                    jti: "s1",
                    event: "risc:account-disabled",
                    outcome: "mapped",
                    detail: serde_json::Value::Null,
                }),
                now,
            };
            let first = s.apply(write(1000), RETENTION).await.unwrap();
            assert!(!first.duplicate && first.results == [ChangeResult::Changed]);
            assert_eq!(first.audit.len(), 2, "the change and the signal");
            let again = s.apply(write(1001), RETENTION).await.unwrap();
            assert!(again.duplicate && again.audit.is_empty() && again.version == first.version);
            assert!(s.has_set("idp", "s1").await.unwrap());
            s.prune(1000 + 3601, RETENTION).await.unwrap();
            assert!(!s.has_set("idp", "s1").await.unwrap());
        });
    }
}
