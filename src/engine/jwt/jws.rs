//! JWS compact serialization: split, decode header and payload, keep the signing input.
//!
//! Parsing is the first line of defence and runs before any signature, so it is strict and cheap:
//! three parts, canonical base64url, a JSON object header with a string `alg`, no `crit`.

use crate::engine::base64url;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The protected header members nhi-guard reads. Others are ignored; `crit` is refused because
/// honouring an extension we do not implement would be a silent downgrade.
#[derive(Debug, Deserialize)]
pub struct JoseHeader {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
    /// Embedded key (DPoP proofs carry one; access tokens must not be trusted for it).
    #[serde(default)]
    pub jwk: Option<serde_json::Value>,
}

/// A decoded, not yet verified JWS.
#[derive(Debug)]
pub struct Jws<'a, C> {
    pub header: JoseHeader,
    pub claims: C,
    /// `base64url(header) "." base64url(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// Why a JWS did not decode. Callers map both to their own reason codes.
#[derive(Debug, PartialEq, Eq)]
pub enum JwsError {
    /// Not three canonical base64url parts, or the JSON is not what a JWS holds.
    Malformed,
    /// The header uses `crit`, which we refuse.
    CriticalHeader,
}

/// Splits and decodes a compact JWS. `C` is the claims type the payload must deserialize into.
pub fn decode<C: DeserializeOwned>(token: &str) -> Result<Jws<'_, C>, JwsError> {
    let mut parts = token.splitn(4, '.');
    let (h, p, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        // An empty signature decodes (and later fails to verify), so `alg: none` is reported as such.
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => (h, p, s),
        _ => return Err(JwsError::Malformed),
    };
    let header_json = base64url::decode(h.as_bytes()).ok_or(JwsError::Malformed)?;
    let header: JoseHeader = serde_json::from_slice(&header_json).map_err(|_| JwsError::Malformed)?;
    if header.crit.is_some() {
        return Err(JwsError::CriticalHeader);
    }
    let payload = base64url::decode(p.as_bytes()).ok_or(JwsError::Malformed)?;
    let claims: C = serde_json::from_slice(&payload).map_err(|_| JwsError::Malformed)?;
    let signature = base64url::decode(s.as_bytes()).ok_or(JwsError::Malformed)?;
    let end = h.len().checked_add(1).and_then(|n| n.checked_add(p.len())).ok_or(JwsError::Malformed)?;
    let signing_input = token.get(..end).ok_or(JwsError::Malformed)?;
    Ok(Jws { header, claims, signing_input, signature })
}
