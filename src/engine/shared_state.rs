//! What the workers of one Envoy share about a fetched source (the revocation feed, an issuer's
//! JWKS): the names of its shared-data entries, the status record, and the poll lease.
//!
//! Entries are named after the *source* (cluster, authority, path; and the issuer for a JWKS), not
//! after the plugin or the policy. So two plugins with different feeds never read each other's
//! state, even in one VM (Istio gives every `WasmPlugin` the same empty `vm_id`); and a policy
//! update that keeps its sources finds their state in place: no route goes stale because of it.
//!
//! One worker per Envoy polls a source: whoever holds its lease. The lease is a 16-byte record
//! (holder, expiry) updated by compare-and-swap; the holder renews it on every tick, releases it
//! when its plugin goes away, and anyone may take it once it has expired. Pure: the filter shell
//! does the reads and writes.

use crate::engine::jwt::jwks::fingerprint;
use crate::engine::policy::{RemoteJwks, RevocationFeed};

/// How long a lease lasts without renewal. The holder renews it every tick (100 ms), so this is
/// the longest a source goes unpolled when its holder dies without releasing it (a VM crash).
pub const LEASE_MS: i64 = 2_000;

/// The shared-data entries of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceKeys {
    /// Who polls it: holder id and lease expiry.
    pub lease: String,
    /// Version or generation of the published document, and when it was last confirmed.
    pub status: String,
    /// The last good document.
    pub document: String,
    /// Workers ask for an early fetch here (a token named a key the JWKS lacks).
    pub refetch: String,
}

impl SourceKeys {
    fn named(kind: &str, identity: &[&str]) -> SourceKeys {
        let ns = format!("nhi_guard.{kind}.{:016x}", fingerprint(identity.join("\n").as_bytes()));
        SourceKeys {
            lease: format!("{ns}.lease"),
            status: format!("{ns}.status"),
            document: format!("{ns}.document"),
            refetch: format!("{ns}.refetch"),
        }
    }

    pub fn feed(feed: &RevocationFeed) -> SourceKeys {
        SourceKeys::named("feed", &[&feed.cluster, &feed.authority, &feed.path])
    }

    /// One issuer's JWKS. The issuer is part of the name: its keys are validated for it.
    pub fn jwks(iss: &str, remote: &RemoteJwks) -> SourceKeys {
        SourceKeys::named("jwks", &[iss, &remote.cluster, &remote.authority, &remote.path])
    }
}

/// The record a poller publishes on every successful fetch: the document's version (feed) or
/// generation (JWKS) and the fetch time in Unix seconds. Workers read it and fetch the document
/// only when the version changed.
pub fn encode_status(version: u64, fetched_at: i64) -> [u8; 16] {
    encode_pair(version, fetched_at)
}

pub fn decode_status(bytes: &[u8]) -> Option<(u64, i64)> {
    decode_pair(bytes)
}

fn encode_pair(a: u64, b: i64) -> [u8; 16] {
    let mut out = [0u8; 16];
    let (first, second) = out.split_at_mut(8);
    first.copy_from_slice(&a.to_le_bytes());
    second.copy_from_slice(&b.to_le_bytes());
    out
}

fn decode_pair(bytes: &[u8]) -> Option<(u64, i64)> {
    let a = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let b = i64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((a, b))
}

/// The lease value `me` should write now (compare-and-swap against what was read), or `None`
/// when another live holder has it. Taking a free or expired lease and renewing one's own look
/// the same: both write (me, now + LEASE_MS).
pub fn claim_lease(current: Option<&[u8]>, me: u64, now_ms: i64) -> Option<[u8; 16]> {
    let free = match current.and_then(decode_pair) {
        None => true,
        Some((holder, expires_ms)) => holder == me || expires_ms <= now_ms,
    };
    free.then(|| encode_pair(me, now_ms.saturating_add(LEASE_MS)))
}

/// The value that gives the lease up, if `me` holds it (so a successor need not wait it out).
pub fn release_lease(current: Option<&[u8]>, me: u64) -> Option<[u8; 16]> {
    match current.and_then(decode_pair) {
        Some((holder, _)) if holder == me => Some(encode_pair(0, 0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn feed(cluster: &str, path: &str) -> RevocationFeed {
        RevocationFeed {
            cluster: cluster.into(),
            path: path.into(),
            authority: "feed".into(),
            poll_interval_ms: 1000,
            timeout_ms: 2000,
            max_staleness: 10,
            upstream: None,
        }
    }

    #[test]
    fn sources_not_policies_name_the_entries() {
        let a = SourceKeys::feed(&feed("bank_feed", "/feed.json"));
        assert_eq!(a, SourceKeys::feed(&RevocationFeed { poll_interval_ms: 5000, ..feed("bank_feed", "/feed.json") }));
        let b = SourceKeys::feed(&feed("bank_feed", "/other.json"));
        let c = SourceKeys::feed(&feed("other_feed", "/feed.json"));
        for other in [&b, &c] {
            assert_ne!(a.status, other.status);
            assert_ne!(a.lease, other.lease);
            assert_ne!(a.document, other.document);
        }
        assert!(a.status.starts_with("nhi_guard.feed.") && a.lease.ends_with(".lease"));
    }

    #[test]
    fn a_jwks_is_named_by_its_issuer_too() {
        let remote = RemoteJwks {
            cluster: "sts".into(),
            path: "/jwks".into(),
            authority: "sts".into(),
            refresh_interval_ms: 60_000,
            unknown_kid_refetch_min_interval_ms: 1000,
            timeout_ms: 2000,
            upstream: None,
        };
        assert_ne!(SourceKeys::jwks("https://a", &remote).document, SourceKeys::jwks("https://b", &remote).document);
        assert!(SourceKeys::jwks("https://a", &remote).refetch.starts_with("nhi_guard.jwks."));
    }

    #[test]
    fn status_round_trips() {
        assert_eq!(decode_status(&encode_status(42, 1_795_478_400)), Some((42, 1_795_478_400)));
        assert_eq!(decode_status(&[1, 2, 3]), None);
    }

    #[test]
    fn one_holder_at_a_time_until_it_lapses_or_lets_go() {
        let (a, b) = (11, 22);
        let taken = claim_lease(None, a, 1_000).unwrap();
        assert_eq!(claim_lease(Some(&taken), b, 1_500), None, "held by a");
        let renewed = claim_lease(Some(&taken), a, 2_900).unwrap();
        assert_eq!(claim_lease(Some(&renewed), b, 1_000 + LEASE_MS), None, "a renewed it");
        // a stops renewing (its worker died mid-fetch): b takes over once the lease lapses.
        let lapsed_at = 2_900 + LEASE_MS;
        assert_eq!(claim_lease(Some(&renewed), b, lapsed_at - 1), None);
        let by_b = claim_lease(Some(&renewed), b, lapsed_at).unwrap();
        assert_eq!(claim_lease(Some(&by_b), a, lapsed_at + 1), None, "now b holds it");
        // b's plugin goes away: it lets go, and a can take it at once.
        assert_eq!(release_lease(Some(&by_b), a), None, "only the holder can release");
        let free = release_lease(Some(&by_b), b).unwrap();
        assert!(claim_lease(Some(&free), a, lapsed_at + 2).is_some());
        // Garbage in the entry counts as free rather than wedging the source forever.
        assert!(claim_lease(Some(&[1, 2, 3]), a, 0).is_some());
    }
}
