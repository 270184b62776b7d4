//! The DPoP replay cache in Envoy's shared data, so a proof used on one worker is refused on all.
//!
//! One shared-data key per bucket; each update is a compare-and-swap, retried a few times when
//! another worker wrote the same bucket in between. A store that keeps failing fails closed.
//! Placement is keyed by a secret this Envoy makes at random on first use and keeps in shared data
//! (created once, by compare-and-swap, so every worker uses the same one); it never leaves Envoy.

use crate::engine::dpop::ProofId;
use crate::engine::replay::{place, record_in_bucket, ReplayError, ReplayGuard};
use proxy_wasm::hostcalls;

const ATTEMPTS: usize = 4;
/// A CAS value the host never hands out for a live key (its counter starts at 1 and would need 2^32
/// writes to come round).
const NO_CAS: u32 = u32::MAX;
const SECRET_KEY: &str = "nhi_guard.dpop.replay.secret";

pub struct SharedReplayCache {
    buckets: u32,
    secret: Option<[u8; 32]>,
    context_id: u32,
}

impl SharedReplayCache {
    pub fn new(buckets: u32, context_id: u32) -> Self {
        SharedReplayCache { buckets, secret: None, context_id }
    }

    /// This Envoy's placement secret: read, or made and published if no worker has made it yet.
    fn secret(&mut self) -> Result<[u8; 32], ReplayError> {
        if let Some(s) = self.secret {
            return Ok(s);
        }
        let read = || -> Option<[u8; 32]> {
            hostcalls::get_shared_data(SECRET_KEY).ok()?.0.and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
        };
        if read().is_none() {
            let mut fresh = [0u8; 32];
            for (i, chunk) in fresh.chunks_exact_mut(8).enumerate() {
                let salt = self.context_id.wrapping_add(u32::try_from(i).unwrap_or(0));
                chunk.copy_from_slice(&super::random_u64(salt).to_le_bytes());
            }
            // Create-if-absent: when two workers race, one wins and both then read the winner's.
            let _ = hostcalls::set_shared_data(SECRET_KEY, Some(&fresh), Some(NO_CAS));
        }
        let secret = read().ok_or_else(|| ReplayError::Unavailable("no replay cache secret".into()))?;
        self.secret = Some(secret);
        Ok(secret)
    }
}

impl ReplayGuard for SharedReplayCache {
    fn record(&mut self, id: &ProofId, now: i64) -> Result<(), ReplayError> {
        let p = place(&self.secret()?, id, self.buckets);
        // Placement depends on the bucket count: a policy with another count uses other buckets.
        let key = format!("nhi_guard.dpop.replay.{}.{}", self.buckets, p.bucket);
        for _ in 0..ATTEMPTS {
            let (bucket, cas) = hostcalls::get_shared_data(&key)
                .map_err(|e| ReplayError::Unavailable(format!("cannot read the replay cache: {e:?}")))?;
            let updated = record_in_bucket(bucket.as_deref().unwrap_or(&[]), &p, now)?;
            // A key never written yet has no CAS. Zero would mean "do not check", and two workers
            // creating the same bucket at once would then lose one entry (a replay let through);
            // an impossible CAS instead creates the key if it is still absent and fails otherwise.
            match hostcalls::set_shared_data(&key, Some(&updated), Some(cas.unwrap_or(NO_CAS))) {
                Ok(()) => return Ok(()),
                Err(proxy_wasm::types::Status::CasMismatch) => continue,
                Err(e) => return Err(ReplayError::Unavailable(format!("cannot write the replay cache: {e:?}"))),
            }
        }
        Err(ReplayError::Unavailable("replay cache contended".into()))
    }
}
