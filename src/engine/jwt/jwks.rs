//! Keys fetched from an issuer's JWKS endpoint: the document's validation and this worker's copy.
//!
//! The poller (the filter shell) fetches, validates and publishes each remote issuer's JWKS with a
//! generation; every worker takes a new generation into its `KeyStore`, parsed once. A worker that
//! meets a `kid` its issuer does not list asks (rate-limited) for an early refetch. Keys that leave
//! the JWKS stop verifying when the worker takes the new generation: the engine then drops its
//! verified-token caches, so a token signed by a removed key cannot live on in a cache.

use crate::engine::keys::{Jwk, VerificationKey};
use crate::engine::policy::{Issuer, Policy};
use serde::Deserialize;

/// Largest JWKS document accepted. Real ones are a few KiB; a huge one is an error or an attack.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Most keys accepted from one JWKS (a rotation overlap needs two or three).
pub const MAX_JWKS_KEYS: usize = 32;

#[derive(Deserialize)]
struct FetchedSet {
    keys: Vec<serde_json::Value>,
}

/// What a fetched JWKS yields: the keys this issuer can use, and how many were set aside.
#[derive(Debug)]
pub struct FetchedKeys {
    pub keys: Vec<VerificationKey>,
    /// Keys skipped because they are not for this issuer's use: encryption keys, key types or
    /// algorithms the issuer's allowlist does not name. Reported, not fatal: real JWKS carry them.
    pub skipped: usize,
}

/// Validates a fetched JWKS for `issuer`. The document is refused whole (and the last good keys
/// kept) when it is oversized or malformed, holds private key material, a duplicated `kid` or a
/// consent issuer's key (consents need keys of their own, also when token keys move), or has no
/// usable key at all; keys that merely do not fit the issuer are skipped. The poller runs this
/// before it publishes, and each worker again when it takes the document.
pub fn parse_fetched(body: &[u8], policy: &Policy, issuer: &Issuer) -> Result<FetchedKeys, String> {
    if body.len() > MAX_JWKS_BYTES {
        return Err(format!("JWKS is {} bytes; more than {MAX_JWKS_BYTES} is refused", body.len()));
    }
    let set: FetchedSet = serde_json::from_slice(body).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
    if set.keys.len() > MAX_JWKS_KEYS {
        return Err(format!("JWKS holds {} keys; more than {MAX_JWKS_KEYS} is refused", set.keys.len()));
    }
    let mut keys: Vec<VerificationKey> = Vec::new();
    let mut skipped: usize = 0;
    for (i, value) in set.keys.into_iter().enumerate() {
        let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("keys[{i}] is not a JWK: {e}"))?;
        if jwk.d.is_some() || jwk.p.is_some() || jwk.q.is_some() {
            return Err(format!("keys[{i}] holds private key material; refusing the whole document"));
        }
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            skipped = skipped.saturating_add(1);
            continue;
        }
        let key = match jwk.to_key() {
            Ok(k) if issuer.algorithms.contains(&k.alg) => k,
            // Unsupported types, RSA keys without a pinned alg, algorithms this issuer does not allow.
            _ => {
                skipped = skipped.saturating_add(1);
                continue;
            }
        };
        if keys.iter().any(|k| k.kid == key.kid) {
            return Err(format!("kid {:?} appears twice; a kid must name one key", key.kid));
        }
        if policy.consent.issuers.iter().flat_map(|c| &c.keys).any(|c| c.spki_der == key.spki_der) {
            return Err(format!("kid {:?} is a consent-issuer key; refusing the whole document", key.kid));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(format!("JWKS has no key usable for {} ({skipped} skipped)", issuer.id));
    }
    Ok(FetchedKeys { keys, skipped })
}

/// A 64-bit FNV-1a fingerprint of a document: the JWKS generation the poller publishes (and the
/// echo server's ETag). A change detector, not a security check: documents are validated.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// This worker's keys for the issuers that fetch theirs, indexed like `Policy::issuers`.
pub struct KeyStore {
    remote: Vec<Option<RemoteKeys>>,
}

