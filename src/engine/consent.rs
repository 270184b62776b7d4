//! Customer consent, checked separately from machine authority: both must allow.
//!
//! A consent comes either as an artefact (a JWT signed by the bank's consent service, in its own
//! header) or inside the access token (`consent_id` + RFC 9396 `authorization_details`), as the
//! policy allows. Either way it must be unexpired, not revoked, granted to the same client that
//! presents the token, by the same customer the token carries, and grant what the route needs.

use crate::engine::credentials::RequestFacts;
use crate::engine::jwt::cache::{Cached, JwsCaches};
use crate::engine::jwt::claims::NumericDate;
use crate::engine::jwt::jws;
use crate::engine::jwt::verifier::SignatureVerifier;
use crate::engine::jwt::VerifiedToken;
use crate::engine::keys::choose_key;
use crate::engine::policy::{Policy, RouteConsent, RouteRule};
use crate::engine::reason::Reason;
use crate::engine::revocation::RevocationSnapshot;
use serde::Deserialize;
use std::rc::Rc;

/// The status a consent must have (UK Open Banking: AwaitingAuthorisation, Authorised, Rejected, Revoked).
pub const AUTHORISED: &str = "Authorised";

/// Consent artefact claims as they arrive.
#[derive(Debug, Deserialize)]
struct ConsentClaims {
    iss: Option<String>,
    sub: Option<String>,
    client_id: Option<String>,
    consent_id: Option<String>,
    permissions: Option<Vec<String>>,
    status: Option<String>,
    exp: Option<NumericDate>,
    iat: Option<NumericDate>,
    nbf: Option<NumericDate>,
}

/// A consent artefact whose signature verified. Cached per worker until `exp`.
#[derive(Debug, Clone)]
pub struct VerifiedConsent {
    pub issuer: usize,
    pub kid: String,
    pub id: String,
    pub subject: String,
    pub client_id: String,
    pub permissions: Vec<String>,
    pub authorised: bool,
    pub iat: i64,
    pub exp: i64,
    pub nbf: Option<i64>,
}

/// Where the consent the decision used came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentSource {
    Artefact,
    AccessToken,
}

impl ConsentSource {
    pub fn name(self) -> &'static str {
        match self {
            ConsentSource::Artefact => "artefact",
            ConsentSource::AccessToken => "access_token",
        }
    }
}

/// The consent a decision relied on: its id and the permissions the route used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentUse {
    pub id: String,
    /// The granted permissions that satisfied the route, space-separated.
    pub permissions_used: String,
    pub source: ConsentSource,
}

/// Per-worker consent-artefact verification state.
pub struct ConsentVerifier {
    caches: JwsCaches<VerifiedConsent>,
}

impl ConsentVerifier {
    pub fn new(policy: &Policy) -> Self {
        ConsentVerifier { caches: JwsCaches::new(policy.token_cache_entries, policy.negative_cache_entries) }
    }

    /// Applies the route's consent requirement to a token that already has machine authority.
    /// The artefacts are the request's values of the policy's consent header.
    pub fn check(
        &mut self,
        policy: &Policy,
        route: &RouteRule,
        token: &VerifiedToken,
        facts: &RequestFacts<'_>,
        verifier: &dyn SignatureVerifier,
        feed: Option<&RevocationSnapshot>,
    ) -> Result<Option<ConsentUse>, Reason> {
        let (artefacts, now) = (facts.consent, facts.now);
        let groups = match &route.consent {
            RouteConsent::None { refuse_customer_tokens } => {
                if *refuse_customer_tokens && token.is_customer_bound() {
                    return Err(Reason::CustomerTokenOnMachineRoute);
                }
                return Ok(None);
            }
            RouteConsent::Permissions(groups) => groups,
        };
        if !token.is_customer_bound() {
            return Err(Reason::ClientCredentialsOnCustomerRoute);
        }
        let in_token = token.consent.as_ref();
        let artefact = match artefacts {
            [] => None,
            [one] => Some(self.artefact(policy, one, now, verifier)?),
            _ => return Err(Reason::ConsentDuplicated),
        };
        let (id, subject, client_id, permissions, source) = match (&artefact, in_token) {
            (Some(a), Some(t)) if a.id != t.id => return Err(Reason::ConsentDuplicated),
            (Some(a), _) => {
                let issuer = policy.consent.issuers.get(a.issuer).map_or("", |i| i.id.as_str());
                if feed.is_some_and(|f| f.key_revoked(issuer, &a.kid)) {
                    return Err(Reason::KeyRevoked);
                }
                if !a.authorised {
                    return Err(Reason::ConsentNotAuthorised);
                }
                (&a.id, &a.subject, &a.client_id, &a.permissions, ConsentSource::Artefact)
            }
            (None, Some(t)) => (&t.id, &token.subject, &token.client_id, &t.permissions, ConsentSource::AccessToken),
            (None, None) => return Err(Reason::ConsentMissing),
        };
        if policy.consent.revoked.contains(id) || feed.is_some_and(|f| f.consent_revoked(id)) {
            return Err(Reason::ConsentRevoked);
        }
        if *client_id != token.client_id {
            return Err(Reason::ConsentClientMismatch);
        }
        if *subject != token.subject {
            return Err(Reason::ConsentSubjectMismatch);
        }
        let mut used = String::new();
        for group in groups {
            let granted = group.iter().find(|p| permissions.contains(p)).ok_or(Reason::ConsentPermissionMissing)?;
            if !used.is_empty() {
                used.push(' ');
            }
            used.push_str(granted);
        }
        Ok(Some(ConsentUse { id: id.clone(), permissions_used: used, source }))
    }

