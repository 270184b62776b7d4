//! The poll lease in shared data: which worker of this Envoy polls a source right now.
//! The rules (who may take it, when it lapses) are `crate::engine::shared_state`'s; this only reads and
//! writes the entry, by compare-and-swap so two workers cannot both win.

use crate::engine::shared_state::{claim_lease, release_lease};
use proxy_wasm::hostcalls;

/// A CAS value the host never hands out for a live key: creates the entry only if still absent.
const NO_CAS: u32 = u32::MAX;

/// What a root context does for a source on a tick.
pub enum Turn {
    /// Another worker polls it.
    Idle,
    /// This context just became the poller: fetch now.
    TookOver,
    /// This context polls it, as before.
    Holding,
}

/// This root context's identity as a lease holder.
pub struct LeaseHolder {
    me: u64,
}

impl LeaseHolder {
    /// A random id, so the root contexts of every worker and plugin differ.
    pub fn new(context_id: u32) -> LeaseHolder {
        LeaseHolder { me: super::random_u64(context_id).max(1) }
    }

    /// Takes or renews the lease at `key`; true while this context holds it. A host error means
    /// "not ours": another worker polls, or (all failing) the data ages and routes fail closed.
    pub fn hold(&self, key: &str, now_ms: i64) -> bool {
        let Ok((current, cas)) = hostcalls::get_shared_data(key) else { return false };
        let Some(value) = claim_lease(current.as_deref(), self.me, now_ms) else { return false };
        hostcalls::set_shared_data(key, Some(&value), Some(cas.unwrap_or(NO_CAS))).is_ok()
    }

    /// This context's turn for one source this tick: `hold`, and note in `holding` whether it
    /// still holds the lease, so a takeover (which fetches at once) is told apart from a renewal.
    pub fn turn(&self, key: &str, now_ms: i64, holding: &mut bool) -> Turn {
        let was = std::mem::replace(holding, self.hold(key, now_ms));
        match (was, *holding) {
            (_, false) => Turn::Idle,
            (false, true) => Turn::TookOver,
            (true, true) => Turn::Holding,
        }
    }

    /// Gives the lease at `key` up if held, so another worker takes over on its next tick.
    pub fn release(&self, key: &str) {
        if let Ok((current, Some(cas))) = hostcalls::get_shared_data(key) {
            if let Some(value) = release_lease(current.as_deref(), self.me) {
                let _ = hostcalls::set_shared_data(key, Some(&value), Some(cas));
            }
        }
    }
}
