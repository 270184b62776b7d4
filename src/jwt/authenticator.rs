//! One access token in, a `VerifiedToken` or a `Reason` out. Cheapest checks first.
//!
//! Order: size, verified-token cache, forged-token cache, structure, alg, issuer, typ, kid,
//! required claims, audience, time (token and route limits), and only then the signature.
//! A cache hit re-runs the time checks only: everything else is a property of the token text.

use super::cache::TokenCache;
use super::claims::AccessTokenClaims;
use super::jws::{self, JwsError};
use super::keys::Alg;
use super::verifier::SignatureVerifier;
use crate::policy::{Issuer, Policy, RouteRule};
use crate::reason::Reason;
use std::rc::Rc;

/// How long a forged token's failure is remembered (its own `exp` is attacker-chosen).
const NEGATIVE_TTL: i64 = 60;

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
}

impl VerifiedToken {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Per-worker token verification state: the caches and the signature backend.
pub struct Authenticator {
    verified: TokenCache<Rc<VerifiedToken>>,
    forged: TokenCache<Reason>,
    verifier: Box<dyn SignatureVerifier>,
}

/// The outcome, with whether the cache answered (for metrics).
pub struct Authenticated {
    pub token: Rc<VerifiedToken>,
    pub cache_hit: bool,
}

impl Authenticator {
    pub fn new(policy: &Policy, verifier: Box<dyn SignatureVerifier>) -> Self {
        Authenticator {
            verified: TokenCache::new(policy.token_cache_entries),
            forged: TokenCache::new(policy.negative_cache_entries),
            verifier,
        }
    }

    pub fn backend(&self) -> &'static str {
        self.verifier.name()
    }

    pub fn cached_tokens(&self) -> usize {
        self.verified.len()
    }

    pub fn authenticate(
        &mut self,
        policy: &Policy,
        route: &RouteRule,
        token: &str,
        now: i64,
    ) -> Result<Authenticated, Reason> {
        if token.len() > policy.max_token_bytes {
            return Err(Reason::TokenTooLarge);
        }
        if let Some(hit) = self.verified.get(token, now) {
            let skew = policy.issuers.get(hit.issuer).map_or(0, |i| i.clock_skew);
            check_times(&hit, skew, route, now)?;
            return Ok(Authenticated { token: hit, cache_hit: true });
        }
        if let Some(reason) = self.forged.get(token, now) {
            return Err(reason);
        }
        let jws = jws::decode::<AccessTokenClaims>(token).map_err(|e| match e {
            JwsError::Malformed | JwsError::CriticalHeader => Reason::TokenMalformed,
        })?;
        let alg = Alg::parse(&jws.header.alg).ok_or(Reason::AlgNotAllowed)?;
        let claims = &jws.claims;
        let iss = claims.iss.as_deref().ok_or(Reason::ClaimMissing)?;
        let (issuer_index, issuer) = policy.issuer(iss).ok_or(Reason::IssuerUnknown)?;
        if !issuer.algorithms.contains(&alg) {
            return Err(Reason::AlgNotAllowed);
        }
        check_typ(issuer, jws.header.typ.as_deref())?;
        let key = jws.header.kid.as_deref().and_then(|kid| issuer.key(kid)).ok_or(Reason::KidUnknown)?;
        if key.alg != alg {
            return Err(Reason::AlgNotAllowed);
        }
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
        let candidate = VerifiedToken {
            issuer: issuer_index,
            kid: key.kid.clone(),
            alg,
            subject: sub.clone(),
            client_id: client_id.clone(),
            scopes,
            jti: jti.clone(),
            iat: iat.0,
            exp: exp.0,
            nbf: claims.nbf.map(|n| n.0),
        };
        check_times(&candidate, issuer.clock_skew, route, now)?;
        match self.verifier.verify(key, jws.signing_input.as_bytes(), &jws.signature) {
            Ok(true) => {}
            Ok(false) => {
                self.forged.insert(token, Reason::SignatureInvalid, now + NEGATIVE_TTL);
                return Err(Reason::SignatureInvalid);
            }
            Err(_) => return Err(Reason::VerifierError),
        }
        let token_rc = Rc::new(candidate);
        self.verified.insert(token, token_rc.clone(), token_rc.exp);
        Ok(Authenticated { token: token_rc, cache_hit: false })
    }
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
    if t.exp - t.iat > route.max_token_lifetime {
        return Err(Reason::TokenLifetimeTooLong);
    }
    if now.saturating_sub(t.iat) > route.max_token_age {
        return Err(Reason::TokenTooOld);
    }
    Ok(())
}
