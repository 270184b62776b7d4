//! DPoP proofs (RFC 9449 §4.3): one proof in, the proof's replay key out, or the reason it fails.
//!
//! Checks, cheapest first, so that a holder of one DPoP-bound token cannot make the filter verify a
//! signature for a proof that fails anyway: size; compact JWS with `typ: dpop+jwt`; an allowed
//! asymmetric `alg`; an embedded public `jwk` (no private members); the claims present; `htm`, `htu`
//! (configured origin + request path, never request headers), `iat` within the window, `ath` (hash
//! of the access token), the key's RFC 7638 thumbprint against the token's `cnf.jkt`; only then
//! the key is decoded and the signature verified. The `jti` replay check needs state shared by all
//! workers, so it comes after, in `replay`.

use crate::engine::base64url;
use crate::engine::jwt::jws::{self, JwsError};
use crate::engine::jwt::verifier::SignatureVerifier;
use crate::engine::keys::{Alg, Jwk};
use crate::engine::policy::DpopSettings;
use crate::engine::reason::Reason;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Private JWK members (RFC 7518 §6): a proof carrying any of them has leaked its key.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
/// Longest `jti` accepted (RFC 9449 suggests 96 bits of randomness; leave room for formats).
const MAX_JTI_BYTES: usize = 256;

#[derive(Debug, Deserialize)]
struct ProofClaims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<crate::engine::jwt::claims::NumericDate>,
    ath: Option<String>,
}

/// A verified proof's identity for the replay cache: digests of its key (the token's `cnf.jkt`)
/// and its `jti`, and until when it must be remembered (after that its `iat` is outside the window
/// anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofId {
    pub key_digest: [u8; 16],
    pub jti_digest: [u8; 16],
    pub remember_until: i64,
}

/// The request a proof must match.
#[derive(Debug, Clone, Copy)]
pub struct ProofContext<'a> {
    pub method: &'a str,
    /// The request path without query (RFC 9449: `htu` carries no query or fragment).
    pub path: &'a str,
    pub access_token: &'a str,
    /// The token's `cnf.jkt`.
    pub jkt: &'a str,
    pub now: i64,
}

/// Checks one proof. See the module comment for the order.
pub fn check_proof(
    settings: &DpopSettings,
    proof: &str,
    request: &ProofContext<'_>,
    verifier: &dyn SignatureVerifier,
) -> Result<ProofId, Reason> {
    if proof.is_empty() {
        return Err(Reason::DpopProofMissing);
    }
    if proof.len() > settings.max_proof_bytes {
        return Err(Reason::DpopProofMalformed);
    }
    let jws = jws::decode::<ProofClaims>(proof).map_err(|e| match e {
        JwsError::Malformed | JwsError::CriticalHeader => Reason::DpopProofMalformed,
    })?;
    if jws.header.typ.as_deref() != Some("dpop+jwt") {
        return Err(Reason::DpopProofMalformed);
    }
    let alg =
        Alg::parse(&jws.header.alg).filter(|a| settings.algorithms.contains(a)).ok_or(Reason::DpopAlgNotAllowed)?;
    let jwk_value = jws.header.jwk.as_ref().ok_or(Reason::DpopJwkInvalid)?;
    let members = jwk_value.as_object().ok_or(Reason::DpopJwkInvalid)?;
    if PRIVATE_MEMBERS.iter().any(|m| members.contains_key(*m)) {
        return Err(Reason::DpopJwkInvalid);
    }
    let c = &jws.claims;
    let (Some(jti), Some(htm), Some(htu), Some(iat), Some(ath)) = (&c.jti, &c.htm, &c.htu, c.iat, &c.ath) else {
        return Err(Reason::DpopProofMalformed);
    };
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(Reason::DpopProofMalformed);
    }
    if htm != request.method {
        return Err(Reason::DpopHtmMismatch);
    }
    if !htu_matches(htu, &settings.external_origin, request.path) {
        return Err(Reason::DpopHtuMismatch);
    }
    // A little skew ahead (clocks differ); the window behind.
    if iat.0 > request.now.saturating_add(5) || iat.0 < request.now.saturating_sub(settings.iat_window) {
        return Err(Reason::DpopIatInvalid);
    }
    if ath.as_bytes() != base64url::encode(&Sha256::digest(request.access_token.as_bytes())).as_bytes() {
        return Err(Reason::DpopAthMismatch);
    }
    if jwk_thumbprint(members).as_deref() != Some(request.jkt) {
        return Err(Reason::DpopKeyMismatch);
    }
    // Only a proof that matches this request and this token's key is worth a signature check.
    let mut jwk: Jwk = serde_json::from_value(jwk_value.clone()).map_err(|_| Reason::DpopJwkInvalid)?;
    // The proof's key is pinned to the proof's alg; kid is not used by DPoP.
    jwk.kid = Some("dpop".into());
    jwk.alg = Some(alg.name().into());
    let key = jwk.to_key().map_err(|_| Reason::DpopJwkInvalid)?;
    match verifier.verify(&key, jws.signing_input.as_bytes(), &jws.signature) {
        Ok(true) => {}
        Ok(false) => return Err(Reason::DpopSignatureInvalid),
        Err(_) => return Err(Reason::VerifierError),
    }
    let digest16 = |bytes: &[u8]| {
        let mut out = [0u8; 16];
        out.copy_from_slice(Sha256::digest(bytes).get(..16).unwrap_or(&[0u8; 16]));
        out
    };
    Ok(ProofId {
        key_digest: digest16(request.jkt.as_bytes()),
        jti_digest: digest16(jti.as_bytes()),
        remember_until: iat.0.saturating_add(settings.iat_window).saturating_add(5),
    })
}

/// `htu` must be the configured origin plus the path. Scheme and host compare case-insensitively
/// (RFC 3986 §6.2.2.1); a query or fragment in `htu` is ignored, as RFC 9449 §4.3 says.
fn htu_matches(htu: &str, origin: &str, path: &str) -> bool {
    let htu = htu.split(['?', '#']).next().unwrap_or("");
    let Some((o, p)) = htu.len().checked_sub(path.len()).and_then(|cut| htu.split_at_checked(cut)) else {
        return false;
    };
    p == path && o.eq_ignore_ascii_case(origin)
}

/// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order, base64url.
pub fn jwk_thumbprint(jwk: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let s = |k: &str| jwk.get(k).and_then(|v| v.as_str());
    let canonical = match s("kty")? {
        "EC" => format!(r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#, q(s("crv")?), q(s("x")?), q(s("y")?)),
        "OKP" => format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, q(s("crv")?), q(s("x")?)),
        "RSA" => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, q(s("e")?), q(s("n")?)),
        _ => return None,
    };
    Some(base64url::encode(&Sha256::digest(canonical.as_bytes())))
}

/// A JSON string literal (members are base64url or curve names, but quote properly anyway).
fn q(v: &str) -> String {
    serde_json::Value::String(v.to_string()).to_string()
}

#[cfg(test)]
#[path = "dpop_tests.rs"]
mod tests;
