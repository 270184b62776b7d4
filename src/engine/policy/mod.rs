//! The policy: loaded and validated once per configure, then read by every request.
//!
//! `load` is the only way in. It parses (`document`), validates every cross-reference, decodes keys
//! and compiles route templates (`compile`), and returns either a `Policy` or every error found,
//! each naming the field path and the fix. The filter refuses to start on any error.

mod compile;
pub mod document;

pub use compile::{load, load_with_env};
pub use document::{
    AuditLog, ClientKind, ClientStatus, GovernanceDoc as Governance, Mode, PartnerStatus, SignatureBackend,
};

use std::collections::HashSet;

use crate::engine::keys::{Alg, VerificationKey};
use crate::engine::route::RouteTable;
use std::collections::HashMap;

/// A compiled, validated policy.
#[derive(Debug)]
pub struct Policy {
    pub realm: String,
    pub max_token_bytes: usize,
    pub token_cache_entries: usize,
    pub negative_cache_entries: usize,
    pub signature_backend: SignatureBackend,
    pub mode: Mode,
    /// Key of the audit events' subject hash (empty: unkeyed, flagged by `nhi-guard check`).
    pub audit_key: String,
    pub audit_log: AuditLog,
    pub issuers: Vec<Issuer>,
    pub partners: HashMap<String, Partner>,
    pub clients: HashMap<String, Client>,
    pub routes: RouteTable<RouteRule>,
    pub consent: ConsentSettings,
    pub revocation: Option<RevocationFeed>,
    pub governance: Governance,
    /// DPoP proof checking, when configured; DPoP-bound tokens are refused without it.
    pub dpop: Option<DpopSettings>,
    /// SPIFFE ID -> client id (the loader refuses an ID claimed twice).
    pub workloads: HashMap<String, String>,
}

impl Governance {
    /// Review cadence in days for a partner (`None`) or a client kind.
    pub fn cadence_days(&self, kind: Option<ClientKind>) -> i64 {
        let c = &self.review_cadence_days;
        match kind {
            None => c.partner,
            Some(ClientKind::PartnerApp) => c.partner_app,
            Some(ClientKind::ServiceAccount) => c.service_account,
            Some(ClientKind::BatchJob) => c.batch_job,
        }
    }

    pub fn lifetime_ceiling(&self, kind: ClientKind) -> i64 {
        let c = &self.max_token_lifetime_seconds;
        match kind {
            ClientKind::PartnerApp => c.partner_app,
            ClientKind::ServiceAccount => c.service_account,
            ClientKind::BatchJob => c.batch_job,
        }
    }
}

/// Where the revocation feed is and how fresh it must be.
#[derive(Debug, Clone)]
pub struct RevocationFeed {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub poll_interval_ms: u64,
    pub timeout_ms: u64,
    pub max_staleness: i64,
    pub upstream: Option<Upstream>,
}

/// The host behind a fetch cluster, for rendering Envoy configs (`policy.revocation.upstream`,
/// `issuers[].remote_jwks.upstream`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub tls: Option<UpstreamTls>,
    pub connect_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// SNI, and the DNS name the certificate must carry.
    pub server_name: String,
    pub ca_file: String,
}

/// Where consent comes from. Empty (no issuers, no token claims) when no route needs consent.
#[derive(Debug, Default)]
pub struct ConsentSettings {
    pub issuers: Vec<ConsentIssuer>,
    /// Lowercase header name of the consent artefact.
    pub header: String,
    /// `Some(type)` when consent may ride in the access token's `authorization_details` of that type.
    pub access_token_details_type: Option<String>,
    pub revoked: HashSet<String>,
    /// Artefacts without `status` count as `Authorised` (opt-in).
    pub accept_missing_status: bool,
}

#[derive(Debug)]
pub struct ConsentIssuer {
    pub id: String,
    pub algorithms: Vec<Alg>,
    pub clock_skew: i64,
    pub keys: Vec<VerificationKey>,
}

/// A route's consent requirement, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteConsent {
    /// Machine-only route; `refuse_customer_tokens` refuses tokens bound to a customer.
    None { refuse_customer_tokens: bool },
    /// Every group needs at least one granted permission.
    Permissions(Vec<Vec<String>>),
}

