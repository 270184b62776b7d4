//! One access token in, a `VerifiedToken` or a `Reason` out. Cheapest checks first.
//!
//! Order: size, verified-token cache, forged-token cache, structure, alg, issuer, typ, kid,
//! required claims, audience, time (token and route limits), and only then the signature.
//! A cache hit re-runs the time checks only: everything else is a property of the token text.

use super::cache::{Cached, JwsCaches};
use super::claims::{actor_chain, AccessTokenClaims};
use super::jwks::{IssuerKeys, KeyStore};
use super::jws::{self, JwsError};
use super::verifier::SignatureVerifier;
use crate::engine::keys::{choose_key, Alg, KeyChoiceError};
use crate::engine::policy::{Issuer, Policy, RouteRule};
use crate::engine::reason::Reason;
use std::rc::Rc;

/// What a token proved, once its signature verified. Cached per worker until `exp`.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub issuer: usize,
    pub kid: String,
    pub alg: Alg,
    pub subject: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    pub nbf: Option<i64>,
    /// Consent the token itself carries (only when the policy accepts consent in access tokens).
    pub consent: Option<TokenConsent>,
    /// RFC 8693 `act` chain, current actor first; empty without delegation.
    pub actor_chain: Vec<String>,
    /// The sender binding `cnf` declares (checked per request: it depends on the connection).
    pub binding: TokenBinding,
    /// The audit events' keyed hash of `subject`, computed on first use and kept with the cached
    /// token (one HMAC per token, not per request; the engine has one policy, so one key).
    pub subject_hash: std::cell::OnceCell<String>,
}

/// What a token is bound to (RFC 7800 `cnf`). Both may be present; each is then checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenBinding {
    /// RFC 8705 `x5t#S256`: the client certificate's SHA-256.
    pub certificate: Option<[u8; 32]>,
    /// RFC 9449 `jkt`: the DPoP key's JWK thumbprint, base64url as in the claim.
    pub dpop_jkt: Option<String>,
}

impl TokenBinding {
    pub fn is_bound(&self) -> bool {
        self.certificate.is_some() || self.dpop_jkt.is_some()
    }
}

/// Reads `cnf`. Malformed values and members we cannot enforce are refused, never ignored.
fn token_binding(cnf: Option<&super::claims::Confirmation>) -> Result<TokenBinding, Reason> {
    let Some(cnf) = cnf else { return Ok(TokenBinding::default()) };
    if !cnf.other.is_empty() {
        return Err(Reason::TokenMalformed);
    }
    let certificate = match &cnf.x5t_s256 {
        None => None,
        Some(t) => Some(
            crate::engine::base64url::decode(t.as_bytes())
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or(Reason::TokenMalformed)?,
        ),
    };
    let dpop_jkt = match &cnf.jkt {
        Some(j) if j.len() == 43 && crate::engine::base64url::decode(j.as_bytes()).is_some() => Some(j.clone()),
        Some(_) => return Err(Reason::TokenMalformed),
        None => None,
    };
    if certificate.is_none() && dpop_jkt.is_none() {
        return Err(Reason::TokenMalformed);
    }
    Ok(TokenBinding { certificate, dpop_jkt })
}

/// A consent id and the permissions granted, as carried in an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConsent {
    pub id: String,
    pub permissions: Vec<String>,
}

impl VerifiedToken {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Bound to a customer: a subject other than the client itself (RFC 9068 §2.2: client-credentials
    /// tokens carry the client as `sub`).
    pub fn is_customer_bound(&self) -> bool {
        self.subject != self.client_id
    }

    /// The current actor under RFC 8693 delegation, if any.
    pub fn actor(&self) -> Option<&str> {
        self.actor_chain.first().map(String::as_str)
    }
}

/// Per-worker access-token verification state: the verified and forged-token caches, and the keys
/// of issuers that publish theirs at a JWKS endpoint.
pub struct Authenticator {
    caches: JwsCaches<VerifiedToken>,
    keys: KeyStore,
}

/// The outcome, with whether the cache answered (for metrics).
pub struct Authenticated {
    pub token: Rc<VerifiedToken>,
    pub cache_hit: bool,
}

impl Authenticator {
    pub fn new(policy: &Policy) -> Self {
        Authenticator {
            caches: JwsCaches::new(policy.token_cache_entries, policy.negative_cache_entries),
            keys: KeyStore::new(policy),
        }
    }

    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    pub fn keys_mut(&mut self) -> &mut KeyStore {
        &mut self.keys
    }

    /// Takes a published JWKS generation for a remote issuer. When a key went away (or changed),
    /// every cached outcome is dropped: a token signed by a removed key must stop verifying now,
    /// not when it expires.
    pub fn take_jwks(&mut self, policy: &Policy, issuer: usize, generation: u64, body: &[u8]) -> Result<(), String> {
        if self.keys.take(policy, issuer, generation, body)? {
            self.caches.clear();
        }
        Ok(())
    }

    pub fn cached_tokens(&self) -> usize {
        self.caches.verified_len()
    }

