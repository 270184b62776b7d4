//! Validation and compilation of a `PolicyDocument` into a `Policy`.

use super::document::{
    ClientDoc, ConsentDoc, DpopDoc, DpopNonceDoc, IssuerDoc, PartnerDoc, PolicyDocument, RemoteJwksDoc, RevocationDoc,
    RouteConsentDoc, RouteDoc, Settings, UpstreamDoc,
};
use super::{
    Client, ConsentIssuer, ConsentSettings, DpopSettings, FieldError, Issuer, Partner, Policy, PolicyError, RemoteJwks,
    RevocationFeed, RouteConsent, RouteRule, Upstream, UpstreamTls,
};
use crate::engine::credentials::IDENTITY_HEADER_PREFIX;
use crate::engine::dpop_nonce::NonceKeys;
use crate::engine::keys::{Alg, JwkSet, VerificationKey};
use crate::engine::policy::ClientKind;
use crate::engine::route::{PathTemplate, RouteTable};
use crate::engine::timestamp::parse_rfc3339;
use std::collections::{HashMap, HashSet};

/// Largest clock skew accepted (FAPI 2.0: reject more than 60 s ahead).
pub const MAX_CLOCK_SKEW: i64 = 60;
/// Most token text one cache pair (verified + forged) may hold per worker:
/// `(token_cache_entries + negative_cache_entries) * max_token_bytes`.
pub const MAX_CACHED_TOKEN_BYTES: usize = 64 << 20;
/// Route limits beyond a day are a sign of a long-lived credential, not a short-lived token.
pub const MAX_ROUTE_SECONDS: i64 = 86_400;
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Parses, validates and compiles a policy. `source` names where the JSON came from, for messages.
/// A policy that takes its audit key from the environment (`settings.audit_subject_key_env`) does
/// not load here: the filter uses `load_with_env`, tools that only inspect a policy pass a stand-in.
pub fn load(json: &str, source: &str) -> Result<Policy, PolicyError> {
    load_with_env(json, source, &|_| None)
}

/// `load`, resolving `settings.audit_subject_key_env` through `env` (the filter passes the Wasm
/// VM's environment, which Envoy fills from `vm_config.environment_variables`).
pub fn load_with_env(json: &str, source: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Policy, PolicyError> {
    let fail = |errors| PolicyError { source: source.to_string(), errors };
    let mut de = serde_json::Deserializer::from_str(json);
    let doc: PolicyDocument = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = match e.path().to_string() {
            p if p == "." => "(document)".to_string(),
            p => p,
        };
        fail(vec![FieldError {
            path,
            message: format!("{}; fix the JSON to match policies/policy.schema.json", e.inner()),
        }])
    })?;
    let mut c = Compiler { errors: Vec::new(), upstreams: HashMap::new() };
    let audit_key = c.audit_key(&doc.settings, env);
    let policy = c.compile(doc, audit_key, env);
    match policy {
        Some(p) if c.errors.is_empty() => Ok(p),
        _ => Err(fail(c.errors)),
    }
}

struct Compiler {
    errors: Vec<FieldError>,
    /// Fetch clusters seen so far and the host each points at.
    upstreams: HashMap<String, Option<Upstream>>,
}

