//! RFC 8693 delegation: when a token carries `act`, the current actor must itself be allowed.
//!
//! Only the top-level subject and the current actor (`act.sub`) count for access control; nested
//! actors are informational (RFC 8693 §4.1) and only recorded.

use crate::engine::authority::check_registration;
use crate::engine::jwt::VerifiedToken;
use crate::engine::policy::{Client, Policy, RouteRule};
use crate::engine::reason::Reason;

/// The current actor's registry entry, or `None` without delegation.
pub fn check_actor<'p>(
    policy: &'p Policy,
    route: &RouteRule,
    token: &VerifiedToken,
    now: i64,
) -> Result<Option<&'p Client>, Reason> {
    let Some(actor) = token.actor() else { return Ok(None) };
    let client = policy.clients.get(actor).ok_or(Reason::ActorUnknown)?;
    check_registration(policy, route, client, now).map_err(|_| Reason::ActorNotAllowed)?;
    Ok(Some(client))
}
