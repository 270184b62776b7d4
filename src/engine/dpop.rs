//! DPoP proofs (RFC 9449 §4.3): one proof in, the proof's replay key out, or the reason it fails.
//!
//! Checks, cheapest first, so that a holder of one DPoP-bound token cannot make the filter verify a
//! signature for a proof that fails anyway: size; compact JWS with `typ: dpop+jwt`; an allowed
//! asymmetric `alg`; an embedded public `jwk` (no private members); the claims present; `htm`, `htu`
//! (configured origin + request path, never request headers, compared after RFC 3986 §6.2.2-6.2.3
//! normalisation), `iat` within the window, `ath` (hash of the access token), the key's RFC 7638
//! thumbprint against the token's `cnf.jkt`, the server nonce where the route requires one; only
//! then the key is decoded and the signature verified. The `jti` replay check needs state shared by all
//! workers, so it comes after, in `replay`.

use crate::engine::base64url;
use crate::engine::dpop_nonce::{NonceFreshness, NonceKeys};
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
/// How far ahead of our clock a proof's `iat` may be: client clocks differ (the FAPI conformance
/// suite sends proofs 10 s ahead and expects them accepted).
pub const IAT_AHEAD_SECONDS: i64 = 15;

#[derive(Debug, Deserialize)]
struct ProofClaims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<crate::engine::jwt::claims::NumericDate>,
    ath: Option<String>,
    nonce: Option<String>,
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
    /// The nonce keys, when this route requires a server nonce.
    pub nonce: Option<&'a NonceKeys>,
}

/// A proof that passed every check but replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedProof {
    pub id: ProofId,
    /// The proof's nonce is still good but the client should take the next one (sent on the
    /// response as `DPoP-Nonce`).
    pub renew_nonce: bool,
}

/// Checks one proof. See the module comment for the order.
pub fn check_proof(
    settings: &DpopSettings,
    proof: &str,
    request: &ProofContext<'_>,
    verifier: &dyn SignatureVerifier,
) -> Result<CheckedProof, Reason> {
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
    if iat.0 > request.now.saturating_add(IAT_AHEAD_SECONDS) || iat.0 < request.now.saturating_sub(settings.iat_window)
    {
        return Err(Reason::DpopIatInvalid);
    }
    if ath.as_bytes() != base64url::encode(&Sha256::digest(request.access_token.as_bytes())).as_bytes() {
        return Err(Reason::DpopAthMismatch);
    }
    if jwk_thumbprint(members).as_deref() != Some(request.jkt) {
        return Err(Reason::DpopKeyMismatch);
    }
    // Before the signature: a client without a nonce gets one at the price of a MAC, and nonces
    // are handed to anyone who asks anyway.
    let freshness = match request.nonce {
        Some(keys) => Some(keys.check(c.nonce.as_deref(), request.now)?),
        None => None,
    };
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
    let id = ProofId {
        key_digest: digest16(request.jkt.as_bytes()),
        jti_digest: digest16(jti.as_bytes()),
        remember_until: iat.0.saturating_add(settings.iat_window).saturating_add(IAT_AHEAD_SECONDS),
    };
    Ok(CheckedProof { id, renew_nonce: freshness == Some(NonceFreshness::RotationDue) })
}

/// `htu` must be the configured origin plus the request path, both sides normalised as RFC 3986
/// §6.2.2-6.2.3 says (scheme and host case, percent-encoding, dot segments, the scheme's default
/// port, an empty path); a query or fragment in `htu` is ignored (RFC 9449 §4.3). Anything else —
/// userinfo, another port, a path differing in case — is a mismatch.
pub fn htu_matches(htu: &str, origin: &str, path: &str) -> bool {
    let htu = htu.split(['?', '#']).next().unwrap_or("");
    match (normalize_url(htu), normalize_url(origin), normalize_path(path)) {
        (Some((ho, hp)), Some((oo, _)), Some(p)) => ho == oo && hp == p,
        _ => false,
    }
}

/// `scheme://host[:port]` and the path of an absolute http(s) URL without query or fragment,
/// normalised; `None` when it is not one.
fn normalize_url(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if authority.is_empty() || authority.contains(['@', '%', ' ', '\\']) {
        return None;
    }
    // The port follows the last colon outside an IPv6 literal's brackets.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority.get(i..)?.contains(']') => (authority.get(..i)?, authority.get(i.saturating_add(1)..)?),
        _ => (authority, ""),
    };
    if host.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: Option<u16> = match port {
        "" => None,
        digits => Some(digits.parse().ok()?),
    };
    let mut origin = scheme;
    origin.push_str("://");
    origin.push_str(&host.to_ascii_lowercase());
    // An empty port, or the scheme's own, is the same as none (RFC 3986 §6.2.3).
    if let Some(port) = port.filter(|p| *p != default_port) {
        origin.push(':');
        origin.push_str(&port.to_string());
    }
    Some((origin, normalize_path(if path.is_empty() { "/" } else { path })?))
}

/// A path with percent-encoding normalised (unreserved characters decoded, hex digits upper case)
/// and dot segments removed; `None` for a broken percent-encoding or a non-ASCII byte.
fn normalize_path(path: &str) -> Option<String> {
    let mut decoded = String::with_capacity(path.len());
    let mut bytes = path.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = |c: Option<u8>| c.and_then(|c| (c as char).to_digit(16));
                let (hi, lo) = (hex(bytes.next())?, hex(bytes.next())?);
                let value = u8::try_from(hi.checked_mul(16)?.checked_add(lo)?).ok()?;
                if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
                    decoded.push(char::from(value));
                } else {
                    decoded.push('%');
                    decoded.push_str(&format!("{value:02X}"));
                }
            }
            b if b.is_ascii_graphic() => decoded.push(char::from(b)),
            _ => return None,
        }
    }
    Some(remove_dot_segments(&decoded))
}

/// RFC 3986 §5.2.4, on segments: `.` dropped, `..` drops the segment before it.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." | ".." => {
                if *seg == ".." {
                    out.pop();
                }
                // A trailing dot segment leaves a trailing slash.
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut p = String::with_capacity(path.len());
    for seg in &out {
        p.push('/');
        p.push_str(seg);
    }
    if p.is_empty() {
        p.push('/');
    }
    p
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
