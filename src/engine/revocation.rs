//! Live revocation: the feed document, the compiled snapshot every worker checks, and staleness.
//!
//! The feed (format ours, schema `policies/revocation.schema.json`) is fetched by one poller per
//! Envoy and published to shared data; each worker parses a version once and then answers lookups
//! from hash sets. Checks run after the verified-token cache, so a cached token is revoked at once.
//! Without a fresh snapshot (none yet, or older than the policy's bound) routes that need fresh
//! revocation data are refused: fail closed.

use crate::engine::jwt::VerifiedToken;
use crate::engine::policy::Policy;
use crate::engine::reason::Reason;
use crate::engine::timestamp::parse_rfc3339;
use serde::Deserialize;
use std::collections::HashSet;

/// The feed document as served.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationDocument {
    /// Editors' schema pointer; ignored.
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    /// Monotonically increasing; a document with a version not above the current one is ignored.
    pub version: u64,
    /// RFC 3339 instant the feed produced this document.
    pub produced_at: String,
    #[serde(default)]
    pub tokens: Vec<RevokedToken>,
    #[serde(default)]
    pub clients: Vec<String>,
    #[serde(default)]
    pub partners: Vec<RevokedPartner>,
    #[serde(default)]
    pub consents: Vec<String>,
    #[serde(default)]
    pub keys: Vec<RevokedKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedToken {
    pub iss: String,
    pub jti: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokedPartnerStatus {
    Suspended,
    Offboarded,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedPartner {
    pub id: String,
    pub status: RevokedPartnerStatus,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedKey {
    pub iss: String,
    pub kid: String,
}

/// A parsed feed version, ready for lookups.
#[derive(Debug, Default)]
pub struct RevocationSnapshot {
    pub version: u64,
    pub produced_at: i64,
    tokens: HashSet<(String, String)>,
    clients: HashSet<String>,
    suspended_partners: HashSet<String>,
    offboarded_partners: HashSet<String>,
    consents: HashSet<String>,
    keys: HashSet<(String, String)>,
}

/// Largest feed document accepted, in bytes (a feed that large is a bug or an attack).
pub const MAX_FEED_BYTES: usize = 4 << 20;

impl RevocationSnapshot {
    /// Parses a feed body. Errors say what is wrong (for the poller's log line and counter).
    pub fn parse(body: &[u8]) -> Result<RevocationSnapshot, String> {
        if body.len() > MAX_FEED_BYTES {
            return Err(format!("feed document is {} bytes; the limit is {MAX_FEED_BYTES}", body.len()));
        }
        let doc: RevocationDocument = serde_json::from_slice(body).map_err(|e| format!("feed document: {e}"))?;
        let produced_at = parse_rfc3339(&doc.produced_at).ok_or("feed document: produced_at is not RFC 3339")?;
        let mut s = RevocationSnapshot { version: doc.version, produced_at, ..RevocationSnapshot::default() };
        s.tokens = doc.tokens.into_iter().map(|t| (t.iss, t.jti)).collect();
        s.clients = doc.clients.into_iter().collect();
        for p in doc.partners {
            match p.status {
                RevokedPartnerStatus::Suspended => s.suspended_partners.insert(p.id),
                RevokedPartnerStatus::Offboarded => s.offboarded_partners.insert(p.id),
            };
        }
        s.consents = doc.consents.into_iter().collect();
        s.keys = doc.keys.into_iter().map(|k| (k.iss, k.kid)).collect();
        Ok(s)
    }

    /// Revocation of the token's own facts: its jti, its signing key, its client and the client's
    /// partner, and a delegated actor.
    pub fn check_token(&self, policy: &Policy, token: &VerifiedToken) -> Result<(), Reason> {
        let iss = policy.issuers.get(token.issuer).map_or("", |i| i.id.as_str());
        if self.keys.contains(&(iss.to_string(), token.kid.clone())) {
            return Err(Reason::KeyRevoked);
        }
        if self.tokens.contains(&(iss.to_string(), token.jti.clone())) {
            return Err(Reason::TokenRevoked);
        }
        for client in std::iter::once(token.client_id.as_str()).chain(token.actor()) {
            self.check_client(policy, client)?;
        }
        Ok(())
    }

    /// Revocation of a client, or of its partner.
    pub fn check_client(&self, policy: &Policy, client: &str) -> Result<(), Reason> {
        if self.clients.contains(client) {
            return Err(Reason::ClientRevoked);
        }
        let partner = policy.clients.get(client).and_then(|c| c.partner.as_deref());
        if let Some(p) = partner {
            if self.offboarded_partners.contains(p) {
                return Err(Reason::PartnerOffboarded);
            }
            if self.suspended_partners.contains(p) {
                return Err(Reason::PartnerSuspended);
            }
        }
        Ok(())
    }

    pub fn consent_revoked(&self, consent_id: &str) -> bool {
        self.consents.contains(consent_id)
    }

    /// A consent artefact's signing key revoked by the feed.
    pub fn key_revoked(&self, iss: &str, kid: &str) -> bool {
        self.keys.contains(&(iss.to_string(), kid.to_string()))
    }
}

/// What a worker knows of the feed: the snapshot it parsed and when the poller last heard from the feed.
#[derive(Debug, Default)]
pub struct RevocationState {
    pub snapshot: Option<RevocationSnapshot>,
    /// Unix seconds of the last successful fetch (200 or 304), as published by the poller.
    pub fetched_at: Option<i64>,
}

impl RevocationState {
    /// The snapshot if it is fresh enough under `max_staleness` seconds; `RevocationStale` otherwise.
    pub fn fresh(&self, now: i64, max_staleness: i64) -> Result<&RevocationSnapshot, Reason> {
        match (&self.snapshot, self.fetched_at) {
            (Some(s), Some(t)) if now.saturating_sub(t) <= max_staleness => Ok(s),
            _ => Err(Reason::RevocationStale),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn parses_a_feed_and_refuses_a_malformed_one() {
        let doc = br#"{"version": 7, "produced_at": "2026-11-24T07:00:00Z", "tokens": [{"iss": "i", "jti": "j"}],
            "clients": ["c"], "partners": [{"id": "p", "status": "offboarded"}], "consents": ["aac-1"],
            "keys": [{"iss": "i", "kid": "k"}]}"#;
        let s = RevocationSnapshot::parse(doc).unwrap();
        assert_eq!(s.version, 7);
        assert!(s.consent_revoked("aac-1") && !s.consent_revoked("aac-2"));
        assert!(s.key_revoked("i", "k"));
        for bad in [
            &b"{}"[..],
            b"not json",
            br#"{"version": 1, "produced_at": "yesterday"}"#,
            br#"{"version": -1, "produced_at": "2026-11-24T07:00:00Z"}"#,
            br#"{"version": 1, "produced_at": "2026-11-24T07:00:00Z", "extra": 1}"#,
        ] {
            assert!(RevocationSnapshot::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(RevocationSnapshot::parse(&vec![b' '; MAX_FEED_BYTES + 1]).is_err());
    }

    #[test]
    fn the_shipped_example_feed_parses() {
        let s = RevocationSnapshot::parse(include_bytes!("../../policies/revocation-example.json")).unwrap();
        assert_eq!(s.version, 42);
        assert!(s.consent_revoked("aac-revoked-7d1e"));
    }

    #[test]
    fn staleness_fails_closed() {
        let mut st = RevocationState::default();
        assert_eq!(st.fresh(100, 10).err(), Some(Reason::RevocationStale), "nothing fetched yet");
        st.fetched_at = Some(95);
        assert_eq!(st.fresh(100, 10).err(), Some(Reason::RevocationStale), "a fetch time but no document");
        st.snapshot = Some(RevocationSnapshot::default());
        assert!(st.fresh(100, 10).is_ok());
        assert!(st.fresh(105, 10).is_ok());
        assert_eq!(st.fresh(106, 10).err(), Some(Reason::RevocationStale));
    }
}
