//! The feed service's config file: read once at start, every error named by file and field with
//! its fix, and the service does not start with any of them. Secrets (bearer credentials, the
//! database URL when it carries a password) are never in the file: it names environment variables.

use crate::engine::keys::{Alg, JwkSet, VerificationKey};
use serde::Deserialize;
use std::collections::BTreeSet;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDoc {
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    /// `host:port` to listen on (HTTP; put TLS and mTLS in front, see the README).
    pub listen: String,
    pub database: DatabaseDoc,
    #[serde(default)]
    pub feed: FeedDoc,
    pub retention: RetentionDoc,
    pub api: ApiDoc,
    #[serde(default)]
    pub streams: Vec<StreamDoc>,
    pub audit: AuditDoc,
    #[serde(default)]
    pub limits: LimitsDoc,
    /// Listen with TLS (and client certificates): without it, plain HTTP behind a TLS-terminating proxy.
    #[serde(default)]
    pub tls: Option<TlsDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsDoc {
    /// PEM certificate chain of this service.
    pub cert_file: String,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key_file: String,
    /// PEM CA certificates that client certificates must chain to; enables `client_certificate`.
    #[serde(default)]
    pub client_ca_file: Option<String>,
}

/// Which verified client certificate a stream or caller accepts: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertMatchDoc {
    /// A URI SAN the certificate must carry (a SPIFFE ID, e.g. spiffe://bank.example/partner-mgmt).
    #[serde(default)]
    pub uri_san: Option<String>,
    /// The certificate's SHA-256, base64url (RFC 8705 x5t#S256; `nhi-guard thumbprint CERT` prints it).
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseDoc {
    /// `sqlite://path/feed.db` or `postgres://...`; or `url_env` instead.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default = "default_pool")]
    pub max_connections: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedDoc {
    #[serde(default = "default_feed_path")]
    pub path: String,
    /// How often a replica asks the database whether the feed moved on.
    #[serde(default = "default_recheck_ms")]
    pub recheck_ms: u64,
    /// How long the last document is served while the database is unreachable; after that the feed
    /// answers 503 and the Envoys' `max_staleness_seconds` fails their routes closed.
    #[serde(default = "default_serve_stale")]
    pub serve_stale_max_seconds: i64,
}

impl Default for FeedDoc {
    fn default() -> Self {
        FeedDoc {
            path: default_feed_path(),
            recheck_ms: default_recheck_ms(),
            serve_stale_max_seconds: default_serve_stale(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionDoc {
    /// How long a revoked `jti` stays listed: the longest token lifetime the policy allows plus skew.
    #[serde(default)]
    pub token_seconds: Option<i64>,
    /// Instead: the policy, from which the longest route lifetime plus the largest skew is taken.
    #[serde(default)]
    pub policy: Option<String>,
    /// A retired key stays listed this long after it left its issuer's JWKS (the Envoys' JWKS
    /// refresh plus the longest token lifetime).
    #[serde(default = "default_key_grace")]
    pub key_grace_seconds: i64,
    /// Issuers whose JWKS is watched so retired keys can leave the feed.
    #[serde(default)]
    pub issuer_jwks: Vec<IssuerJwksDoc>,
    /// How long received SET `jti`s are remembered to refuse a replay.
    #[serde(default = "default_set_retention")]
    pub set_jti_seconds: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerJwksDoc {
    pub iss: String,
    pub jwks_url: String,
    #[serde(default = "default_jwks_check")]
    pub check_interval_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiDoc {
    pub callers: Vec<CallerDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerDoc {
    /// Who, in every audit event this caller causes.
    pub name: String,
    /// Environment variable holding this caller's bearer secret (32+ characters).
    #[serde(default)]
    pub token_env: Option<String>,
    /// Or (and) the client certificate it calls with (needs `tls.client_ca_file`).
    #[serde(default)]
    pub client_certificate: Option<CertMatchDoc>,
    /// The actions it may take (`offboard_partner`, `suspend_partner`, `reinstate_partner`,
    /// `revoke_client`, `revoke_consent`, `revoke_token`, `retire_key`).
    pub actions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDoc {
    pub id: String,
    /// The transmitter's `iss`.
    pub issuer: String,
    /// The `aud` the transmitter puts in SETs for us.
    pub audience: String,
    #[serde(default = "default_set_algs")]
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub jwks: Option<JwkSet>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    pub delivery: DeliveryDoc,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeliveryDoc {
    /// RFC 8935: the transmitter POSTs to `/ssf/push/{id}` with this bearer credential.
    Push {
        #[serde(default)]
        bearer_token_env: Option<String>,
        /// Or (and) the transmitter's client certificate (needs `tls.client_ca_file`).
        #[serde(default)]
        client_certificate: Option<CertMatchDoc>,
    },
    /// RFC 8936: we POST to the transmitter's endpoint.
    Poll {
        endpoint: String,
        #[serde(default)]
        bearer_token_env: Option<String>,
        #[serde(default = "default_poll_interval")]
        interval_ms: u64,
        #[serde(default = "default_max_events")]
        max_events: u32,
        #[serde(default = "default_poll_timeout")]
        timeout_ms: u64,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditDoc {
    /// Folder of the audit files, one per stream (`offboarding.jsonl`, `consent.jsonl`, ...).
    pub dir: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsDoc {
    #[serde(default = "default_max_set_bytes")]
    pub max_set_bytes: usize,
    #[serde(default = "default_max_api_bytes")]
    pub max_api_body_bytes: usize,
    /// Most entries the document may hold: past it, writes that add entries answer 503.
    #[serde(default = "default_max_entries")]
    pub max_document_entries: i64,
}

impl Default for LimitsDoc {
    fn default() -> Self {
        LimitsDoc {
            max_set_bytes: default_max_set_bytes(),
            max_api_body_bytes: default_max_api_bytes(),
            max_document_entries: default_max_entries(),
        }
    }
}

fn default_pool() -> u32 {
    8
}
fn default_feed_path() -> String {
    "/nhi-guard/revocations.json".into()
}
fn default_recheck_ms() -> u64 {
    100
}
fn default_serve_stale() -> i64 {
    300
}
fn default_key_grace() -> i64 {
    3600
}
fn default_set_retention() -> i64 {
    7 * 86400
}
fn default_jwks_check() -> u64 {
    300
}
fn default_set_algs() -> Vec<String> {
    vec!["ES256".into(), "PS256".into(), "Ed25519".into(), "RS256".into()]
}
fn default_poll_interval() -> u64 {
    1000
}
fn default_max_events() -> u32 {
    100
}
fn default_poll_timeout() -> u64 {
    5000
}
fn default_max_set_bytes() -> usize {
    64 * 1024
}
fn default_max_api_bytes() -> usize {
    16 * 1024
}
// About 3 MiB of document at the usual entry sizes: under the filter's 4 MiB.
fn default_max_entries() -> i64 {
    50_000
}

/// Every action the API knows, by the name callers are granted.
pub const ACTIONS: [&str; 7] = [
    "offboard_partner",
    "suspend_partner",
    "reinstate_partner",
    "revoke_client",
    "revoke_consent",
    "revoke_token",
    "retire_key",
];

/// The config, checked and with its secrets read.
#[derive(Debug)]
pub struct FeedConfig {
    pub listen: String,
    pub database_url: String,
    pub max_connections: u32,
    pub feed: FeedDoc,
    pub token_retention_seconds: i64,
    pub key_grace_seconds: i64,
    pub set_jti_seconds: i64,
    pub issuer_jwks: Vec<IssuerJwksDoc>,
    pub callers: Vec<Caller>,
    pub streams: Vec<Stream>,
    pub audit_dir: String,
    pub limits: LimitsDoc,
    pub tls: Option<TlsMaterial>,
}

/// A verified client certificate a stream or caller accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertMatch {
    UriSan(String),
    Sha256(String),
}

/// The listener's certificate, key and client CA, read at load.
pub struct TlsMaterial {
    pub certs: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub key: rustls_pki_types::PrivateKeyDer<'static>,
    pub client_roots: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("certs", &self.certs.len())
            .field("client_ca", &self.client_roots.is_some())
            .finish()
    }
}

/// A request's credentials: its bearer token and its verified client certificate.
pub struct Presented<'a> {
    pub bearer: Option<&'a str>,
    pub peer: Option<&'a crate::feed::tls::PeerIdentity>,
}

/// Constant-time equality of a presented secret and the configured one.
pub fn same_secret(presented: &str, configured: &str) -> bool {
    use subtle::ConstantTimeEq;
    !configured.is_empty() && bool::from(presented.as_bytes().ct_eq(configured.as_bytes()))
}

/// What a stream or caller requires: every configured credential must be presented (at least one is).
fn credentials_ok(token: &Option<String>, certificate: &Option<CertMatch>, p: &Presented<'_>) -> bool {
    let token_ok = match token {
        Some(t) => p.bearer.is_some_and(|b| same_secret(b, t)),
        None => true,
    };
    let cert_ok = match certificate {
        Some(c) => p.peer.is_some_and(|peer| peer.matches(c)),
        None => true,
    };
    (token.is_some() || certificate.is_some()) && token_ok && cert_ok
}

pub struct Caller {
    pub name: String,
    pub token: Option<String>,
    pub certificate: Option<CertMatch>,
    pub actions: BTreeSet<String>,
}

impl Caller {
    pub fn authenticates(&self, p: &Presented<'_>) -> bool {
        credentials_ok(&self.token, &self.certificate, p)
    }
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller").field("name", &self.name).field("actions", &self.actions).finish()
    }
}

#[derive(Debug)]
pub struct Stream {
    pub id: String,
    pub issuer: String,
    pub audience: String,
    pub algorithms: Vec<Alg>,
    /// Inline keys (empty when they come from `jwks_url`).
    pub keys: Vec<VerificationKey>,
    pub jwks_url: Option<String>,
    pub delivery: Delivery,
}

pub enum Delivery {
    Push { bearer_token: Option<String>, certificate: Option<CertMatch> },
    Poll { endpoint: String, bearer_token: Option<String>, interval_ms: u64, max_events: u32, timeout_ms: u64 },
}

impl Delivery {
    /// Whether a push presents this stream's credentials.
    pub fn push_authenticates(&self, p: &Presented<'_>) -> bool {
        match self {
            Delivery::Push { bearer_token, certificate } => credentials_ok(bearer_token, certificate, p),
            Delivery::Poll { .. } => false,
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Delivery::Push { .. } => f.write_str("Push"),
            Delivery::Poll { endpoint, .. } => write!(f, "Poll({endpoint})"),
        }
    }
}

/// Load errors, each `file: field: what is wrong; the fix`.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

/// Reads and checks `path`; `env` looks up environment variables (the process's, or a test's).
pub fn load(path: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<FeedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError(vec![format!("{path}: cannot read: {e}")]))?;
    parse(path, &text, env)
}

/// Checks a config's text; `file` names it in the messages.
pub fn parse(file: &str, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<FeedConfig, ConfigError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let doc: ConfigDoc = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ConfigError(vec![format!("{file}: {path}: {}", e.into_inner())])
    })?;
    let mut c = Checker { file, errors: Vec::new(), env };
    let config = c.check(doc);
    if c.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError(c.errors))
    }
}

struct Checker<'a> {
    file: &'a str,
    errors: Vec<String>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Checker<'_> {
    fn err(&mut self, field: impl AsRef<str>, msg: impl AsRef<str>) {
        self.errors.push(format!("{}: {}: {}", self.file, field.as_ref(), msg.as_ref()));
    }

    /// A secret from the environment, at least `min` characters.
    fn secret(&mut self, field: &str, var: &str, min: usize) -> String {
        match (self.env)(var) {
            Some(v) if v.len() >= min => v,
            Some(_) => {
                self.err(
                    field,
                    format!("environment variable {var} is shorter than {min} characters; use a longer random secret"),
                );
                String::new()
            }
            None => {
                self.err(
                    field,
                    format!("environment variable {var} is not set; set it (the secret is never in the file)"),
                );
                String::new()
            }
        }
    }

    fn url(&mut self, field: &str, url: &str) {
        let ok = (url.starts_with("https://") || url.starts_with("http://")) && url.len() > 8 && !url.contains(' ');
        if !ok {
            self.err(field, format!("{url:?} is not an http(s) URL; write e.g. https://idp.example/ssf/poll"));
        }
    }

    fn check(&mut self, d: ConfigDoc) -> FeedConfig {
        if d.listen.parse::<std::net::SocketAddr>().is_err() {
            self.err("listen", format!("{:?} is not host:port; write e.g. 127.0.0.1:8088", d.listen));
        }
        let database_url = match (&d.database.url, &d.database.url_env) {
            (Some(u), None) => u.clone(),
            (None, Some(var)) => self.secret("database.url_env", var, 1),
            _ => {
                self.err(
                    "database",
                    "needs exactly one of url and url_env (use url_env when the URL carries a password)",
                );
                String::new()
            }
        };
        if !database_url.is_empty()
            && !database_url.starts_with("sqlite:")
            && !database_url.starts_with("postgres://")
            && !database_url.starts_with("postgresql://")
        {
            self.err("database.url", "must start with sqlite: or postgres://");
        }
        if !(1..=256).contains(&d.database.max_connections) {
            self.err("database.max_connections", "must be 1 to 256");
        }
        if !d.feed.path.starts_with('/') || d.feed.path.starts_with("/v1/") || d.feed.path.starts_with("/ssf/") {
            self.err("feed.path", "must start with / and not under /v1/ or /ssf/ (the API's and receiver's paths)");
        }
        if !(10..=10_000).contains(&d.feed.recheck_ms) {
            self.err("feed.recheck_ms", "must be 10 to 10000");
        }
        if !(0..=86_400).contains(&d.feed.serve_stale_max_seconds) {
            self.err("feed.serve_stale_max_seconds", "must be 0 to 86400");
        }
        let token_retention_seconds = self.token_retention(&d.retention);
        if !(0..=30 * 86_400).contains(&d.retention.key_grace_seconds) {
            self.err("retention.key_grace_seconds", "must be 0 to 2592000");
        }
        if !(3600..=365 * 86_400).contains(&d.retention.set_jti_seconds) {
            self.err(
                "retention.set_jti_seconds",
                "must be 3600 to 31536000 (a replay window shorter than an hour is none)",
            );
        }
        for (i, j) in d.retention.issuer_jwks.iter().enumerate() {
            self.url(&format!("retention.issuer_jwks[{i}].jwks_url"), &j.jwks_url);
            if j.iss.is_empty() {
                self.err(format!("retention.issuer_jwks[{i}].iss"), "is empty; use the issuer's exact iss");
            }
            if !(10..=86_400).contains(&j.check_interval_seconds) {
                self.err(format!("retention.issuer_jwks[{i}].check_interval_seconds"), "must be 10 to 86400");
            }
        }
        let tls = d.tls.as_ref().and_then(|t| self.tls(t));
        let client_ca = tls.as_ref().is_some_and(|t| t.client_roots.is_some());
        let callers = self.callers(&d.api, client_ca);
        let streams = self.streams(&d.streams, client_ca);
        if d.audit.dir.is_empty() {
            self.err("audit.dir", "is empty; name the folder for the audit files");
        }
        if !(1024..=1 << 20).contains(&d.limits.max_set_bytes) {
            self.err("limits.max_set_bytes", "must be 1024 to 1048576");
        }
        if !(256..=1 << 20).contains(&d.limits.max_api_body_bytes) {
            self.err("limits.max_api_body_bytes", "must be 256 to 1048576");
        }
        if !(1..=100_000).contains(&d.limits.max_document_entries) {
            self.err(
                "limits.max_document_entries",
                "must be 1 to 100000 (the filter refuses a feed document over 4 MiB)",
            );
        }
        FeedConfig {
            listen: d.listen,
            database_url,
            max_connections: d.database.max_connections,
            feed: d.feed,
            token_retention_seconds,
            key_grace_seconds: d.retention.key_grace_seconds,
            set_jti_seconds: d.retention.set_jti_seconds,
            issuer_jwks: d.retention.issuer_jwks,
            callers,
            streams,
            audit_dir: d.audit.dir,
            limits: d.limits,
            tls,
        }
    }

    fn cert_match(&mut self, field: &str, doc: Option<&CertMatchDoc>, client_ca: bool) -> Option<CertMatch> {
        let doc = doc?;
        if !client_ca {
            self.err(field, "needs tls.client_ca_file (the CA client certificates are verified against)");
        }
        match (&doc.uri_san, &doc.sha256) {
            (Some(u), None) if u.contains(':') && !u.contains(char::is_whitespace) => {
                Some(CertMatch::UriSan(u.clone()))
            }
            (None, Some(t))
                if t.len() == 43 && crate::engine::base64url::decode(t.as_bytes()).is_some_and(|b| b.len() == 32) =>
            {
                Some(CertMatch::Sha256(t.clone()))
            }
            (None, Some(_)) => {
                self.err(
                    format!("{field}.sha256"),
                    "is not a base64url SHA-256 (43 characters; nhi-guard thumbprint CERT prints it)",
                );
                None
            }
            (Some(_), None) => {
                self.err(format!("{field}.uri_san"), "is not a URI (e.g. spiffe://bank.example/partner-mgmt)");
                None
            }
            _ => {
                self.err(field, "needs exactly one of uri_san and sha256");
                None
            }
        }
    }

    fn tls(&mut self, t: &TlsDoc) -> Option<TlsMaterial> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs = |file: &str| -> Result<Vec<CertificateDer<'static>>, String> {
            let certs = CertificateDer::pem_file_iter(file)
                .map_err(|e| format!("cannot read {file}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{file}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("{file} holds no PEM certificate"));
            }
            Ok(certs)
        };
        let chain = certs(&t.cert_file).map_err(|e| self.err("tls.cert_file", e)).ok();
        let key = PrivateKeyDer::from_pem_file(&t.key_file)
            .map_err(|e| self.err("tls.key_file", format!("cannot read a PEM private key from {}: {e}", t.key_file)))
            .ok();
        let client_roots = match &t.client_ca_file {
            Some(f) => Some(certs(f).map_err(|e| self.err("tls.client_ca_file", e)).ok()?),
            None => None,
        };
        let material = TlsMaterial { certs: chain?, key: key?, client_roots };
        if let Err(e) = crate::feed::tls::server_config(&material) {
            self.err("tls", e);
            return None;
        }
        Some(material)
    }

    fn token_retention(&mut self, r: &RetentionDoc) -> i64 {
        match (r.token_seconds, &r.policy) {
            (Some(s), None) if (60..=30 * 86_400).contains(&s) => s,
            (Some(_), None) => {
                self.err("retention.token_seconds", "must be 60 to 2592000");
                0
            }
            (None, Some(path)) => match longest_token_life(path) {
                Ok(s) => s,
                Err(e) => {
                    self.err("retention.policy", e);
                    0
                }
            },
            _ => {
                self.err(
                    "retention",
                    "needs exactly one of token_seconds and policy (the policy whose longest route token lifetime bounds how long a revoked jti must stay listed)",
                );
                0
            }
        }
    }

    fn callers(&mut self, api: &ApiDoc, client_ca: bool) -> Vec<Caller> {
        if api.callers.is_empty() {
            self.err("api.callers", "is empty; the API has no unauthenticated mode: add a caller with a token_env");
        }
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for (i, c) in api.callers.iter().enumerate() {
            let at = format!("api.callers[{i}]");
            if c.name.is_empty() || !names.insert(c.name.clone()) {
                self.err(
                    format!("{at}.name"),
                    "is empty or used twice; every caller needs its own name (it is the audit's who)",
                );
            }
            let token = c.token_env.as_ref().map(|v| self.secret(&format!("{at}.token_env"), v, 32));
            let certificate =
                self.cert_match(&format!("{at}.client_certificate"), c.client_certificate.as_ref(), client_ca);
            if token.is_none() && certificate.is_none() {
                self.err(&at, "needs token_env or client_certificate (the API has no unauthenticated mode)");
            }
            let mut actions = BTreeSet::new();
            for (j, a) in c.actions.iter().enumerate() {
                if ACTIONS.contains(&a.as_str()) {
                    actions.insert(a.clone());
                } else {
                    self.err(
                        format!("{at}.actions[{j}]"),
                        format!("{a:?} is not an action; use one of {}", ACTIONS.join(", ")),
                    );
                }
            }
            if actions.is_empty() {
                self.err(format!("{at}.actions"), "is empty; grant the actions this caller takes");
            }
            out.push(Caller { name: c.name.clone(), token, certificate, actions });
        }
        let tokens: BTreeSet<&str> = out.iter().filter_map(|c| c.token.as_deref()).filter(|t| !t.is_empty()).collect();
        if tokens.len() < out.iter().filter(|c| c.token.as_deref().is_some_and(|t| !t.is_empty())).count() {
            self.err(
                "api.callers",
                "two callers share a secret; give each its own (the audit could not tell them apart)",
            );
        }
        out
    }

    fn streams(&mut self, docs: &[StreamDoc], client_ca: bool) -> Vec<Stream> {
        let mut ids = BTreeSet::new();
        let mut out = Vec::new();
        for (i, s) in docs.iter().enumerate() {
            let at = format!("streams[{i}]");
            let id_ok = !s.id.is_empty()
                && s.id.len() <= 64
                && s.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !id_ok || !ids.insert(s.id.clone()) {
                self.err(
                    format!("{at}.id"),
                    "must be unique, 1 to 64 of [A-Za-z0-9_-] (it is the push path /ssf/push/{id})",
                );
            }
            if s.issuer.is_empty() {
                self.err(format!("{at}.issuer"), "is empty; use the transmitter's exact iss");
            }
            if s.audience.is_empty() {
                self.err(
                    format!("{at}.audience"),
                    "is empty; use the aud the transmitter puts in its SETs for this receiver",
                );
            }
            let mut algorithms = Vec::new();
            for (j, a) in s.algorithms.iter().enumerate() {
                match Alg::parse(a) {
                    Some(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
                    Some(_) => {}
                    None => self.err(
                        format!("{at}.algorithms[{j}]"),
                        format!("{a:?} is not supported; use ES256, PS256, Ed25519 or RS256"),
                    ),
                }
            }
            let keys = match (&s.jwks, &s.jwks_url) {
                (Some(set), None) => {
                    let mut keys = Vec::new();
                    for (j, k) in set.keys.iter().enumerate() {
                        match k.to_key() {
                            Ok(key) => keys.push(key),
                            Err(e) => self.err(format!("{at}.jwks.keys[{j}]"), e),
                        }
                    }
                    if keys.is_empty() {
                        self.err(format!("{at}.jwks"), "has no key; add the transmitter's public keys");
                    }
                    keys
                }
                (None, Some(url)) => {
                    self.url(&format!("{at}.jwks_url"), url);
                    Vec::new()
                }
                _ => {
                    self.err(
                        format!("{at}.jwks"),
                        "needs exactly one of jwks (inline keys) and jwks_url (the transmitter's jwks_uri)",
                    );
                    Vec::new()
                }
            };
            let delivery = match &s.delivery {
                DeliveryDoc::Push { bearer_token_env, client_certificate } => {
                    let bearer_token = bearer_token_env
                        .as_ref()
                        .map(|v| self.secret(&format!("{at}.delivery.bearer_token_env"), v, 32));
                    let certificate = self.cert_match(
                        &format!("{at}.delivery.client_certificate"),
                        client_certificate.as_ref(),
                        client_ca,
                    );
                    if bearer_token.is_none() && certificate.is_none() {
                        self.err(
                            format!("{at}.delivery"),
                            "needs bearer_token_env or client_certificate (a push endpoint is never open)",
                        );
                    }
                    Delivery::Push { bearer_token, certificate }
                }
                DeliveryDoc::Poll { endpoint, bearer_token_env, interval_ms, max_events, timeout_ms } => {
                    self.url(&format!("{at}.delivery.endpoint"), endpoint);
                    if !(100..=3_600_000).contains(interval_ms) {
                        self.err(format!("{at}.delivery.interval_ms"), "must be 100 to 3600000");
                    }
                    if !(1..=1000).contains(max_events) {
                        self.err(format!("{at}.delivery.max_events"), "must be 1 to 1000");
                    }
                    if !(100..=60_000).contains(timeout_ms) {
                        self.err(format!("{at}.delivery.timeout_ms"), "must be 100 to 60000");
                    }
                    let bearer_token = bearer_token_env
                        .as_ref()
                        .map(|v| self.secret(&format!("{at}.delivery.bearer_token_env"), v, 1));
                    Delivery::Poll {
                        endpoint: endpoint.clone(),
                        bearer_token,
                        interval_ms: *interval_ms,
                        max_events: *max_events,
                        timeout_ms: *timeout_ms,
                    }
                }
            };
            out.push(Stream {
                id: s.id.clone(),
                issuer: s.issuer.clone(),
                audience: s.audience.clone(),
                algorithms,
                keys,
                jwks_url: s.jwks_url.clone(),
                delivery,
            });
        }
        out
    }
}

/// The longest token a policy lets through, in seconds: its longest route `max_token_lifetime_seconds`
/// plus its largest issuer clock skew (every route has a bound: the policy loader requires one).
fn longest_token_life(path: &str) -> Result<i64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let policy = crate::engine::policy::load(&text, path).map_err(|e| format!("does not load: {e}"))?;
    let longest = policy.routes.iter().map(|r| r.max_token_lifetime).max().unwrap_or(0);
    let skew = policy.issuers.iter().map(|i| i.clock_skew).max().unwrap_or(0);
    Ok(longest.saturating_add(skew))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "API" => Some("a".repeat(40)),
            "API2" => Some("b".repeat(40)),
            "PUSH" => Some("p".repeat(40)),
            "SHORT" => Some("x".into()),
            _ => None,
        }
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "listen": "127.0.0.1:8088",
            "database": {"url": "sqlite://target/x.db"},
            "retention": {"token_seconds": 660},
            "api": {"callers": [{"name": "partner-mgmt", "token_env": "API", "actions": ["offboard_partner"]}]},
            "streams": [{"id": "okta", "issuer": "https://idp.example", "audience": "https://feed.bank.example",
                "jwks_url": "https://idp.example/jwks", "delivery": {"method": "push", "bearer_token_env": "PUSH"}}],
            "audit": {"dir": "target/audit"}
        })
    }

    fn errors(doc: &serde_json::Value) -> String {
        match parse("feed.json", &doc.to_string(), &env) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_good_config_loads() {
        let c = parse("feed.json", &base().to_string(), &env).unwrap();
        assert_eq!(c.callers[0].token.as_deref().map(str::len), Some(40));
        assert!(matches!(c.streams[0].delivery, Delivery::Push { .. }));
        assert_eq!(c.token_retention_seconds, 660);
    }

    #[test]
    fn each_error_names_the_file_the_field_and_the_fix() {
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("/listen", serde_json::json!("8088"), "feed.json: listen: \"8088\" is not host:port"),
            (
                "/database",
                serde_json::json!({"url": "mysql://x"}),
                "database.url: must start with sqlite: or postgres://",
            ),
            ("/database", serde_json::json!({}), "database: needs exactly one of url and url_env"),
            (
                "/api/callers/0/token_env",
                serde_json::json!("NOPE"),
                "api.callers[0].token_env: environment variable NOPE is not set",
            ),
            ("/api/callers/0/token_env", serde_json::json!("SHORT"), "shorter than 32 characters"),
            (
                "/api/callers/0/actions/0",
                serde_json::json!("delete_everything"),
                "api.callers[0].actions[0]: \"delete_everything\" is not an action",
            ),
            ("/api/callers", serde_json::json!([]), "no unauthenticated mode"),
            ("/streams/0/id", serde_json::json!("a/b"), "streams[0].id: must be unique"),
            (
                "/streams/0/algorithms",
                serde_json::json!(["HS256"]),
                "streams[0].algorithms[0]: \"HS256\" is not supported",
            ),
            (
                "/streams/0/delivery",
                serde_json::json!({"method": "push", "bearer_token_env": "NOPE"}),
                "streams[0].delivery.bearer_token_env",
            ),
            (
                "/streams/0/delivery",
                serde_json::json!({"method": "poll", "endpoint": "ftp://x"}),
                "streams[0].delivery.endpoint",
            ),
            ("/streams/0/jwks", serde_json::json!({"keys": []}), "streams[0].jwks: needs exactly one of jwks"),
            ("/retention", serde_json::json!({}), "retention: needs exactly one of token_seconds and policy"),
            ("/feed", serde_json::json!({"path": "/v1/x"}), "feed.path: must start with /"),
            (
                "/api/callers/0",
                serde_json::json!({"name": "x", "actions": ["revoke_client"]}),
                "api.callers[0]: needs token_env or client_certificate",
            ),
            (
                "/api/callers/0",
                serde_json::json!({"name": "x", "actions": ["revoke_client"], "client_certificate": {"uri_san": "spiffe://b/x"}}),
                "api.callers[0].client_certificate: needs tls.client_ca_file",
            ),
            (
                "/api/callers/0",
                serde_json::json!({"name": "x", "actions": ["revoke_client"], "client_certificate": {"sha256": "abc"}}),
                "api.callers[0].client_certificate.sha256: is not a base64url SHA-256",
            ),
            (
                "/api/callers/0",
                serde_json::json!({"name": "x", "actions": ["revoke_client"], "client_certificate": {}}),
                "api.callers[0].client_certificate: needs exactly one of uri_san and sha256",
            ),
            (
                "/streams/0/delivery",
                serde_json::json!({"method": "push"}),
                "streams[0].delivery: needs bearer_token_env or client_certificate",
            ),
            (
                "/tls",
                serde_json::json!({"cert_file": "/nonexistent/cert.pem", "key_file": "/nonexistent/key.pem"}),
                "tls.cert_file: cannot read /nonexistent/cert.pem",
            ),
        ];
        for (pointer, value, want) in cases {
            let mut doc = base();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            match doc.pointer_mut(parent).unwrap() {
                serde_json::Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
                other => other[key] = value,
            }
            let got = errors(&doc);
            assert!(got.contains(want), "{pointer}: want {want:?}, got {got:?}");
        }
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named_by_path() {
        let mut doc = base();
        doc["streams"][0]["audiance"] = serde_json::json!("x");
        assert!(
            errors(&doc).starts_with("feed.json: streams[0].audiance: unknown field `audiance`"),
            "{}",
            errors(&doc)
        );
        let mut doc = base();
        doc["feed"] = serde_json::json!({"recheck_ms": "fast"});
        assert!(errors(&doc).contains("feed.recheck_ms"), "{}", errors(&doc));
    }

    #[test]
    fn two_callers_may_not_share_a_secret() {
        let mut doc = base();
        doc["api"]["callers"] = serde_json::json!([
            {"name": "a", "token_env": "API", "actions": ["revoke_client"]},
            {"name": "b", "token_env": "API", "actions": ["revoke_client"]}
        ]);
        assert!(errors(&doc).contains("two callers share a secret"));
    }

    #[test]
    fn the_demo_config_loads() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/envoy/feed.json")).unwrap();
        let secret = |name: &str| Some(format!("{name}-0123456789abcdef0123456789abcdef"));
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/");
        // Its paths are relative to the repository (where the demo runs it).
        let text = text.replace("\"policies/", &format!("\"{dir}policies/"));
        let c = parse("envoy/feed.json", &text, &secret).unwrap();
        assert_eq!((c.streams.len(), c.callers.len()), (1, 3));
        assert!(!c.streams[0].keys.is_empty());
    }

    #[test]
    fn token_retention_comes_from_the_policy() {
        let mut doc = base();
        doc["retention"] =
            serde_json::json!({"policy": concat!(env!("CARGO_MANIFEST_DIR"), "/policies/open-banking.json")});
        let c = parse("feed.json", &doc.to_string(), &env).unwrap();
        assert!(c.token_retention_seconds >= 600, "{}", c.token_retention_seconds);
    }
}
