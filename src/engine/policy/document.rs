//! The policy document as written (JSON): the serde model. `compile.rs` turns it into `Policy`.
//!
//! Every struct refuses unknown fields: a misspelt `scope_cieling` must be a load error, not a
//! silently absent ceiling.

use crate::engine::keys::JwkSet;
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Editors' schema pointer; ignored.
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    pub version: u32,
    /// The `realm` of every `WWW-Authenticate` challenge.
    pub realm: String,
    #[serde(default)]
    pub settings: Settings,
    #[schemars(length(min = 1))]
    pub issuers: Vec<IssuerDoc>,
    #[serde(default)]
    pub partners: Vec<PartnerDoc>,
    pub clients: Vec<ClientDoc>,
    pub routes: Vec<RouteDoc>,
    /// Where customer consent comes from and who signs it. Needed when any route requires consent.
    #[serde(default)]
    pub consent: Option<ConsentDoc>,
    /// The live revocation feed, polled by one worker per Envoy (the lease holder).
    #[serde(default)]
    pub revocation: Option<RevocationDoc>,
    /// Sender-constrained tokens: DPoP settings and which client kinds must present bound tokens.
    #[serde(default)]
    pub sender_constraint: SenderConstraintDoc,
    /// Review cadence and token-lifetime ceilings that `nhi-guard check` holds the policy to.
    #[serde(default)]
    pub governance: GovernanceDoc,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GovernanceDoc {
    /// Days between reviews, per identity class (`partner` and each client kind).
    pub review_cadence_days: ReviewCadence,
    /// Longest route token lifetime acceptable per client kind, in seconds.
    pub max_token_lifetime_seconds: LifetimeCeilings,
    /// When set, the filter denies clients (and their partners' apps) whose review is overdue by
    /// more than this many days (`review_overdue`).
    #[schemars(range(min = 0, max = 365))]
    pub enforce_review_grace_days: Option<i64>,
    /// Registrations expiring further out than this are flagged as long-lived.
    #[schemars(range(min = 1, max = 3650))]
    pub max_registration_days: i64,
}

