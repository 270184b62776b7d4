//! The policy: loaded and validated once per configure, then read by every request.
//!
//! `load` is the only way in. It parses (`document`), validates every cross-reference, decodes keys
//! and compiles route templates (`compile`), and returns either a `Policy` or every error found,
//! each naming the field path and the fix. The filter refuses to start on any error.

mod compile;
pub mod document;

pub use compile::load;
pub use document::{ClientKind, ClientStatus, PartnerStatus, SignatureBackend};

use crate::jwt::keys::{Alg, VerificationKey};
use crate::route::RouteTable;
use std::collections::HashMap;

/// A compiled, validated policy.
#[derive(Debug)]
pub struct Policy {
    pub realm: String,
    pub max_token_bytes: usize,
    pub token_cache_entries: usize,
    pub negative_cache_entries: usize,
    pub signature_backend: SignatureBackend,
    pub issuers: Vec<Issuer>,
    pub partners: HashMap<String, Partner>,
    pub clients: HashMap<String, Client>,
    pub routes: RouteTable<RouteRule>,
}

#[derive(Debug)]
pub struct Issuer {
    pub id: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    pub clock_skew: i64,
    pub require_typ_at_jwt: bool,
    pub keys: Vec<VerificationKey>,
}

impl Issuer {
    pub fn key(&self, kid: &str) -> Option<&VerificationKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

#[derive(Debug)]
pub struct Partner {
    pub id: String,
    pub owner: String,
    pub purpose: String,
    pub status: PartnerStatus,
    pub contract_end: i64,
}

#[derive(Debug)]
pub struct Client {
    pub id: String,
    pub kind: ClientKind,
    pub partner: Option<String>,
    pub owner: String,
    pub purpose: String,
    pub expires: i64,
    pub status: ClientStatus,
    pub scope_ceiling: Vec<String>,
}

#[derive(Debug)]
pub struct RouteRule {
    pub id: String,
    pub methods: Vec<String>,
    pub path: String,
    pub owner: String,
    pub purpose: String,
    pub scopes: Vec<String>,
    /// `scopes` joined with spaces, precomputed for the challenge and the upstream header.
    pub scope_string: String,
    pub client_kinds: Vec<ClientKind>,
    pub max_token_lifetime: i64,
    pub max_token_age: i64,
}

impl Policy {
    pub fn issuer(&self, iss: &str) -> Option<(usize, &Issuer)> {
        self.issuers.iter().enumerate().find(|(_, i)| i.id == iss)
    }
}

/// One problem in a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the offending field, e.g. `clients[2].partner`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every problem found while loading, with the source (a file name, or "envoy configuration").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub source: String,
    pub errors: Vec<FieldError>,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{}: invalid policy ({} error{})",
            self.source,
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {}: {}", e.path, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}