    pub fn authenticate(
        &mut self,
        policy: &Policy,
        route: &RouteRule,
        token: &str,
        now: i64,
        verifier: &dyn SignatureVerifier,
    ) -> Result<Authenticated, Reason> {
        if token.len() > policy.max_token_bytes {
            return Err(Reason::TokenTooLarge);
        }
        match self.caches.lookup(token, now) {
            Cached::Verified(hit) => {
                let skew = policy.issuers.get(hit.issuer).map_or(0, |i| i.clock_skew);
                check_times(&hit, skew, route, now)?;
                return Ok(Authenticated { token: hit, cache_hit: true });
            }
            Cached::Forged(reason) => return Err(reason),
            Cached::Miss => {}
        }
        let jws = jws::decode::<AccessTokenClaims>(token).map_err(|e| match e {
            JwsError::Malformed | JwsError::CriticalHeader => Reason::TokenMalformed,
        })?;
        if Alg::parse(&jws.header.alg).is_none() {
            return Err(Reason::AlgNotAllowed);
        }
        let claims = &jws.claims;
        let iss = claims.iss.as_deref().ok_or(Reason::ClaimMissing)?;
        let (issuer_index, issuer) = policy.issuer(iss).ok_or(Reason::IssuerUnknown)?;
        let keys = match self.keys.keys(issuer_index, issuer) {
            IssuerKeys::Known(keys) => keys,
            IssuerKeys::NotFetched => {
                self.keys.key_missing(issuer_index);
                return Err(Reason::JwksUnavailable);
            }
        };
        let key = match choose_key(keys, &issuer.algorithms, &jws.header.alg, jws.header.kid.as_deref()) {
            Ok(key) => key,
            Err(KeyChoiceError::AlgNotAllowed) => return Err(Reason::AlgNotAllowed),
            Err(KeyChoiceError::KidUnknown) => {
                // Maybe the issuer rotated before our next refresh: ask for a (rate-limited) refetch.
                self.keys.key_missing(issuer_index);
                return Err(Reason::KidUnknown);
            }
        };
        check_typ(issuer, jws.header.typ.as_deref())?;
        let (Some(sub), Some(aud), Some(exp), Some(iat), Some(jti), Some(client_id)) =
            (&claims.sub, &claims.aud, claims.exp, claims.iat, &claims.jti, &claims.client_id)
        else {
            return Err(Reason::ClaimMissing);
        };
        if sub.is_empty() || jti.is_empty() || client_id.is_empty() {
            return Err(Reason::ClaimMissing);
        }
        if !aud.contains_any(&issuer.audiences) {
            return Err(Reason::AudienceInvalid);
        }
        let scopes = claims.scopes().ok_or(Reason::TokenMalformed)?;
        let consent = token_consent(claims, policy.consent.access_token_details_type.as_deref())?;
        let actor_chain = match &claims.act {
            Some(act) => actor_chain(act).ok_or(Reason::TokenMalformed)?,
            None => Vec::new(),
        };
        let binding = token_binding(claims.cnf.as_ref())?;
        let candidate = VerifiedToken {
            issuer: issuer_index,
            kid: key.kid.clone(),
            alg: key.alg,
            subject: sub.clone(),
            client_id: client_id.clone(),
            scopes,
            jti: jti.clone(),
            iat: iat.0,
            exp: exp.0,
            nbf: claims.nbf.map(|n| n.0),
            consent,
            actor_chain,
            binding,
            subject_hash: std::cell::OnceCell::new(),
        };
        check_times(&candidate, issuer.clock_skew, route, now)?;
        let until = candidate.exp;
        let signed = (key, jws.signing_input, &jws.signature[..]);
        let token = self.caches.verify(token, signed, verifier, candidate, until, Reason::SignatureInvalid, now)?;
        Ok(Authenticated { token, cache_hit: false })
    }
}

/// Consent claims in the token, read only when the policy accepts consent there.
fn token_consent(claims: &AccessTokenClaims, details_type: Option<&str>) -> Result<Option<TokenConsent>, Reason> {
    let Some(details_type) = details_type else { return Ok(None) };
    let id = match (&claims.consent_id, &claims.openbanking_intent_id) {
        (Some(a), Some(b)) if a != b => return Err(Reason::TokenMalformed),
        (Some(id), _) | (None, Some(id)) if !id.is_empty() => id.clone(),
        _ => return Ok(None),
    };
    let permissions = claims
        .authorization_details
        .iter()
        .flatten()
        .filter(|d| d.kind == details_type)
        .flat_map(|d| d.actions.iter().cloned())
        .collect();
    Ok(Some(TokenConsent { id, permissions }))
}

fn check_typ(issuer: &Issuer, typ: Option<&str>) -> Result<(), Reason> {
    if !issuer.require_typ_at_jwt {
        return Ok(());
    }
    // RFC 9068 §4: "at+jwt", or the full media type, compared case-insensitively.
    match typ {
        Some(t) if t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt") => Ok(()),
        _ => Err(Reason::TypInvalid),
    }
}

/// Token-level and route-level time rules. Runs on every request, cached or not.
pub fn check_times(t: &VerifiedToken, skew: i64, route: &RouteRule, now: i64) -> Result<(), Reason> {
    if t.exp <= t.iat {
        return Err(Reason::TokenMalformed);
    }
    if now >= t.exp.saturating_add(skew) {
        return Err(Reason::TokenExpired);
    }
    if let Some(nbf) = t.nbf {
        if nbf > now.saturating_add(skew) {
            return Err(Reason::TokenNotYetValid);
        }
    }
    if t.iat > now.saturating_add(skew) {
        return Err(Reason::TokenIssuedInFuture);
    }
    // Claims come from the token: exp = i64::MAX with a negative iat must not overflow.
    if t.exp.saturating_sub(t.iat) > route.max_token_lifetime {
        return Err(Reason::TokenLifetimeTooLong);
    }
    if now.saturating_sub(t.iat) > route.max_token_age {
        return Err(Reason::TokenTooOld);
    }
    Ok(())
}