impl Default for GovernanceDoc {
    fn default() -> Self {
        GovernanceDoc {
            review_cadence_days: ReviewCadence::default(),
            max_token_lifetime_seconds: LifetimeCeilings::default(),
            enforce_review_grace_days: None,
            max_registration_days: 730,
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewCadence {
    #[schemars(range(min = 1, max = 3650))]
    pub partner: i64,
    #[schemars(range(min = 1, max = 3650))]
    pub partner_app: i64,
    #[schemars(range(min = 1, max = 3650))]
    pub service_account: i64,
    #[schemars(range(min = 1, max = 3650))]
    pub batch_job: i64,
}

impl Default for ReviewCadence {
    fn default() -> Self {
        ReviewCadence { partner: 365, partner_app: 180, service_account: 90, batch_job: 90 }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LifetimeCeilings {
    #[schemars(range(min = 1, max = 86_400))]
    pub partner_app: i64,
    #[schemars(range(min = 1, max = 86_400))]
    pub service_account: i64,
    #[schemars(range(min = 1, max = 86_400))]
    pub batch_job: i64,
}

impl Default for LifetimeCeilings {
    fn default() -> Self {
        LifetimeCeilings { partner_app: 600, service_account: 900, batch_job: 3600 }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationDoc {
    /// Envoy cluster that serves the feed.
    #[schemars(length(min = 1))]
    pub cluster: String,
    /// Path of the feed document on that cluster.
    pub path: String,
    /// `:authority` sent with the fetch.
    #[serde(default = "default_feed_authority")]
    #[schemars(length(min = 1))]
    pub authority: String,
    #[serde(default = "default_poll_ms")]
    #[schemars(range(min = 100, max = 60_000))]
    pub poll_interval_ms: u64,
    #[serde(default = "default_feed_timeout_ms")]
    #[schemars(range(min = 100, max = 30_000))]
    pub timeout_ms: u64,
    /// Deny routes that need fresh data when the last successful fetch is older than this.
    #[schemars(range(min = 2, max = 3600))]
    pub max_staleness_seconds: i64,
    /// Where `cluster` points, for `nhi-guard envoy-config` to render it (the filter only names
    /// the cluster). Leave it out where the platform makes the cluster (Istio, Envoy Gateway).
    #[serde(default)]
    pub upstream: Option<UpstreamDoc>,
}

/// A host a fetched source lives on, as `nhi-guard envoy-config` renders its cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamDoc {
    /// DNS name or IP address.
    #[schemars(length(min = 1))]
    pub host: String,
    #[schemars(range(min = 1))]
    pub port: u16,
    /// TLS to the host (absent: plaintext, for loopback and in-mesh sources only).
    #[serde(default)]
    pub tls: Option<UpstreamTlsDoc>,
    #[serde(default = "default_connect_timeout_ms")]
    #[schemars(range(min = 100, max = 30_000))]
    pub connect_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsDoc {
    /// SNI sent, and the DNS name the server's certificate must carry (default: `host`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM bundle of the CAs that may sign the server's certificate.
    #[serde(default = "default_ca_file")]
    pub ca_file: String,
}

fn default_connect_timeout_ms() -> u64 {
    1000
}

fn default_ca_file() -> String {
    "/etc/ssl/certs/ca-certificates.crt".to_string()
}

fn default_feed_authority() -> String {
    "nhi-guard-feed".to_string()
}

fn default_poll_ms() -> u64 {
    1000
}

fn default_feed_timeout_ms() -> u64 {
    2000
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentDoc {
    /// The bank's consent service(s): the only signers of consent artefacts. Never the access-token issuer.
    #[serde(default)]
    pub issuers: Vec<ConsentIssuerDoc>,
    /// Request header that carries a consent artefact (a signed JWT).
    #[serde(default = "default_consent_header")]
    pub header: String,
    /// Accept consent carried inside the access token (`consent_id` / `openbanking_intent_id` plus
    /// RFC 9396 `authorization_details`), as issued by an authorization server that embeds it.
    #[serde(default)]
    pub access_token_claims: Option<TokenConsentDoc>,
    /// Consent ids revoked by the customer or the bank (a static list; the live feed supersedes it).
    #[serde(default)]
    pub revoked: Vec<String>,
    /// Treat consent artefacts without a `status` claim as `Authorised`. Off by default: a consent
    /// service that omits the status has not said the customer authorised anything.
    #[serde(default)]
    pub accept_artefacts_without_status: bool,
}

fn default_consent_header() -> String {
    "x-consent".to_string()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentIssuerDoc {
    #[schemars(length(min = 1))]
    pub id: String,
    #[schemars(length(min = 1))]
    pub algorithms: Vec<String>,
    #[serde(default = "default_skew")]
    #[schemars(range(min = 0, max = 60))]
    pub clock_skew_seconds: i64,
    pub jwks: JwkSet,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenConsentDoc {
    /// The `authorization_details[].type` whose `actions` are the granted permissions.
    #[schemars(length(min = 1))]
    pub authorization_details_type: String,
}

/// A route's consent requirement: `"none"` (machine-only) or `{"permissions": [[any of], ...]}`,
/// every inner list satisfied by at least one granted permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteConsentDoc {
    None,
    Permissions(Vec<Vec<String>>),
}

impl JsonSchema for RouteConsentDoc {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RouteConsent".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "\"none\" for machine-only routes, or the permission groups a consent must grant: every inner list needs at least one granted permission",
            "oneOf": [
                {"const": "none"},
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["permissions"],
                    "properties": {
                        "permissions": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}
                        }
                    }
                }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for RouteConsentDoc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        struct Required {
            permissions: Vec<Vec<String>>,
        }
        #[derive(Deserialize, JsonSchema)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Required(Required),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "consent must be \"none\" (machine-only) or {\"permissions\": [[\"ReadBalances\"], ...]}",
            )
        })? {
            Raw::Word(w) if w == "none" => Ok(RouteConsentDoc::None),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "{w:?} is not a consent requirement; use \"none\" or {{\"permissions\": [[...]]}}"
            ))),
            Raw::Required(r) => Ok(RouteConsentDoc::Permissions(r.permissions)),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Longest accepted access token, in bytes. Longer ones are refused before any parsing.
    #[schemars(range(min = 256, max = 65536))]
    pub max_token_bytes: usize,
    /// Verified tokens kept per Envoy worker.
    #[schemars(range(max = 1_000_000))]
    pub token_cache_entries: usize,
    /// Tokens with a failed signature kept per worker, so replaying a forgery costs a lookup.
    #[schemars(range(max = 1_000_000))]
    pub negative_cache_entries: usize,
    /// `auto`: Envoy's native verifier for ES256/RS256 when the host has it; `pure-rust`: never.
    pub signature_backend: SignatureBackend,
    /// `enforce`, or `dry_run`: decide, count and log as `would_deny`, but let every request through.
    pub mode: Mode,
    /// Key for the keyed hash of customer subjects in audit events. Keep it secret and stable.
    pub audit_subject_key: String,
    /// Instead of `audit_subject_key`: the name of an environment variable of the Wasm VM that
    /// holds the key (Envoy's `vm_config.environment_variables`), so it never sits in the policy.
    pub audit_subject_key_env: Option<String>,
    /// Which decisions also write their audit events to Envoy's log (the access-log files always
    /// get them). Logging every allowed request costs Envoy time; `denials` is the default.
    pub audit_log: AuditLog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditLog {
    All,
    Denials,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Enforce,
    DryRun,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_token_bytes: 4096,
            token_cache_entries: 4096,
            negative_cache_entries: 1024,
            signature_backend: SignatureBackend::Auto,
            mode: Mode::Enforce,
            audit_subject_key: String::new(),
            audit_subject_key_env: None,
            audit_log: AuditLog::Denials,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureBackend {
    Auto,
    PureRust,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerDoc {
    /// Exact `iss` value.
    #[schemars(length(min = 1))]
    pub id: String,
    /// Accepted `aud` values (the token must carry at least one).
    #[schemars(length(min = 1))]
    pub audiences: Vec<String>,
    /// Allowed JWS algorithms: ES256, PS256, Ed25519 (or its older name EdDSA); RS256 only with
    /// `allow_rs256`.
    #[schemars(length(min = 1))]
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub allow_rs256: bool,
    #[serde(default = "default_skew")]
    #[schemars(range(min = 0, max = 60))]
    pub clock_skew_seconds: i64,
    #[serde(default = "yes")]
    pub require_typ_at_jwt: bool,
    /// Inline keys (air-gapped use). Exactly one of `jwks` and `remote_jwks`.
    #[serde(default)]
    pub jwks: Option<JwkSet>,
    /// Keys fetched from the issuer's JWKS endpoint through an Envoy cluster.
    #[serde(default)]
    pub remote_jwks: Option<RemoteJwksDoc>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteJwksDoc {
    /// Envoy cluster that reaches the issuer's JWKS endpoint.
    #[schemars(length(min = 1))]
    pub cluster: String,
    /// Path of the JWKS document on that cluster (e.g. `/.well-known/jwks.json`).
    pub path: String,
    /// `:authority` sent with the fetch (the issuer's host name, for virtual hosting and SNI-routed proxies).
    #[schemars(length(min = 1))]
    pub authority: String,
    /// Regular refresh, whether or not anything asks for it.
    #[serde(default = "default_jwks_refresh_ms")]
    #[schemars(range(min = 1000, max = 86_400_000))]
    pub refresh_interval_ms: u64,
    /// Least time between two fetches triggered by tokens with an unknown `kid` (a flood of made-up
    /// kids must not turn into a flood of fetches at the issuer).
    #[serde(default = "default_jwks_refetch_ms")]
    #[schemars(range(min = 500, max = 3_600_000))]
    pub unknown_kid_refetch_min_interval_ms: u64,
    #[serde(default = "default_feed_timeout_ms")]
    #[schemars(range(min = 100, max = 30_000))]
    pub timeout_ms: u64,
    /// Where `cluster` points, for `nhi-guard envoy-config` (see `RevocationDoc::upstream`).
    #[serde(default)]
    pub upstream: Option<UpstreamDoc>,
}

fn default_jwks_refresh_ms() -> u64 {
    300_000
}

fn default_jwks_refetch_ms() -> u64 {
    5_000
}

fn default_skew() -> i64 {
    30
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartnerStatus {
    Active,
    Suspended,
    Offboarded,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerDoc {
    #[schemars(length(min = 1))]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[schemars(length(min = 1))]
    pub owner: String,
    #[schemars(length(min = 1))]
    pub purpose: String,
    pub status: PartnerStatus,
    /// RFC 3339 instant the contract ends; access stops then.
    pub contract_end: String,
    /// RFC 3339 instant of the last access review.
    #[serde(default)]
    pub last_reviewed: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// A third party's application (fintech, aggregator): needs a partner.
    PartnerApp,
    /// An internal service account.
    ServiceAccount,
    /// An internal scheduled job.
    BatchJob,
}

impl ClientKind {
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::PartnerApp => "partner_app",
            ClientKind::ServiceAccount => "service_account",
            ClientKind::BatchJob => "batch_job",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientStatus {
    Active,
    Suspended,
    Revoked,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientDoc {
    /// The token's `client_id`.
    #[schemars(length(min = 1))]
    pub id: String,
    pub kind: ClientKind,
    /// The partner that owns a `partner_app`; absent for internal identities.
    #[serde(default)]
    pub partner: Option<String>,
    #[schemars(length(min = 1))]
    pub owner: String,
    #[schemars(length(min = 1))]
    pub purpose: String,
    /// RFC 3339 instant the registration expires.
    pub expires: String,
    pub status: ClientStatus,
    /// The most this client may ever use, whatever its tokens say.
    pub scope_ceiling: Vec<String>,
    /// RFC 3339 instant of the last access review.
    #[serde(default)]
    pub last_reviewed: Option<String>,
    /// SHA-256 thumbprints (base64url, as in `x5t#S256`) of the client certificates this client
    /// owns. When set, its tokens are accepted only over mutual TLS with one of them.
    #[serde(default)]
    pub certificate_thumbprints: Vec<String>,
    /// SPIFFE IDs this client owns (URI SAN of its mTLS certificate). When set, its tokens are
    /// accepted only from one of them, and routes that allow it take the workload identity alone.
    #[serde(default)]
    pub spiffe_ids: Vec<String>,
    /// Refuse this client's tokens unless they are sender-constrained (mTLS-bound or DPoP).
    #[serde(default)]
    pub require_sender_constraint: bool,
    /// Issuers (`iss`) whose tokens this client may present; empty: any issuer in the policy.
    /// With several issuers, pin partner apps to the partner-facing AS and workloads to the STS.
    #[serde(default)]
    pub issuers: Vec<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SenderConstraintDoc {
    /// Client kinds whose tokens must be sender-constrained everywhere (e.g. `["partner_app"]`).
    pub required_for_kinds: Vec<ClientKind>,
    /// DPoP (RFC 9449) proof checking; without it, DPoP-bound tokens are refused.
    pub dpop: Option<DpopDoc>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DpopDoc {
    /// Scheme and host (and port, if not the default) clients address this API by: `htu` must be
    /// this plus the request path. Never taken from request headers (they are client-controlled).
    pub external_origin: String,
    /// Proof algorithms accepted (asymmetric only).
    #[serde(default = "default_dpop_algs")]
    #[schemars(length(min = 1))]
    pub algorithms: Vec<String>,
    /// How old (and, with the skew, how far ahead) a proof's `iat` may be; also how long its `jti`
    /// is remembered.
    #[serde(default = "default_dpop_window")]
    #[schemars(range(min = 10, max = 300))]
    pub iat_window_seconds: i64,
    /// Replay cache size: buckets of 64 proofs each, shared by all workers of an Envoy. Hashing fills
    /// buckets unevenly: plan on about 45 live proofs per bucket (4096 buckets: ~180 000 proofs per
    /// window, 3 000 DPoP requests a second with a 60 s window).
    #[serde(default = "default_dpop_buckets")]
    #[schemars(range(min = 16, max = 65_536))]
    pub replay_cache_buckets: u32,
    #[serde(default = "default_dpop_bytes")]
    #[schemars(range(min = 512, max = 16_384))]
    pub max_proof_bytes: usize,
    /// Server nonces (RFC 9449 §9, FAPI 2.0's defence against pre-generated proofs).
    #[serde(default)]
    pub nonce: Option<DpopNonceDoc>,
}

/// DPoP server nonces, minted and checked by every Envoy with the same key and no shared state.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DpopNonceDoc {
    /// The Wasm VM environment variable holding the nonce key(s): at least 32 bytes each, up to
    /// four separated by commas; the first mints, all are accepted (rotation).
    pub key_env: String,
    /// A nonce is accepted for one to two windows (the one it was minted in and the next).
    #[serde(default = "default_nonce_window")]
    #[schemars(range(min = 10, max = 3600))]
    pub window_seconds: i64,
    /// Require nonces on every route; otherwise only on routes with `require_dpop_nonce`.
    #[serde(default)]
    pub required_on_all_routes: bool,
}

fn default_nonce_window() -> i64 {
    60
}

fn default_dpop_algs() -> Vec<String> {
    vec!["ES256".into(), "Ed25519".into(), "PS256".into()]
}

fn default_dpop_window() -> i64 {
    60
}

fn default_dpop_buckets() -> u32 {
    4096
}

fn default_dpop_bytes() -> usize {
    4096
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteDoc {
    #[schemars(length(min = 1))]
    pub id: String,
    #[schemars(length(min = 1))]
    pub methods: Vec<String>,
    /// Path template, e.g. `/accounts/{AccountId}/balances`.
    pub path: String,
    #[schemars(length(min = 1))]
    pub owner: String,
    #[schemars(length(min = 1))]
    pub purpose: String,
    /// Scopes the token must carry, all of them.
    pub scopes: Vec<String>,
    #[schemars(length(min = 1))]
    pub client_kinds: Vec<ClientKind>,
    /// Longest token lifetime (`exp - iat`) accepted on this route.
    #[schemars(range(min = 1, max = 86_400))]
    pub max_token_lifetime_seconds: i64,
    /// Oldest token (`now - iat`) accepted on this route.
    #[schemars(range(min = 1, max = 86_400))]
    pub max_token_age_seconds: i64,
    /// Customer consent the route needs, beside machine authority.
    pub consent: RouteConsentDoc,
    /// On a `"none"` route: refuse tokens that carry a customer (sub other than the client).
    #[serde(default)]
    pub refuse_customer_tokens: bool,
    /// With a revocation feed configured: deny when its data is stale (default). `false` lets the
    /// route run on the last snapshot, however old, for availability-first routes.
    #[serde(default = "yes")]
    pub require_fresh_revocation: bool,
    /// Roll-out aid: deny decisions on this route are logged as `would_deny` and let through.
    #[serde(default)]
    pub dry_run: bool,
    /// Refuse tokens on this route unless they are sender-constrained (mTLS-bound or DPoP).
    #[serde(default)]
    pub require_sender_constraint: bool,
    /// Let registered workloads call this route on their mTLS SPIFFE ID alone, without a token.
    #[serde(default)]
    pub accept_workload_identity: bool,
    /// DPoP proofs on this route must carry a server nonce (RFC 9449 §9); needs
    /// `sender_constraint.dpop.nonce`.
    #[serde(default)]
    pub require_dpop_nonce: bool,
}
