//! The policy document as written (JSON): the serde model. `compile.rs` turns it into `Policy`.
//!
//! Every struct refuses unknown fields: a misspelt `scope_cieling` must be a load error, not a
//! silently absent ceiling.

use crate::jwt::keys::JwkSet;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
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
    pub issuers: Vec<IssuerDoc>,
    #[serde(default)]
    pub partners: Vec<PartnerDoc>,
    pub clients: Vec<ClientDoc>,
    pub routes: Vec<RouteDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Longest accepted access token, in bytes. Longer ones are refused before any parsing.
    pub max_token_bytes: usize,
    /// Verified tokens kept per Envoy worker.
    pub token_cache_entries: usize,
    /// Tokens with a failed signature kept per worker, so replaying a forgery costs a lookup.
    pub negative_cache_entries: usize,
    /// `auto`: Envoy's native verifier for ES256/RS256 when the host has it; `pure-rust`: never.
    pub signature_backend: SignatureBackend,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_token_bytes: 4096,
            token_cache_entries: 4096,
            negative_cache_entries: 1024,
            signature_backend: SignatureBackend::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureBackend {
    Auto,
    PureRust,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerDoc {
    /// Exact `iss` value.
    pub id: String,
    /// Accepted `aud` values (the token must carry at least one).
    pub audiences: Vec<String>,
    /// Allowed JWS algorithms: ES256, PS256, EdDSA; RS256 only with `allow_rs256`.
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub allow_rs256: bool,
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: i64,
    #[serde(default = "yes")]
    pub require_typ_at_jwt: bool,
    pub jwks: JwkSet,
}

fn default_skew() -> i64 {
    30
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartnerStatus {
    Active,
    Suspended,
    Offboarded,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerDoc {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub owner: String,
    pub purpose: String,
    pub status: PartnerStatus,
    /// RFC 3339 instant the contract ends; access stops then.
    pub contract_end: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientStatus {
    Active,
    Suspended,
    Revoked,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientDoc {
    /// The token's `client_id`.
    pub id: String,
    pub kind: ClientKind,
    /// The partner that owns a `partner_app`; absent for internal identities.
    #[serde(default)]
    pub partner: Option<String>,
    pub owner: String,
    pub purpose: String,
    /// RFC 3339 instant the registration expires.
    pub expires: String,
    pub status: ClientStatus,
    /// The most this client may ever use, whatever its tokens say.
    pub scope_ceiling: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDoc {
    pub id: String,
    pub methods: Vec<String>,
    /// Path template, e.g. `/accounts/{AccountId}/balances`.
    pub path: String,
    pub owner: String,
    pub purpose: String,
    /// Scopes the token must carry, all of them.
    pub scopes: Vec<String>,
    pub client_kinds: Vec<ClientKind>,
    /// Longest token lifetime (`exp - iat`) accepted on this route.
    pub max_token_lifetime_seconds: i64,
    /// Oldest token (`now - iat`) accepted on this route.
    pub max_token_age_seconds: i64,
}
