//! DPoP server nonces (RFC 9449 §8-9): minted by the filter, accepted by every worker of every
//! Envoy that holds the same key, with no shared state.
//!
//! A nonce is `base64url(window || HMAC-SHA256(key, label || window)[..16])`, where `window` is
//! `now / window_seconds` as 8 big-endian bytes. It is accepted while its window is the current
//! one, the one before (so it lives between one and two windows), or the one after (a peer Envoy
//! whose clock runs a little ahead minted it). Key rotation: the environment variable holds up to
//! four keys separated by commas; the first mints, all verify, so a new key is rolled out second,
//! promoted to first once every Envoy has it, and the old one dropped a window later.

use crate::engine::base64url;
use crate::engine::reason::Reason;

/// Domain separation: these MACs can never be mistaken for another use of the same key.
const LABEL: &[u8] = b"nhi-guard dpop-nonce v1\n";
const MAC_BYTES: usize = 16;
/// 8 window bytes + 16 MAC bytes, base64url: 32 characters.
const NONCE_CHARS: usize = 32;
/// Shortest key accepted, in bytes (HMAC-SHA256 gains nothing above 64).
pub const MIN_KEY_BYTES: usize = 32;
pub const MAX_KEYS: usize = 4;

/// The nonce keys and window, compiled from `sender_constraint.dpop.nonce`.
#[derive(Clone)]
pub struct NonceKeys {
    /// The first key mints; every key verifies.
    keys: Vec<Vec<u8>>,
    window_seconds: i64,
}

impl std::fmt::Debug for NonceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("NonceKeys")
            .field("keys", &self.keys.len())
            .field("window_seconds", &self.window_seconds)
            .finish()
    }
}

/// How a valid nonce stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceFreshness {
    /// Minted in the current window with the current key: nothing to do.
    Current,
    /// Still accepted, but the client should move to the next one (the response carries it).
    RotationDue,
}

impl NonceKeys {
    /// Parses the environment variable's value: keys separated by commas, each at least
    /// `MIN_KEY_BYTES` long. The error says what to fix.
    pub fn parse(value: &str, window_seconds: i64) -> Result<NonceKeys, String> {
        let keys: Vec<Vec<u8>> = value.split(',').map(|k| k.trim().as_bytes().to_vec()).collect();
        if keys.len() > MAX_KEYS {
            return Err(format!("holds {} keys; keep at most {MAX_KEYS} (the current one first)", keys.len()));
        }
        if let Some(i) = keys.iter().position(|k| k.len() < MIN_KEY_BYTES) {
            return Err(format!(
                "key {} is shorter than {MIN_KEY_BYTES} bytes; use e.g. `openssl rand -base64 48`",
                i.saturating_add(1)
            ));
        }
        if window_seconds <= 0 {
            return Err(format!("window of {window_seconds} s; choose a positive one"));
        }
        Ok(NonceKeys { keys, window_seconds })
    }

    pub fn window_seconds(&self) -> i64 {
        self.window_seconds
    }

    fn window(&self, now: i64) -> i64 {
        now.div_euclid(self.window_seconds)
    }

    fn mac(key: &[u8], window: i64) -> [u8; 32] {
        let mut input = [0u8; LABEL.len() + 8];
        let (label, w) = input.split_at_mut(LABEL.len());
        label.copy_from_slice(LABEL);
        w.copy_from_slice(&window.to_be_bytes());
        hmac_sha256::HMAC::mac(input, key)
    }

    /// The nonce for the window `now` falls in, minted with the current key.
    pub fn mint(&self, now: i64) -> String {
        let window = self.window(now);
        let mut raw = [0u8; 8 + MAC_BYTES];
        let (w, m) = raw.split_at_mut(8);
        w.copy_from_slice(&window.to_be_bytes());
        let mac = self.keys.first().map(|k| Self::mac(k, window)).unwrap_or_default();
        m.copy_from_slice(mac.get(..MAC_BYTES).unwrap_or(&[0u8; MAC_BYTES]));
        base64url::encode(&raw)
    }