#[derive(Debug)]
pub struct Issuer {
    pub id: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    pub clock_skew: i64,
    pub require_typ_at_jwt: bool,
    /// Inline keys; empty when the keys come from `remote_jwks`.
    pub keys: Vec<VerificationKey>,
    pub remote_jwks: Option<RemoteJwks>,
}

/// Where an issuer's JWKS is fetched from, and how often.
#[derive(Debug, Clone)]
pub struct RemoteJwks {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub refresh_interval_ms: u64,
    pub unknown_kid_refetch_min_interval_ms: u64,
    pub timeout_ms: u64,
    pub upstream: Option<Upstream>,
}

#[derive(Debug)]
pub struct Partner {
    pub id: String,
    pub owner: String,
    pub purpose: String,
    pub status: PartnerStatus,
    pub contract_end: i64,
    pub last_reviewed: Option<i64>,
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
    pub last_reviewed: Option<i64>,
    /// `last_reviewed` plus the kind's cadence (`None`: never reviewed).
    pub review_due: Option<i64>,
    /// Certificates (SHA-256 of the DER) this client owns; empty: not pinned.
    pub certificate_thumbprints: Vec<[u8; 32]>,
    /// SPIFFE IDs this client owns; empty: not pinned.
    pub spiffe_ids: Vec<String>,
    /// Its tokens must be sender-constrained (its own flag, or its kind's in `sender_constraint`).
    pub require_sender_constraint: bool,
    /// Indexes into `Policy::issuers` of the issuers it may take tokens from; empty: any.
    pub issuers: Vec<usize>,
}

impl Client {
    /// Whether the client is pinned to mTLS credentials (certificates or SPIFFE IDs).
    pub fn is_pinned(&self) -> bool {
        !self.certificate_thumbprints.is_empty() || !self.spiffe_ids.is_empty()
    }
}

/// DPoP (RFC 9449) settings, compiled.
#[derive(Debug, Clone)]
pub struct DpopSettings {
    /// `scheme://host[:port]`, lowercase, without a trailing slash.
    pub external_origin: String,
    pub algorithms: Vec<Alg>,
    /// The algorithms as the `algs` challenge parameter lists them (`"ES256 EdDSA"`).
    pub algs_challenge: String,
    pub iat_window: i64,
    pub replay_cache_buckets: u32,
    pub max_proof_bytes: usize,
    /// Server nonce keys, when nonces are configured (`sender_constraint.dpop.nonce`).
    pub nonce: Option<crate::engine::dpop_nonce::NonceKeys>,
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
    pub consent: RouteConsent,
    pub require_fresh_revocation: bool,
    pub dry_run: bool,
    pub require_sender_constraint: bool,
    pub accept_workload_identity: bool,
    /// DPoP proofs here must carry a valid server nonce (the route's flag, or the policy's
    /// `required_on_all_routes`).
    pub require_dpop_nonce: bool,
}

impl Policy {
    pub fn issuer(&self, iss: &str) -> Option<(usize, &Issuer)> {
        self.issuers.iter().enumerate().find(|(_, i)| i.id == iss)
    }

