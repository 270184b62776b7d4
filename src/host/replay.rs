//! The DPoP replay cache in Envoy's shared data, so a proof used on one worker is refused on all.
//!
//! One shared-data key per bucket; each update is a compare-and-swap, retried a few times when
//! another worker wrote the same bucket in between. A store that keeps failing fails closed.

use crate::dpop::ProofId;
use crate::replay::{bucket_of, record_in_bucket, ReplayError, ReplayGuard};
use proxy_wasm::hostcalls;

const ATTEMPTS: usize = 4;
/// A CAS value the host never hands out for a live key (its counter starts at 1 and would need 2^32
/// writes to come round).
const NO_CAS: u32 = u32::MAX;

pub struct SharedReplayCache {
    buckets: u32,
}

impl SharedReplayCache {
    pub fn new(buckets: u32) -> Self {
        SharedReplayCache { buckets }
    }
}

impl ReplayGuard for SharedReplayCache {
    fn record(&mut self, id: &ProofId, now: i64) -> Result<(), ReplayError> {
        let key = format!("nhi_guard.dpop.replay.{}", bucket_of(id, self.buckets));
        for _ in 0..ATTEMPTS {
            let (bucket, cas) = hostcalls::get_shared_data(&key)
                .map_err(|e| ReplayError::Unavailable(format!("cannot read the replay cache: {e:?}")))?;
            let updated = record_in_bucket(bucket.as_deref().unwrap_or(&[]), id, now)?;
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