impl Compiler {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError { path: path.into(), message: message.into() });
    }

    fn required(&mut self, path: String, value: &str, what: &str) {
        if value.trim().is_empty() {
            self.err(
                path,
                format!("is empty; every {what} needs one (governance: who answers for it, and why it exists)"),
            );
        }
    }

    fn time(&mut self, path: String, value: &str) -> i64 {
        match parse_rfc3339(value) {
            Some(t) => t,
            None => {
                self.err(path, format!("{value:?} is not an RFC 3339 date-time; write e.g. \"2027-03-31T23:59:59Z\""));
                0
            }
        }
    }

    fn scopes(&mut self, path: &str, scopes: &[String]) {
        let mut seen = HashSet::new();
        for (i, s) in scopes.iter().enumerate() {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
                self.err(format!("{path}[{i}]"), format!("{s:?} is not a valid scope token (RFC 6749 §3.3)"));
            }
            if !seen.insert(s) {
                self.err(format!("{path}[{i}]"), format!("scope {s:?} is listed twice"));
            }
        }
    }

    /// The audit key, inline or from the VM's environment (exactly one way).
    fn audit_key(&mut self, s: &Settings, env: &dyn Fn(&str) -> Option<String>) -> String {
        let Some(name) = &s.audit_subject_key_env else { return s.audit_subject_key.clone() };
        if !s.audit_subject_key.is_empty() {
            self.err(
                "settings.audit_subject_key_env",
                "is set together with settings.audit_subject_key; keep one (the environment keeps the key out of the policy)",
            );
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            self.err("settings.audit_subject_key_env", format!("{name:?} is not an environment variable name"));
            return String::new();
        }
        match env(name) {
            Some(key) if !key.is_empty() => key,
            _ => {
                self.err(
                    "settings.audit_subject_key_env",
                    format!(
                        "{name} is not set in the filter's environment; pass it to the Wasm VM \
                         (Envoy: vm_config.environment_variables.host_env_keys; Istio: vmConfig.env with \
                         valueFrom: HOST; Envoy Gateway: wasm env.hostKeys)"
                    ),
                );
                String::new()
            }
        }
    }

    /// The host a fetch cluster points at. The same cluster name must always mean the same host.
    fn upstream(&mut self, at: &str, cluster: &str, d: Option<&UpstreamDoc>) -> Option<Upstream> {
        let up = d.map(|d| {
            let at = format!("{at}.upstream");
            let name_ok =
                |h: &str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
            if !name_ok(&d.host) {
                self.err(format!("{at}.host"), format!("{:?} is not a host name or IP address", d.host));
            }
            if d.port == 0 {
                self.err(format!("{at}.port"), "is 0; use the port the source listens on (443 for HTTPS)");
            }
            if !(100..=30_000).contains(&d.connect_timeout_ms) {
                self.err(
                    format!("{at}.connect_timeout_ms"),
                    format!("is {}; choose 100 to 30000", d.connect_timeout_ms),
                );
            }
            let tls = d.tls.as_ref().map(|t| {
                let server_name = t.server_name.clone().unwrap_or_else(|| d.host.clone());
                if !name_ok(&server_name) {
                    self.err(format!("{at}.tls.server_name"), format!("{server_name:?} is not a host name"));
                }
                if !t.ca_file.starts_with('/') {
                    self.err(
                        format!("{at}.tls.ca_file"),
                        "must be an absolute path to a PEM CA bundle on the Envoy host",
                    );
                }
                UpstreamTls { server_name, ca_file: t.ca_file.clone() }
            });
            Upstream { host: d.host.clone(), port: d.port, tls, connect_timeout_ms: d.connect_timeout_ms }
        });
        match self.upstreams.get(cluster) {
            Some(first) if *first != up => self.err(
                format!("{at}.upstream"),
                format!("differs from another source's upstream for cluster {cluster:?}; one cluster is one host"),
            ),
            Some(_) => {}
            None => {
                self.upstreams.insert(cluster.to_string(), up.clone());
            }
        }
        up
    }

    fn compile(
        &mut self,
        doc: PolicyDocument,
        audit_key: String,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Policy> {
        if doc.version != 1 {
            self.err("version", format!("is {}; this nhi-guard reads version 1", doc.version));
        }
        if doc.realm.is_empty() || !doc.realm.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
            self.err(
                "realm",
                "must be non-empty printable ASCII without quotes or backslashes (it goes into WWW-Authenticate)",
            );
        }
        let s = &doc.settings;
        if !(256..=65_536).contains(&s.max_token_bytes) {
            self.err("settings.max_token_bytes", format!("is {}; choose 256 to 65536", s.max_token_bytes));
        }
        if s.token_cache_entries > 1_000_000 || s.negative_cache_entries > 1_000_000 {
            self.err("settings", "cache sizes above 1000000 entries per worker are refused; memory grows with them");
        }
        // Cached tokens are kept whole: the product bounds memory. Two such cache pairs per worker
        // (access tokens, consent artefacts): at most 2 x MAX_CACHED_TOKEN_BYTES of token text.
        let cached = s.token_cache_entries.saturating_add(s.negative_cache_entries).saturating_mul(s.max_token_bytes);
        if cached > MAX_CACHED_TOKEN_BYTES {
            self.err(
                "settings.token_cache_entries",
                format!(
                    "with negative_cache_entries and max_token_bytes allows {} MiB of cached tokens per worker and cache; \
                     the limit is {} MiB: lower the entries or max_token_bytes",
                    cached >> 20,
                    MAX_CACHED_TOKEN_BYTES >> 20
                ),
            );
        }
        if doc.issuers.is_empty() {
            self.err("issuers", "is empty; add the authorization server that issues access tokens");
        }
        let issuers: Vec<Issuer> = doc.issuers.iter().enumerate().filter_map(|(i, d)| self.issuer(i, d)).collect();
        let mut ids = HashSet::new();
        for (i, d) in doc.issuers.iter().enumerate() {
            if !ids.insert(&d.id) {
                self.err(format!("issuers[{i}].id"), format!("issuer {:?} is defined twice", d.id));
            }
        }
        let partners = self.partners(&doc.partners);
        let clients =
            self.clients(&doc.clients, &partners, &doc.governance, &doc.sender_constraint.required_for_kinds, &issuers);
        // Workload identity looks clients up by SPIFFE ID on every such request: an index, not a scan.
        let workloads =
            clients.values().flat_map(|c| c.spiffe_ids.iter().map(move |id| (id.clone(), c.id.clone()))).collect();
        let dpop = doc.sender_constraint.dpop.as_ref().map(|d| self.dpop(d, env));
        let nonce_everywhere = doc
            .sender_constraint
            .dpop
            .as_ref()
            .and_then(|d| d.nonce.as_ref())
            .is_some_and(|n| n.required_on_all_routes);
        let routes = self.routes(&doc.routes, dpop.as_ref(), nonce_everywhere);
        let needs_consent = doc.routes.iter().any(|r| matches!(r.consent, RouteConsentDoc::Permissions(_)));
        let consent = self.consent(doc.consent.as_ref(), &issuers, needs_consent);
        let revocation = doc.revocation.as_ref().map(|r| self.revocation(r));
        self.governance(&doc.governance);
        Some(Policy {
            realm: doc.realm,
            max_token_bytes: s.max_token_bytes,
            token_cache_entries: s.token_cache_entries,
            negative_cache_entries: s.negative_cache_entries,
            signature_backend: s.signature_backend,
            mode: s.mode,
            audit_key,
            audit_log: s.audit_log,
            issuers,
            partners,
            clients,
            routes: routes?,
            consent,
            revocation,
            governance: doc.governance,
            dpop,
            workloads,
        })
    }

    fn issuer(&mut self, i: usize, d: &IssuerDoc) -> Option<Issuer> {
        let at = format!("issuers[{i}]");
        if d.id.is_empty() {
            self.err(format!("{at}.id"), "is empty; use the exact iss value of the authorization server");
        }
        if d.audiences.is_empty() || d.audiences.iter().any(String::is_empty) {
            self.err(format!("{at}.audiences"), "needs at least one non-empty audience (this API's identifier)");
        }
        self.skew(&at, d.clock_skew_seconds);
        let empty = JwkSet { keys: Vec::new() };
        let (jwks, remote_jwks) = match (&d.jwks, &d.remote_jwks) {
            (Some(jwks), None) => (jwks, None),
            (None, Some(r)) => (&empty, Some(self.remote_jwks(&at, r))),
            (Some(_), Some(_)) => {
                self.err(
                    format!("{at}.remote_jwks"),
                    "is set together with jwks; keep one: inline keys or the issuer's JWKS endpoint",
                );
                (&empty, None)
            }
            (None, None) => {
                self.err(format!("{at}.jwks"), "is missing; add inline keys (jwks) or remote_jwks (cluster and path)");
                (&empty, None)
            }
        };
        let (algorithms, keys) = if remote_jwks.is_some() {
            (self.algorithms(&at, &d.algorithms, d.allow_rs256), Vec::new())
        } else {
            self.signing(&at, &d.algorithms, d.allow_rs256, jwks)
        };
        Some(Issuer {
            id: d.id.clone(),
            audiences: d.audiences.clone(),
            algorithms,
            clock_skew: d.clock_skew_seconds,
            require_typ_at_jwt: d.require_typ_at_jwt,
            keys,
            remote_jwks,
        })
    }

    fn remote_jwks(&mut self, at: &str, d: &RemoteJwksDoc) -> RemoteJwks {
        let at = format!("{at}.remote_jwks");
        if d.cluster.is_empty() {
            self.err(format!("{at}.cluster"), "is empty; name the Envoy cluster that reaches the JWKS endpoint");
        }
        if !d.path.starts_with('/') {
            self.err(format!("{at}.path"), "must start with '/'");
        }
        if d.authority.is_empty() {
            self.err(format!("{at}.authority"), "is empty; use the JWKS endpoint's host name");
        }
        if !(1_000..=86_400_000).contains(&d.refresh_interval_ms) {
            self.err(
                format!("{at}.refresh_interval_ms"),
                format!("is {}; choose 1000 (1 s) to 86400000 (a day)", d.refresh_interval_ms),
            );
        }
        if !(500..=3_600_000).contains(&d.unknown_kid_refetch_min_interval_ms) {
            self.err(
                format!("{at}.unknown_kid_refetch_min_interval_ms"),
                format!(
                    "is {}; choose 500 to 3600000 (below 500 ms a kid flood becomes a fetch flood)",
                    d.unknown_kid_refetch_min_interval_ms
                ),
            );
        }
        if !(100..=30_000).contains(&d.timeout_ms) {
            self.err(format!("{at}.timeout_ms"), format!("is {}; choose 100 to 30000", d.timeout_ms));
        }
        let upstream = self.upstream(&at, &d.cluster, d.upstream.as_ref());
        RemoteJwks {
            upstream,
            cluster: d.cluster.clone(),
            path: d.path.clone(),
            authority: d.authority.clone(),
            refresh_interval_ms: d.refresh_interval_ms,
            unknown_kid_refetch_min_interval_ms: d.unknown_kid_refetch_min_interval_ms,
            timeout_ms: d.timeout_ms,
        }
    }

    fn skew(&mut self, at: &str, skew: i64) {
        if !(0..=MAX_CLOCK_SKEW).contains(&skew) {
            self.err(format!("{at}.clock_skew_seconds"), format!("is {skew}; choose 0 to {MAX_CLOCK_SKEW}"));
        }
    }

    /// An issuer's algorithm allowlist.
    fn algorithms(&mut self, at: &str, names: &[String], allow_rs256: bool) -> Vec<Alg> {
        let mut algorithms = Vec::new();
        if names.is_empty() {
            self.err(format!("{at}.algorithms"), "is empty; list ES256, PS256 or Ed25519");
        }
        for (j, name) in names.iter().enumerate() {
            match Alg::parse(name) {
                Some(Alg::RS256) if !allow_rs256 => self.err(
                    format!("{at}.algorithms[{j}]"),
                    "RS256 is not FAPI 2.0; set allow_rs256: true on the issuer to accept it knowingly",
                ),
                Some(a) => algorithms.push(a),
                None => self.err(
                    format!("{at}.algorithms[{j}]"),
                    format!(
                        "{name:?} is not allowed; use ES256, PS256 or Ed25519 (EdDSA also works; never none or HMAC)"
                    ),
                ),
            }
        }
        algorithms
    }

    /// An issuer's algorithm allowlist and keys (shared by token and consent issuers).
    fn signing(
        &mut self,
        at: &str,
        names: &[String],
        allow_rs256: bool,
        jwks: &JwkSet,
    ) -> (Vec<Alg>, Vec<VerificationKey>) {
        let algorithms = self.algorithms(at, names, allow_rs256);
        let mut keys: Vec<VerificationKey> = Vec::new();
        if jwks.keys.is_empty() {
            self.err(format!("{at}.jwks.keys"), "is empty; add the issuer's public signing keys");
        }
        for (j, jwk) in jwks.keys.iter().enumerate() {
            match jwk.to_key() {
                Ok(k) => {
                    if !algorithms.contains(&k.alg) {
                        self.err(
                            format!("{at}.jwks.keys[{j}]"),
                            format!("is a {} key but {} is not in {at}.algorithms", k.alg.name(), k.alg.name()),
                        );
                    }
                    if keys.iter().any(|o| o.kid == k.kid) {
                        self.err(
                            format!("{at}.jwks.keys[{j}].kid"),
                            format!("kid {:?} is used twice; key ids must be unique per issuer", k.kid),
                        );
                    }
                    keys.push(k);
                }
                Err(m) => self.err(format!("{at}.jwks.keys[{j}]"), m),
            }
        }
        (algorithms, keys)
    }

    /// The consent section. Consent issuers must be distinct from access-token issuers, by id and by
    /// key: a consent is the customer's word, and the party that issues the machine's tokens must not
    /// be able to mint it too (issuer confusion).
    fn consent(&mut self, doc: Option<&ConsentDoc>, issuers: &[Issuer], needed: bool) -> ConsentSettings {
        let Some(d) = doc else {
            if needed {
                self.err("consent", "is missing but routes require consent; add consent.issuers (the consent service) or access_token_claims");
            }
            return ConsentSettings { header: "x-consent".into(), ..ConsentSettings::default() };
        };
        let header = d.header.to_ascii_lowercase();
        if header.is_empty()
            || !header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || header == "authorization"
            || header.starts_with(IDENTITY_HEADER_PREFIX)
        {
            self.err(
                "consent.header",
                format!(
                    "{:?} is not a usable header name (letters, digits, '-'; not authorization or x-nhi-*)",
                    d.header
                ),
            );
        }
        let mut out = Vec::new();
        for (i, ci) in d.issuers.iter().enumerate() {
            let at = format!("consent.issuers[{i}]");
            if ci.id.is_empty() {
                self.err(format!("{at}.id"), "is empty; use the consent service's iss value");
            }
            if issuers.iter().any(|t| t.id == ci.id) {
                self.err(
                    format!("{at}.id"),
                    "is also an access-token issuer; consents must come from a distinct issuer",
                );
            }
            self.skew(&at, ci.clock_skew_seconds);
            let (algorithms, keys) = self.signing(&at, &ci.algorithms, false, &ci.jwks);
            for (j, k) in keys.iter().enumerate() {
                if issuers.iter().flat_map(|t| &t.keys).any(|t| t.spki_der == k.spki_der) {
                    self.err(
                        format!("{at}.jwks.keys[{j}]"),
                        "is also an access-token issuer key; consents need keys of their own",
                    );
                }
            }
            out.push(ConsentIssuer { id: ci.id.clone(), algorithms, clock_skew: ci.clock_skew_seconds, keys });
        }
        let access_token_details_type = d.access_token_claims.as_ref().map(|t| t.authorization_details_type.clone());
        if access_token_details_type.as_deref() == Some("") {
            self.err(
                "consent.access_token_claims.authorization_details_type",
                "is empty; name the authorization_details type that carries permissions",
            );
        }
        if needed && out.is_empty() && access_token_details_type.is_none() {
            self.err("consent", "has no source: add issuers (consent artefacts) or access_token_claims");
        }
        ConsentSettings {
            issuers: out,
            header,
            access_token_details_type,
            revoked: d.revoked.iter().cloned().collect(),
            accept_missing_status: d.accept_artefacts_without_status,
        }
    }

    fn revocation(&mut self, d: &RevocationDoc) -> RevocationFeed {
        if d.cluster.is_empty() {
            self.err("revocation.cluster", "is empty; name the Envoy cluster that serves the feed");
        }
        if !d.path.starts_with('/') {
            self.err("revocation.path", "must start with '/'");
        }
        if !(100..=60_000).contains(&d.poll_interval_ms) {
            self.err("revocation.poll_interval_ms", format!("is {}; choose 100 to 60000", d.poll_interval_ms));
        }
        if !(100..=30_000).contains(&d.timeout_ms) {
            self.err("revocation.timeout_ms", format!("is {}; choose 100 to 30000", d.timeout_ms));
        }
        let poll_seconds = i64::try_from(d.poll_interval_ms.div_ceil(1000)).unwrap_or(i64::MAX);
        if d.max_staleness_seconds < poll_seconds.saturating_mul(2) || d.max_staleness_seconds > 3600 {
            self.err(
                "revocation.max_staleness_seconds",
                format!(
                    "is {}; choose at least two poll intervals ({}) and at most 3600",
                    d.max_staleness_seconds,
                    poll_seconds.saturating_mul(2)
                ),
            );
        }
        let upstream = self.upstream("revocation", &d.cluster, d.upstream.as_ref());
        RevocationFeed {
            upstream,
            cluster: d.cluster.clone(),
            path: d.path.clone(),
            authority: d.authority.clone(),
            poll_interval_ms: d.poll_interval_ms,
            timeout_ms: d.timeout_ms,
            max_staleness: d.max_staleness_seconds,
        }
    }

    /// Governance numbers feed date arithmetic (review due dates, grace periods): keep them sane.
    fn governance(&mut self, g: &super::Governance) {
        let c = &g.review_cadence_days;
        for (field, days) in [
            ("partner", c.partner),
            ("partner_app", c.partner_app),
            ("service_account", c.service_account),
            ("batch_job", c.batch_job),
        ] {
            if !(1..=3650).contains(&days) {
                self.err(
                    format!("governance.review_cadence_days.{field}"),
                    format!("is {days}; choose 1 to 3650 days"),
                );
            }
        }
        let l = &g.max_token_lifetime_seconds;
        for (field, secs) in
            [("partner_app", l.partner_app), ("service_account", l.service_account), ("batch_job", l.batch_job)]
        {
            if !(1..=MAX_ROUTE_SECONDS).contains(&secs) {
                self.err(
                    format!("governance.max_token_lifetime_seconds.{field}"),
                    format!("is {secs}; choose 1 to {MAX_ROUTE_SECONDS}"),
                );
            }
        }
        if let Some(grace) = g.enforce_review_grace_days {
            if !(0..=365).contains(&grace) {
                self.err("governance.enforce_review_grace_days", format!("is {grace}; choose 0 to 365 days"));
            }
        }
        if !(1..=3650).contains(&g.max_registration_days) {
            self.err(
                "governance.max_registration_days",
                format!("is {}; choose 1 to 3650 days", g.max_registration_days),
            );
        }
    }

    fn partners(&mut self, docs: &[PartnerDoc]) -> HashMap<String, Partner> {
        let mut out = HashMap::new();
        for (i, d) in docs.iter().enumerate() {
            let at = format!("partners[{i}]");
            if d.id.is_empty() {
                self.err(format!("{at}.id"), "is empty");
            }
            self.required(format!("{at}.owner"), &d.owner, "partner");
            self.required(format!("{at}.purpose"), &d.purpose, "partner");
            let contract_end = self.time(format!("{at}.contract_end"), &d.contract_end);
            let last_reviewed = d.last_reviewed.as_ref().map(|t| self.time(format!("{at}.last_reviewed"), t));
            let p = Partner {
                id: d.id.clone(),
                owner: d.owner.clone(),
                purpose: d.purpose.clone(),
                status: d.status,
                contract_end,
                last_reviewed,
            };
            if out.insert(d.id.clone(), p).is_some() {
                self.err(format!("{at}.id"), format!("partner {:?} is defined twice", d.id));
            }
        }
        out
    }

    fn dpop(&mut self, d: &DpopDoc, env: &dyn Fn(&str) -> Option<String>) -> DpopSettings {
        let at = "sender_constraint.dpop";
        let origin = d.external_origin.trim_end_matches('/').to_ascii_lowercase();
        let host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
        if host.is_none_or(|h| h.is_empty() || h.contains(['/', '?', '#', ' ', '@'])) {
            self.err(
                format!("{at}.external_origin"),
                format!(
                    "{:?} is not an origin; write scheme and host only, e.g. \"https://api.bank.example\"",
                    d.external_origin
                ),
            );
        }
        let mut algorithms = Vec::new();
        for (j, name) in d.algorithms.iter().enumerate() {
            match Alg::parse(name) {
                // Ed25519 and EdDSA both listed: one algorithm.
                Some(a @ (Alg::ES256 | Alg::EdDSA | Alg::PS256)) if !algorithms.contains(&a) => algorithms.push(a),
                Some(Alg::ES256 | Alg::EdDSA | Alg::PS256) => {}
                _ => self.err(
                    format!("{at}.algorithms[{j}]"),
                    format!("{name:?} is not allowed for DPoP proofs; use ES256, Ed25519 or PS256 (asymmetric only)"),
                ),
            }
        }
        if d.algorithms.is_empty() {
            self.err(format!("{at}.algorithms"), "is empty; list ES256, Ed25519 or PS256");
        }
        if !(10..=300).contains(&d.iat_window_seconds) {
            self.err(format!("{at}.iat_window_seconds"), format!("is {}; choose 10 to 300", d.iat_window_seconds));
        }
        if !(16..=65_536).contains(&d.replay_cache_buckets) {
            self.err(
                format!("{at}.replay_cache_buckets"),
                format!("is {}; choose 16 to 65536 (each holds 64 proofs)", d.replay_cache_buckets),
            );
        }
        if !(512..=16_384).contains(&d.max_proof_bytes) {
            self.err(format!("{at}.max_proof_bytes"), format!("is {}; choose 512 to 16384", d.max_proof_bytes));
        }
        let nonce = d.nonce.as_ref().and_then(|n| self.dpop_nonce(&format!("{at}.nonce"), n, env));
        DpopSettings {
            nonce,
            algs_challenge: algorithms.iter().flat_map(|a| a.names()).copied().collect::<Vec<_>>().join(" "),
            external_origin: origin,
            algorithms,
            iat_window: d.iat_window_seconds,
            replay_cache_buckets: d.replay_cache_buckets,
            max_proof_bytes: d.max_proof_bytes,
        }
    }

    /// The nonce keys, from the VM environment (a secret never sits in the policy).
    fn dpop_nonce(&mut self, at: &str, n: &DpopNonceDoc, env: &dyn Fn(&str) -> Option<String>) -> Option<NonceKeys> {
        if !(10..=3600).contains(&n.window_seconds) {
            self.err(format!("{at}.window_seconds"), format!("is {}; choose 10 to 3600", n.window_seconds));
            return None;
        }
        let name = &n.key_env;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            self.err(format!("{at}.key_env"), format!("{name:?} is not an environment variable name"));
            return None;
        }
        let Some(value) = env(name).filter(|v| !v.is_empty()) else {
            self.err(
                format!("{at}.key_env"),
                format!(
                    "{name} is not set in the filter's environment; DPoP nonces need a key every Envoy shares \
                     (Envoy: vm_config.environment_variables.host_env_keys; Istio: vmConfig.env with valueFrom: \
                     HOST; Envoy Gateway: wasm env.hostKeys)"
                ),
            );
            return None;
        };
        match NonceKeys::parse(&value, n.window_seconds) {
            Ok(k) => Some(k),
            Err(m) => {
                self.err(format!("{at}.key_env"), format!("{name} {m}"));
                None
            }
        }
    }

    /// A client's pinned mTLS credentials: certificate thumbprints and SPIFFE IDs.
    fn pins(&mut self, at: &str, d: &ClientDoc, taken: &mut HashSet<String>) -> Vec<[u8; 32]> {
        let mut thumbprints = Vec::new();
        for (j, t) in d.certificate_thumbprints.iter().enumerate() {
            match crate::engine::base64url::decode(t.as_bytes()).and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                Some(b) => thumbprints.push(b),
                None => self.err(
                    format!("{at}.certificate_thumbprints[{j}]"),
                    "is not a SHA-256 thumbprint; write base64url without padding (43 characters), as in x5t#S256",
                ),
            }
        }
        for (j, id) in d.spiffe_ids.iter().enumerate() {
            let path = id.strip_prefix("spiffe://").and_then(|r| r.split_once('/'));
            if path.is_none_or(|(domain, p)| domain.is_empty() || p.is_empty())
                || !id.bytes().all(|b| b.is_ascii_graphic())
                || id.contains(['?', '#'])
            {
                self.err(
                    format!("{at}.spiffe_ids[{j}]"),
                    format!("{id:?} is not a SPIFFE ID; write spiffe://trust-domain/path"),
                );
            }
            if !taken.insert(id.clone()) {
                self.err(
                    format!("{at}.spiffe_ids[{j}]"),
                    format!("{id:?} is listed by two clients; a workload identity names one client"),
                );
            }
        }
        thumbprints
    }

    fn clients(
        &mut self,
        docs: &[ClientDoc],
        partners: &HashMap<String, Partner>,
        governance: &super::Governance,
        sender_constrained_kinds: &[ClientKind],
        issuers: &[Issuer],
    ) -> HashMap<String, Client> {
        let mut out = HashMap::new();
        let mut spiffe_ids = HashSet::new();
        for (i, d) in docs.iter().enumerate() {
            let at = format!("clients[{i}]");
            if d.id.is_empty() {
                self.err(format!("{at}.id"), "is empty; use the client_id its tokens carry");
            }
            self.required(format!("{at}.owner"), &d.owner, "client");
            self.required(format!("{at}.purpose"), &d.purpose, "client");
            match (d.kind, &d.partner) {
                (ClientKind::PartnerApp, None) => {
                    self.err(format!("{at}.partner"), "is missing; a partner_app must name the partner that owns it")
                }
                (ClientKind::PartnerApp, Some(p)) if !partners.contains_key(p) => self.err(
                    format!("{at}.partner"),
                    format!("partner {p:?} is not defined; add it to partners or fix the id"),
                ),
                (ClientKind::ServiceAccount | ClientKind::BatchJob, Some(_)) => self.err(
                    format!("{at}.partner"),
                    "internal identities (service_account, batch_job) have no partner; remove it or make the client a partner_app",
                ),
                _ => {}
            }
            self.scopes(&format!("{at}.scope_ceiling"), &d.scope_ceiling);
            let expires = self.time(format!("{at}.expires"), &d.expires);
            let last_reviewed = d.last_reviewed.as_ref().map(|t| self.time(format!("{at}.last_reviewed"), t));
            let cadence = governance.cadence_days(Some(d.kind)).saturating_mul(86_400);
            let review_due = last_reviewed.map(|t| t.saturating_add(cadence));
            let certificate_thumbprints = self.pins(&at, d, &mut spiffe_ids);
            let mut allowed_issuers = Vec::new();
            for (j, iss) in d.issuers.iter().enumerate() {
                match issuers.iter().position(|i| &i.id == iss) {
                    Some(n) => allowed_issuers.push(n),
                    None => self.err(
                        format!("{at}.issuers[{j}]"),
                        format!("{iss:?} is not an issuer in this policy; use an issuers[].id"),
                    ),
                }
            }
            let c = Client {
                issuers: allowed_issuers,
                certificate_thumbprints,
                spiffe_ids: d.spiffe_ids.clone(),
                require_sender_constraint: d.require_sender_constraint || sender_constrained_kinds.contains(&d.kind),
                id: d.id.clone(),
                kind: d.kind,
                partner: d.partner.clone(),
                owner: d.owner.clone(),
                purpose: d.purpose.clone(),
                expires,
                status: d.status,
                scope_ceiling: d.scope_ceiling.clone(),
                last_reviewed,
                review_due,
            };
            if out.insert(d.id.clone(), c).is_some() {
                self.err(format!("{at}.id"), format!("client {:?} is defined twice", d.id));
            }
        }
        out
    }

    fn routes(
        &mut self,
        docs: &[RouteDoc],
        dpop: Option<&DpopSettings>,
        nonce_everywhere: bool,
    ) -> Option<RouteTable<RouteRule>> {
        let mut entries = Vec::new();
        let mut ids = HashSet::new();
        for (i, d) in docs.iter().enumerate() {
            let at = format!("routes[{i}]");
            if d.id.is_empty() || !d.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                self.err(format!("{at}.id"), "must be non-empty letters, digits, '-' or '_' (it names metrics)");
            }
            if !ids.insert(&d.id) {
                self.err(format!("{at}.id"), format!("route {:?} is defined twice", d.id));
            }
            self.required(format!("{at}.owner"), &d.owner, "route");
            self.required(format!("{at}.purpose"), &d.purpose, "route");
            if d.methods.is_empty() {
                self.err(format!("{at}.methods"), "is empty; list the HTTP methods this route allows");
            }
            for (j, m) in d.methods.iter().enumerate() {
                if !METHODS.contains(&m.as_str()) {
                    self.err(format!("{at}.methods[{j}]"), format!("{m:?} is not one of {}", METHODS.join(", ")));
                }
            }
            if d.client_kinds.is_empty() {
                self.err(format!("{at}.client_kinds"), "is empty; name which kinds of client may call the route");
            }
            self.scopes(&format!("{at}.scopes"), &d.scopes);
            for (field, v) in [
                ("max_token_lifetime_seconds", d.max_token_lifetime_seconds),
                ("max_token_age_seconds", d.max_token_age_seconds),
            ] {
                if !(1..=MAX_ROUTE_SECONDS).contains(&v) {
                    self.err(
                        format!("{at}.{field}"),
                        format!("is {v}; choose 1 to {MAX_ROUTE_SECONDS} seconds (short-lived tokens)"),
                    );
                }
            }
            let template = match PathTemplate::parse(&d.path) {
                Ok(t) => t,
                Err(m) => {
                    self.err(format!("{at}.path"), format!("{:?} {m}", d.path));
                    continue;
                }
            };
            if d.accept_workload_identity && matches!(d.consent, RouteConsentDoc::Permissions(_)) {
                self.err(
                    format!("{at}.accept_workload_identity"),
                    "needs consent \"none\": a workload identity carries no customer, so it can never bring consent",
                );
            }
            let consent = match &d.consent {
                RouteConsentDoc::None => RouteConsent::None { refuse_customer_tokens: d.refuse_customer_tokens },
                RouteConsentDoc::Permissions(groups) => {
                    if d.refuse_customer_tokens {
                        self.err(
                            format!("{at}.refuse_customer_tokens"),
                            "only applies to routes with consent \"none\"",
                        );
                    }
                    if groups.is_empty() || groups.iter().any(|g| g.is_empty() || g.iter().any(String::is_empty)) {
                        self.err(format!("{at}.consent.permissions"), "needs at least one group, each with at least one permission; use \"none\" for machine-only routes");
                    }
                    RouteConsent::Permissions(groups.clone())
                }
            };
            if d.require_dpop_nonce && dpop.is_none_or(|p| p.nonce.is_none()) {
                self.err(
                    format!("{at}.require_dpop_nonce"),
                    "needs sender_constraint.dpop.nonce (its key_env names the nonce key); add it or drop the flag",
                );
            }
            let rule = RouteRule {
                require_dpop_nonce: d.require_dpop_nonce || nonce_everywhere,
                id: d.id.clone(),
                methods: d.methods.clone(),
                path: d.path.clone(),
                owner: d.owner.clone(),
                purpose: d.purpose.clone(),
                scope_string: d.scopes.join(" "),
                scopes: d.scopes.clone(),
                client_kinds: d.client_kinds.clone(),
                max_token_lifetime: d.max_token_lifetime_seconds,
                max_token_age: d.max_token_age_seconds,
                consent,
                require_fresh_revocation: d.require_fresh_revocation,
                dry_run: d.dry_run,
                require_sender_constraint: d.require_sender_constraint,
                accept_workload_identity: d.accept_workload_identity,
            };
            entries.push((template, d.methods.clone(), rule));
        }
        let names: Vec<String> = entries.iter().map(|(_, _, r)| r.id.clone()).collect();
        match RouteTable::build(entries) {
            Ok(t) => Some(t),
            Err((a, b)) => {
                let (a, b) = (names.get(a).cloned().unwrap_or_default(), names.get(b).cloned().unwrap_or_default());
                self.err(
                    "routes",
                    format!("routes {a:?} and {b:?} match the same method and path shape; merge them or change a path"),
                );
                None
            }
        }
    }
}
