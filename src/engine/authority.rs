//! Machine authority: may this client, of this partner, call this route with this token, now?
//!
//! The registry (clients, partners) is the source of truth for status and ceilings; the token only
//! says which client it was issued to and what it asks for.

use crate::engine::jwt::VerifiedToken;
use crate::engine::policy::{Client, ClientStatus, Partner, PartnerStatus, Policy, RouteRule};
use crate::engine::reason::Reason;

/// The registry entries behind an authorised token.
#[derive(Debug, Clone, Copy)]
pub struct Authority<'p> {
    pub client: &'p Client,
    pub partner: Option<&'p Partner>,
}

/// The token's client may call the route: registration, partner, route kind, scopes within ceiling.
pub fn check<'p>(
    policy: &'p Policy,
    route: &RouteRule,
    token: &VerifiedToken,
    now: i64,
) -> Result<Authority<'p>, Reason> {
    let client = policy.clients.get(&token.client_id).ok_or(Reason::ClientUnknown)?;
    if !client.issuers.is_empty() && !client.issuers.contains(&token.issuer) {
        return Err(Reason::ClientIssuerNotAllowed);
    }
    let partner = check_registration(policy, route, client, now)?;
    for scope in &route.scopes {
        if !token.has_scope(scope) {
            return Err(Reason::ScopeMissing);
        }
    }
    for scope in &route.scopes {
        if !client.scope_ceiling.iter().any(|s| s == scope) {
            return Err(Reason::ScopeBeyondCeiling);
        }
    }
    Ok(Authority { client, partner })
}

/// A workload authenticated by its SPIFFE ID: no token, so the route's scopes must lie within the
/// client's ceiling (the registry is the grant), and the registration rules apply as for tokens.
pub fn check_workload<'p>(
    policy: &'p Policy,
    route: &RouteRule,
    client: &'p Client,
    now: i64,
) -> Result<Authority<'p>, Reason> {
    let partner = check_registration(policy, route, client, now)?;
    if route.scopes.iter().any(|scope| !client.scope_ceiling.iter().any(|s| s == scope)) {
        return Err(Reason::ScopeBeyondCeiling);
    }
    Ok(Authority { client, partner })
}

/// A registered client is active, unexpired, of a kind the route allows, and its partner (for
/// partner apps) is active with a running contract. Also applied to delegated actors.
pub fn check_registration<'p>(
    policy: &'p Policy,
    route: &RouteRule,
    client: &Client,
    now: i64,
) -> Result<Option<&'p Partner>, Reason> {
    match client.status {
        ClientStatus::Active => {}
        ClientStatus::Suspended | ClientStatus::Revoked => return Err(Reason::ClientInactive),
    }
    if now >= client.expires {
        return Err(Reason::ClientExpired);
    }
    if let Some(grace_days) = policy.governance.enforce_review_grace_days {
        // Never reviewed counts as overdue: an identity nobody looked at is the one to stop.
        if client.review_due.is_none_or(|due| now > due.saturating_add(grace_days.saturating_mul(86_400))) {
            return Err(Reason::ReviewOverdue);
        }
    }
    let partner = match &client.partner {
        Some(id) => {
            // The loader guarantees the partner exists; a missing one still fails closed.
            let p = policy.partners.get(id).ok_or(Reason::PartnerOffboarded)?;
            match p.status {
                PartnerStatus::Active => {}
                PartnerStatus::Suspended => return Err(Reason::PartnerSuspended),
                PartnerStatus::Offboarded => return Err(Reason::PartnerOffboarded),
            }
            if now >= p.contract_end {
                return Err(Reason::PartnerContractEnded);
            }
            Some(p)
        }
        None => None,
    };
    if !route.client_kinds.contains(&client.kind) {
        return Err(Reason::ClientKindNotAllowed);
    }
    Ok(partner)
}