struct RemoteKeys {
    /// The generation taken last (`None`: nothing fetched yet: fail closed).
    generation: Option<u64>,
    keys: Vec<VerificationKey>,
    /// A token named a kid we lack (or keys are missing): ask the poller to refetch.
    wants_refetch: bool,
    /// When this worker last asked, in Unix ms, for its own rate limit.
    last_request_ms: Option<i64>,
}

/// The keys an issuer verifies with right now.
pub enum IssuerKeys<'a> {
    Known(&'a [VerificationKey]),
    /// A remote issuer whose JWKS has not arrived yet.
    NotFetched,
}

impl KeyStore {
    pub fn new(policy: &Policy) -> Self {
        let remote = policy
            .issuers
            .iter()
            .map(|i| {
                i.remote_jwks.as_ref().map(|_| RemoteKeys {
                    generation: None,
                    keys: Vec::new(),
                    wants_refetch: false,
                    last_request_ms: None,
                })
            })
            .collect();
        KeyStore { remote }
    }

    pub fn keys<'a>(&'a self, issuer_index: usize, issuer: &'a Issuer) -> IssuerKeys<'a> {
        match self.remote.get(issuer_index) {
            Some(Some(r)) if r.generation.is_none() => IssuerKeys::NotFetched,
            Some(Some(r)) => IssuerKeys::Known(&r.keys),
            _ => IssuerKeys::Known(&issuer.keys),
        }
    }

    /// Notes that a token of this issuer needed a key we do not hold. No-op for inline issuers:
    /// their keys change only with the policy.
    pub fn key_missing(&mut self, issuer_index: usize) {
        if let Some(Some(r)) = self.remote.get_mut(issuer_index) {
            r.wants_refetch = true;
        }
    }

    /// The generation this worker holds for a remote issuer.
    pub fn generation(&self, issuer_index: usize) -> Option<u64> {
        self.remote.get(issuer_index).and_then(|r| r.as_ref()).and_then(|r| r.generation)
    }

    /// Takes a newly published generation. Returns `Ok(true)` when a key this worker held is gone
    /// or changed (so outcomes judged with it must be forgotten); keys only added return `Ok(false)`.
    pub fn take(&mut self, policy: &Policy, issuer_index: usize, generation: u64, body: &[u8]) -> Result<bool, String> {
        let (Some(Some(r)), Some(issuer)) = (self.remote.get_mut(issuer_index), policy.issuers.get(issuer_index))
        else {
            return Err(format!("issuer #{issuer_index} has no remote JWKS"));
        };
        if r.generation == Some(generation) {
            return Ok(false);
        }
        let fetched = parse_fetched(body, policy, issuer)?;
        let removed = r.keys.iter().any(|old| {
            !fetched.keys.iter().any(|new| new.kid == old.kid && new.alg == old.alg && new.spki_der == old.spki_der)
        });
        r.keys = fetched.keys;
        r.generation = Some(generation);
        Ok(removed)
    }

    /// Calls `ask` for each issuer this worker should ask the poller to refetch now, at most once
    /// per issuer per `unknown_kid_refetch_min_interval_ms`. The flags are cleared by the ask.
    /// Runs per request: without a pending miss it is one pass over a short list, no allocation.
    pub fn refetch_requests(&mut self, policy: &Policy, now_ms: i64, mut ask: impl FnMut(usize, &Issuer)) {
        for (i, slot) in self.remote.iter_mut().enumerate() {
            if !slot.as_ref().is_some_and(|r| r.wants_refetch) {
                continue;
            }
            let (Some(r), Some(remote)) = (slot, policy.issuers.get(i).and_then(|x| x.remote_jwks.as_ref())) else {
                continue;
            };
            let min = i64::try_from(remote.unknown_kid_refetch_min_interval_ms).unwrap_or(i64::MAX);
            if r.wants_refetch && r.last_request_ms.is_none_or(|t| now_ms.saturating_sub(t) >= min) {
                r.wants_refetch = false;
                r.last_request_ms = Some(now_ms);
                if let Some(issuer) = policy.issuers.get(i) {
                    ask(i, issuer);
                }
            }
        }
    }
}