    /// Verifies a consent artefact: cheap checks first, then the consent issuer's signature.
    fn artefact(
        &mut self,
        policy: &Policy,
        raw: &[u8],
        now: i64,
        verifier: &dyn SignatureVerifier,
    ) -> Result<Rc<VerifiedConsent>, Reason> {
        if raw.len() > policy.max_token_bytes {
            return Err(Reason::ConsentInvalid);
        }
        let text = std::str::from_utf8(raw).map_err(|_| Reason::ConsentInvalid)?.trim();
        match self.caches.lookup(text, now) {
            Cached::Verified(hit) => {
                let skew = policy.consent.issuers.get(hit.issuer).map_or(0, |i| i.clock_skew);
                check_times(&hit, skew, now)?;
                return Ok(hit);
            }
            Cached::Forged(reason) => return Err(reason),
            Cached::Miss => {}
        }
        let jws = jws::decode::<ConsentClaims>(text).map_err(|_| Reason::ConsentInvalid)?;
        let c = &jws.claims;
        let iss = c.iss.as_deref().ok_or(Reason::ConsentInvalid)?;
        // Only the consent service signs consents: a consent from the access-token issuer is refused here.
        let (index, issuer) =
            policy.consent.issuers.iter().enumerate().find(|(_, i)| i.id == iss).ok_or(Reason::ConsentInvalid)?;
        let key = choose_key(&issuer.keys, &issuer.algorithms, &jws.header.alg, jws.header.kid.as_deref())
            .map_err(|_| Reason::ConsentInvalid)?;
        let (Some(sub), Some(client_id), Some(id), Some(permissions), Some(exp), Some(iat)) =
            (&c.sub, &c.client_id, &c.consent_id, &c.permissions, c.exp, c.iat)
        else {
            return Err(Reason::ConsentInvalid);
        };
        if sub.is_empty() || client_id.is_empty() || id.is_empty() {
            return Err(Reason::ConsentInvalid);
        }
        let candidate = VerifiedConsent {
            issuer: index,
            kid: key.kid.clone(),
            id: id.clone(),
            subject: sub.clone(),
            client_id: client_id.clone(),
            permissions: permissions.clone(),
            authorised: c.status.as_deref().map_or(policy.consent.accept_missing_status, |s| s == AUTHORISED),
            iat: iat.0,
            exp: exp.0,
            nbf: c.nbf.map(|n| n.0),
        };
        check_times(&candidate, issuer.clock_skew, now)?;
        let until = candidate.exp;
        let signed = (key, jws.signing_input, &jws.signature[..]);
        self.caches.verify(text, signed, verifier, candidate, until, Reason::ConsentInvalid, now)
    }
}

fn check_times(c: &VerifiedConsent, skew: i64, now: i64) -> Result<(), Reason> {
    if c.exp <= c.iat {
        return Err(Reason::ConsentInvalid);
    }
    if now >= c.exp.saturating_add(skew) {
        return Err(Reason::ConsentExpired);
    }
    if c.iat > now.saturating_add(skew) || c.nbf.is_some_and(|n| n > now.saturating_add(skew)) {
        return Err(Reason::ConsentInvalid);
    }
    Ok(())
}