    /// The registered client owning a SPIFFE ID (exact match), for workload identity.
    pub fn client_by_spiffe_id(&self, id: &str) -> Option<&Client> {
        self.workloads.get(id).and_then(|client| self.clients.get(client))
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
        write!(f, "{}: invalid policy ({} error{})", self.source, n, if n == 1 { "" } else { "s" })?;
        for e in &self.errors {
            write!(f, "\n  {}: {}", e.path, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

#[cfg(test)]
mod tests {
    use crate::engine::testkit::POLICY_JSON;
    use serde_json::{json, Value};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn example() -> Value {
        serde_json::from_str(POLICY_JSON).unwrap()
    }

    /// Loads a mutated example and returns every "path: message" line.
    fn errors(mutate: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut doc = example();
        mutate(&mut doc);
        match super::load(&doc.to_string(), "test.json") {
            Ok(_) => Vec::new(),
            Err(e) => {
                assert_eq!(e.source, "test.json");
                e.errors.iter().map(|f| format!("{}: {}", f.path, f.message)).collect()
            }
        }
    }

    fn expect(mutate: impl FnOnce(&mut Value), path: &str, needle: &str) {
        let errs = errors(mutate);
        assert!(
            errs.iter().any(|e| e.starts_with(&format!("{path}: ")) && e.contains(needle)),
            "expected an error at {path} containing {needle:?}, got {errs:#?}"
        );
    }

    #[test]
    fn cache_memory_is_bounded_by_the_product_of_entries_and_token_size() {
        expect(
            |d| {
                d["settings"]["token_cache_entries"] = json!(1_000_000);
                d["settings"]["max_token_bytes"] = json!(65_536);
            },
            "settings.token_cache_entries",
            "the limit is 64 MiB",
        );
        expect(|d| d["settings"]["negative_cache_entries"] = json!(20_000), "settings.token_cache_entries", "MiB");
        assert!(errors(|d| d["settings"]["token_cache_entries"] = json!(10_000)).is_empty(), "40 MiB is fine");
    }

    #[test]
    fn governance_numbers_are_range_checked() {
        let big = json!(i64::MAX / 1000);
        expect(
            |d| d["governance"]["review_cadence_days"]["partner"] = big.clone(),
            "governance.review_cadence_days.partner",
            "1 to 3650",
        );
        expect(
            |d| d["governance"]["review_cadence_days"]["batch_job"] = json!(0),
            "governance.review_cadence_days.batch_job",
            "1 to 3650",
        );
        expect(
            |d| d["governance"]["max_registration_days"] = json!(-5),
            "governance.max_registration_days",
            "1 to 3650",
        );
        expect(
            |d| d["governance"]["enforce_review_grace_days"] = big.clone(),
            "governance.enforce_review_grace_days",
            "0 to 365",
        );
        expect(
            |d| d["governance"]["max_token_lifetime_seconds"]["partner_app"] = json!(0),
            "governance.max_token_lifetime_seconds.partner_app",
            "choose 1",
        );
    }

    #[test]
    fn the_example_policy_loads() {
        assert!(errors(|_| {}).is_empty());
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        expect(
            |d| d["clients"][1]["scope_cieling"] = json!([]),
            "clients[1].scope_cieling",
            "unknown field `scope_cieling`",
        );
        expect(|d| d["routes"][2]["scope"] = json!("x"), "routes[2].scope", "unknown field `scope`");
        expect(|d| d["clients"][0]["kind"] = json!("robot"), "clients[0].kind", "unknown variant `robot`");
        expect(|d| d["partners"][0]["status"] = json!("paused"), "partners[0].status", "unknown variant");
    }

    #[test]
    fn references_and_governance_fields_are_checked() {
        expect(|d| d["clients"][0]["partner"] = json!("nobody"), "clients[0].partner", "not defined");
        expect(|d| d["clients"][7]["partner"] = json!("moneywise"), "clients[7].partner", "internal identities");
        expect(
            |d| {
                d["clients"][0].as_object_mut().unwrap().remove("partner");
            },
            "clients[0].partner",
            "must name the partner",
        );
        expect(|d| d["routes"][0]["owner"] = json!(""), "routes[0].owner", "is empty");
        expect(|d| d["partners"][0]["purpose"] = json!(" "), "partners[0].purpose", "is empty");
        expect(|d| d["clients"][1]["id"] = json!("moneywise-app"), "clients[1].id", "defined twice");
        expect(|d| d["partners"][1]["contract_end"] = json!("2026-06-30"), "partners[1].contract_end", "RFC 3339");
        expect(|d| d["clients"][0]["scope_ceiling"] = json!(["a b"]), "clients[0].scope_ceiling[0]", "scope token");
    }

    #[test]
    fn remote_jwks_is_checked_at_load() {
        expect(|d| d["issuers"][1]["jwks"] = d["issuers"][0]["jwks"].clone(), "issuers[1].remote_jwks", "keep one");
        expect(
            |d| {
                d["issuers"][1].as_object_mut().unwrap().remove("remote_jwks");
            },
            "issuers[1].jwks",
            "is missing",
        );
        expect(|d| d["issuers"][1]["remote_jwks"]["cluster"] = json!(""), "issuers[1].remote_jwks.cluster", "is empty");
        expect(|d| d["issuers"][1]["remote_jwks"]["path"] = json!("jwks"), "issuers[1].remote_jwks.path", "'/'");
        expect(
            |d| d["issuers"][1]["remote_jwks"]["refresh_interval_ms"] = json!(10),
            "issuers[1].remote_jwks.refresh_interval_ms",
            "1000",
        );
        expect(
            |d| d["issuers"][1]["remote_jwks"]["unknown_kid_refetch_min_interval_ms"] = json!(0),
            "issuers[1].remote_jwks.unknown_kid_refetch_min_interval_ms",
            "fetch flood",
        );
        expect(
            |d| d["issuers"][1]["remote_jwks"]["url"] = json!("https://x"),
            "issuers[1].remote_jwks.url",
            "unknown field",
        );
        let p = crate::engine::policy::load(POLICY_JSON, "p").unwrap();
        let remote = p.issuers[1].remote_jwks.as_ref().unwrap();
        assert!(p.issuers[1].keys.is_empty());
        assert_eq!((remote.cluster.as_str(), remote.refresh_interval_ms), ("bank_sts", 60_000));
    }

    #[test]
    fn sender_constraint_settings_are_checked_at_load() {
        let batch = 8; // statements-batch
        expect(
            |d| d["clients"][0]["certificate_thumbprints"] = json!(["abc"]),
            "clients[0].certificate_thumbprints[0]",
            "43 characters",
        );
        expect(|d| d["clients"][0]["spiffe_ids"] = json!(["spiffe://"]), "clients[0].spiffe_ids[0]", "not a SPIFFE ID");
        expect(
            |d| d["clients"][0]["spiffe_ids"] = d["clients"][batch]["spiffe_ids"].clone(),
            "clients[8].spiffe_ids[0]",
            "two clients",
        );
        expect(
            |d| d["sender_constraint"]["dpop"]["external_origin"] = json!("https://api.bank.example/v1"),
            "sender_constraint.dpop.external_origin",
            "not an origin",
        );
        expect(
            |d| d["sender_constraint"]["dpop"]["algorithms"] = json!(["HS256"]),
            "sender_constraint.dpop.algorithms[0]",
            "asymmetric only",
        );
        expect(
            |d| d["sender_constraint"]["dpop"]["replay_cache_buckets"] = json!(1),
            "sender_constraint.dpop.replay_cache_buckets",
            "16 to 65536",
        );
        expect(
            |d| d["routes"][2]["accept_workload_identity"] = json!(true),
            "routes[2].accept_workload_identity",
            "never bring consent",
        );
        expect(
            |d| d["sender_constraint"]["required_for_kinds"] = json!(["robot"]),
            "sender_constraint.required_for_kinds[0]",
            "unknown variant",
        );
        expect(|d| d["clients"][0]["issuers"] = json!(["https://nobody"]), "clients[0].issuers[0]", "not an issuer");
        let p = crate::engine::policy::load(POLICY_JSON, "p").unwrap();
        assert_eq!(p.clients["moneywise-app"].issuers, vec![0], "partner apps: the partner-facing AS only");
        assert_eq!(p.dpop.as_ref().map(|d| d.algs_challenge.as_str()), Some("ES256 EdDSA Ed25519 PS256"));
        assert!(p.clients["statements-batch"].is_pinned() && !p.clients["moneywise-app"].is_pinned());
    }

    #[test]
    fn issuers_refuse_weak_or_confused_crypto() {
        expect(|d| d["issuers"][0]["algorithms"] = json!(["none"]), "issuers[0].algorithms[0]", "never none");
        expect(|d| d["issuers"][0]["algorithms"] = json!(["HS256"]), "issuers[0].algorithms[0]", "HMAC");
        expect(|d| d["issuers"][0]["algorithms"] = json!(["RS256"]), "issuers[0].algorithms[0]", "allow_rs256");
        expect(
            |d| d["issuers"][0]["algorithms"] = json!(["ES256"]),
            "issuers[0].jwks.keys[1]",
            "not in issuers[0].algorithms",
        );
        expect(|d| d["issuers"][0]["clock_skew_seconds"] = json!(120), "issuers[0].clock_skew_seconds", "0 to 60");
        expect(
            |d| d["issuers"][0]["jwks"]["keys"][0]["d"] = json!("c2VjcmV0"),
            "issuers[0].jwks.keys[0]",
            "private key",
        );
        expect(
            |d| d["issuers"][0]["jwks"]["keys"][1]["kid"] = json!("as-es256"),
            "issuers[0].jwks.keys[1].kid",
            "used twice",
        );
        expect(|d| d["issuers"][0]["jwks"]["keys"][0]["x"] = json!("AAAA"), "issuers[0].jwks.keys[0]", "32 bytes");
        expect(
            |d| {
                d["issuers"][0]["jwks"]["keys"][2].as_object_mut().unwrap().remove("alg");
            },
            "issuers[0].jwks.keys[2]",
            "must declare alg",
        );
        expect(|d| d["issuers"][0]["audiences"] = json!([]), "issuers[0].audiences", "at least one");
    }

    #[test]
    fn routes_are_checked_and_compiled() {
        expect(|d| d["routes"][0]["path"] = json!("/accounts/../x"), "routes[0].path", "normalised path");
        expect(|d| d["routes"][0]["methods"] = json!(["FETCH"]), "routes[0].methods[0]", "not one of");
        expect(|d| d["routes"][0]["client_kinds"] = json!([]), "routes[0].client_kinds", "is empty");
        expect(
            |d| d["routes"][0]["max_token_lifetime_seconds"] = json!(604800),
            "routes[0].max_token_lifetime_seconds",
            "short-lived",
        );
        expect(|d| d["routes"][3]["path"] = json!("/accounts/{Id}/balances"), "routes", "\"account\" and \"balances\"");
    }

    #[test]
    fn consent_sources_stay_apart_from_token_issuers() {
        let as_id = json!("https://auth.bank.example");
        expect(|d| d["consent"]["issuers"][0]["id"] = as_id, "consent.issuers[0].id", "distinct issuer");
        expect(
            |d| d["consent"]["issuers"][0]["jwks"]["keys"][0] = d["issuers"][0]["jwks"]["keys"][0].clone(),
            "consent.issuers[0].jwks.keys[0]",
            "keys of their own",
        );
        expect(
            |d| {
                d.as_object_mut().unwrap().remove("consent");
            },
            "consent",
            "routes require consent",
        );
        expect(|d| d["consent"]["header"] = json!("x-nhi-consent"), "consent.header", "not a usable header");
        expect(|d| d["routes"][4]["consent"] = json!("always"), "routes[4].consent", "not a consent requirement");
        expect(
            |d| d["routes"][4]["consent"] = json!({"permissions": []}),
            "routes[4].consent.permissions",
            "at least one group",
        );
        expect(|d| d["routes"][4]["consent"] = json!({"perms": [["ReadBalances"]]}), "routes[4].consent", "must be");
        expect(
            |d| {
                d["routes"][4].as_object_mut().unwrap().remove("consent");
            },
            "routes[4]",
            "consent must be",
        );
        expect(
            |d| d["routes"][4]["refuse_customer_tokens"] = json!(true),
            "routes[4].refuse_customer_tokens",
            "only applies",
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let errs = errors(|d| {
            d["routes"][0]["owner"] = json!("");
            d["clients"][0]["partner"] = json!("nobody");
            d["version"] = json!(2);
        });
        assert_eq!(errs.len(), 3, "{errs:#?}");
    }

    #[test]
    fn malformed_json_names_the_place() {
        let err = super::load("{\"version\": 1,", "broken.json").unwrap_err();
        assert!(err.to_string().starts_with("broken.json: invalid policy (1 error)"), "{err}");
        let err = super::load("[]", "array.json").unwrap_err();
        assert!(err.to_string().contains("(document)"), "{err}");
    }
}