    /// Checks a proof's `nonce` claim: `DpopNonceMissing` without one, `DpopNonceInvalid` for one
    /// that is malformed, expired, from the future or minted with a key this policy lacks.
    pub fn check(&self, nonce: Option<&str>, now: i64) -> Result<NonceFreshness, Reason> {
        let nonce = nonce.ok_or(Reason::DpopNonceMissing)?;
        if nonce.len() != NONCE_CHARS {
            return Err(Reason::DpopNonceInvalid);
        }
        let raw = base64url::decode(nonce.as_bytes()).ok_or(Reason::DpopNonceInvalid)?;
        let (w, mac) = raw.split_at_checked(8).ok_or(Reason::DpopNonceInvalid)?;
        let window = i64::from_be_bytes(w.try_into().map_err(|_| Reason::DpopNonceInvalid)?);
        let current = self.window(now);
        let age = current.checked_sub(window).ok_or(Reason::DpopNonceInvalid)?;
        if !(-1..=1).contains(&age) {
            return Err(Reason::DpopNonceInvalid);
        }
        let signer = self
            .keys
            .iter()
            .position(|k| constant_time_eq(Self::mac(k, window).get(..MAC_BYTES).unwrap_or_default(), mac))
            .ok_or(Reason::DpopNonceInvalid)?;
        Ok(if age == 1 || signer != 0 { NonceFreshness::RotationDue } else { NonceFreshness::Current })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const KEY_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const KEY_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn keys(value: &str) -> NonceKeys {
        NonceKeys::parse(value, 60).unwrap()
    }

    #[test]
    fn a_nonce_lives_one_to_two_windows_and_is_due_for_rotation_in_the_second() {
        let k = keys(KEY_A);
        let t = 1_800_000_020 - 20; // the start of a window (a multiple of 60)
        let n = k.mint(t);
        assert_eq!(n.len(), NONCE_CHARS);
        assert!(n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "NQCHAR-safe: {n}");
        assert_eq!(k.mint(t + 59), n, "the same nonce all window long");
        assert_eq!(k.check(Some(&n), t + 59), Ok(NonceFreshness::Current));
        assert_eq!(k.check(Some(&n), t + 60), Ok(NonceFreshness::RotationDue));
        assert_eq!(k.check(Some(&n), t + 119), Ok(NonceFreshness::RotationDue));
        assert_eq!(k.check(Some(&n), t + 120), Err(Reason::DpopNonceInvalid), "expired");
        assert_eq!(k.check(Some(&n), t - 1), Ok(NonceFreshness::Current), "a peer whose clock is ahead minted it");
        assert_eq!(k.check(Some(&n), t - 61), Err(Reason::DpopNonceInvalid), "too far in the future");
        assert_ne!(k.mint(t + 60), n);
    }

    #[test]
    fn missing_malformed_and_foreign_nonces_are_refused() {
        let (a, b) = (keys(KEY_A), keys(KEY_B));
        let now = 1_800_000_000;
        assert_eq!(a.check(None, now), Err(Reason::DpopNonceMissing));
        for bad in ["", "x", "not a nonce at all, nor base64url!", &"A".repeat(32), &"A".repeat(4096)] {
            assert_eq!(a.check(Some(bad), now), Err(Reason::DpopNonceInvalid), "{bad:?}");
        }
        assert_eq!(a.check(Some(&b.mint(now)), now), Err(Reason::DpopNonceInvalid), "another key's nonce");
        // A flipped MAC bit, and a window moved without the MAC.
        let n = a.mint(now);
        let mut raw = base64url::decode(n.as_bytes()).unwrap();
        raw[20] ^= 1;
        assert_eq!(a.check(Some(&base64url::encode(&raw)), now), Err(Reason::DpopNonceInvalid));
        let mut raw = base64url::decode(n.as_bytes()).unwrap();
        raw[7] ^= 1;
        assert_eq!(a.check(Some(&base64url::encode(&raw)), now), Err(Reason::DpopNonceInvalid));
    }

    #[test]
    fn rotation_the_old_key_still_verifies_and_asks_for_a_new_nonce() {
        let now = 1_800_000_000;
        let old = keys(KEY_A);
        let rolled = keys(&format!("{KEY_B},{KEY_A}"));
        assert_eq!(rolled.check(Some(&old.mint(now)), now), Ok(NonceFreshness::RotationDue));
        assert_eq!(rolled.check(Some(&rolled.mint(now)), now), Ok(NonceFreshness::Current));
        assert_eq!(old.check(Some(&rolled.mint(now)), now), Err(Reason::DpopNonceInvalid));
    }

    #[test]
    fn weak_or_too_many_keys_do_not_load() {
        assert!(NonceKeys::parse("short", 60).unwrap_err().contains("shorter than 32 bytes"));
        assert!(NonceKeys::parse(&format!("{KEY_A},"), 60).unwrap_err().contains("key 2"));
        let five = [KEY_A; 5].join(",");
        assert!(NonceKeys::parse(&five, 60).unwrap_err().contains("at most 4"));
        assert!(NonceKeys::parse(KEY_A, 0).is_err());
        assert!(!format!("{:?}", keys(KEY_A)).contains("aaaa"), "Debug never prints keys");
    }
}
