//! A bounded, per-worker cache of token outcomes, keyed by the exact token text.
//!
//! Used twice: for verified tokens (a repeated token skips parsing and the signature) and for
//! tokens whose signature failed (replaying one forged token costs a lookup, not a verify).
//! Entries never answer past their `until` time; when full, the oldest insertion goes first (FIFO),
//! which is O(1) and good enough because entries are short-lived anyway. Every key sits once in
//! the map and once in the FIFO: an expired entry stays until it is refreshed in place or evicted,
//! so a token seen again after expiry (a replayed forgery, once a minute) costs no extra memory.

use super::verifier::SignatureVerifier;
use crate::engine::keys::VerificationKey;
use crate::engine::reason::Reason;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::rc::Rc;

/// A fixed-key hasher: no randomness source is needed in the VM. Lookups still compare the full
/// token, so a hash collision can cost time but never returns another token's outcome.
type FixedHasher = BuildHasherDefault<DefaultHasher>;

pub struct TokenCache<V> {
    map: HashMap<Rc<str>, (V, i64), FixedHasher>,
    order: VecDeque<Rc<str>>,
    capacity: usize,
}

impl<V: Clone> TokenCache<V> {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            map: HashMap::with_capacity_and_hasher(capacity.min(1 << 16), FixedHasher::default()),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity,
        }
    }

    /// The cached value if present and `now < until`.
    pub fn get(&mut self, token: &str, now: i64) -> Option<V> {
        match self.map.get(token) {
            Some((v, until)) if now < *until => Some(v.clone()),
            _ => None,
        }
    }

    /// Stores `value` until `until` (Unix seconds). A zero-capacity cache stores nothing.
    pub fn insert(&mut self, token: &str, value: V, until: i64) {
        if self.capacity == 0 {
            return;
        }
        // Seen before (expired, say): refresh in place, keeping its place in the FIFO.
        if let Some(slot) = self.map.get_mut(token) {
            *slot = (value, until);
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        let key: Rc<str> = Rc::from(token);
        self.map.insert(key.clone(), (value, until));
        self.order.push_back(key);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}

/// How long a forged JWS's failure is remembered (its own `exp` is attacker-chosen).
pub const FORGED_TTL: i64 = 60;

/// The two caches one kind of JWS needs (verified outcomes, and signature failures) and the
/// signature step that fills them. Shared by access tokens and consent artefacts.
pub struct JwsCaches<V> {
    verified: TokenCache<Rc<V>>,
    forged: TokenCache<Reason>,
}

/// What a cache lookup found.
pub enum Cached<V> {
    Verified(Rc<V>),
    Forged(Reason),
    Miss,
}

impl<V> JwsCaches<V> {
    pub fn new(verified: usize, forged: usize) -> Self {
        JwsCaches { verified: TokenCache::new(verified), forged: TokenCache::new(forged) }
    }

    pub fn lookup(&mut self, text: &str, now: i64) -> Cached<V> {
        if let Some(hit) = self.verified.get(text, now) {
            return Cached::Verified(hit);
        }
        match self.forged.get(text, now) {
            Some(reason) => Cached::Forged(reason),
            None => Cached::Miss,
        }
    }

    /// Checks the signature; a good JWS is remembered as `value` until `until`, a forged one as
    /// `forged` for `FORGED_TTL`. A verifier that cannot answer fails closed.
    #[allow(clippy::too_many_arguments)]
    pub fn verify(
        &mut self,
        text: &str,
        (key, signing_input, signature): (&VerificationKey, &str, &[u8]),
        verifier: &dyn SignatureVerifier,
        value: V,
        until: i64,
        forged: Reason,
        now: i64,
    ) -> Result<Rc<V>, Reason> {
        match verifier.verify(key, signing_input.as_bytes(), signature) {
            Ok(true) => {
                let rc = Rc::new(value);
                self.verified.insert(text, rc.clone(), until);
                Ok(rc)
            }
            Ok(false) => {
                self.forged.insert(text, forged, now.saturating_add(FORGED_TTL));
                Err(forged)
            }
            Err(_) => Err(Reason::VerifierError),
        }
    }

    pub fn verified_len(&self) -> usize {
        self.verified.len()
    }

    /// Forgets every outcome: the keys they were judged with have changed.
    pub fn clear(&mut self) {
        self.verified.clear();
        self.forged.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn entries_never_outlive_their_time() {
        let mut c = TokenCache::new(4);
        c.insert("a", 1, 100);
        assert_eq!(c.get("a", 99), Some(1));
        assert_eq!(c.get("a", 100), None, "never past its time");
        // Seen again after expiry (a forgery replayed once a minute): refreshed in place, no new slot.
        c.insert("a", 2, 200);
        assert_eq!((c.len(), c.order.len()), (1, 1));
        assert_eq!(c.get("a", 150), Some(2));
    }

    #[test]
    fn stays_within_capacity_evicting_oldest_first() {
        let mut c = TokenCache::new(3);
        for (i, t) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            c.insert(t, i, 1000);
            assert!(c.len() <= 3);
        }
        assert_eq!(c.get("a", 0), None);
        assert_eq!(c.get("b", 0), None);
        assert_eq!(c.get("e", 0), Some(4));
        let mut big = TokenCache::new(100);
        for i in 0..10_000 {
            big.insert(&format!("t{i}"), i, if i % 2 == 0 { 1 } else { 1000 });
            let _ = big.get(&format!("t{}", i / 2), 5);
        }
        assert!(big.len() <= 100);
        assert_eq!(big.order.len(), big.len(), "every key once in the FIFO, no backlog");
        // The same 50 tokens expiring and coming back, over and over: memory stays put.
        let mut churn = TokenCache::new(64);
        for round in 0..100 {
            for i in 0..50 {
                let t = format!("forged-{i}");
                if churn.get(&t, round * 100).is_none() {
                    churn.insert(&t, i, round * 100 + 60);
                }
            }
        }
        assert_eq!((churn.len(), churn.order.len()), (50, 50));
    }

    #[test]
    fn zero_capacity_disables_caching() {
        let mut c = TokenCache::new(0);
        c.insert("a", 1, 1000);
        assert_eq!(c.get("a", 0), None);
    }

    #[test]
    fn only_the_exact_token_hits() {
        let mut c = TokenCache::new(8);
        c.insert("aaa.bbb.ccc", 1, 1000);
        assert_eq!(c.get("aaa.bbb.cc", 0), None);
        assert_eq!(c.get("aaa.bbb.ccc ", 0), None);
        assert_eq!(c.get("aaa.bbb.ccc", 0), Some(1));
    }
}
