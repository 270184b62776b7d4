//! Envoy's native signature check (the `verify_signature` foreign function, BoringSSL), seen from the core.
//!
//! The core owns the wire format (a tiny protobuf) and the JWS-to-DER signature conversion, so both
//! are unit-tested natively; the filter shell only supplies the raw foreign-function call.
//! BoringSSL picks the algorithm from the key, so only keys already pinned to ES256 or RS256 go
//! there; PS256 and EdDSA (which it cannot do) stay on the pure-Rust path.

use super::verifier::{PureRust, SignatureVerifier, VerifierFault};
use crate::engine::keys::{Alg, VerificationKey};

/// The raw host call: `call_foreign_function(name, args)`.
pub trait ForeignFunction {
    /// `Ok(bytes)` is the function's result message; `Err` means the host refused the call.
    fn call(&self, name: &str, arguments: &[u8]) -> Result<Vec<u8>, String>;
}

/// Name of Envoy's foreign function.
pub const VERIFY_SIGNATURE: &str = "verify_signature";

/// Verifies ES256 and RS256 through the host, everything else in pure Rust.
pub struct HostSignatureVerifier<F: ForeignFunction> {
    host: F,
}

impl<F: ForeignFunction> HostSignatureVerifier<F> {
    pub fn new(host: F) -> Self {
        HostSignatureVerifier { host }
    }

    /// True when the host answers a known-good and a known-bad signature correctly. Called once at start;
    /// a host without the function (or a broken one) leaves the pure-Rust verifier in charge.
    pub fn probe(&self) -> bool {
        let Some((key, input, good)) = probe_vector() else {
            return false;
        };
        let mut bad = good.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        matches!(self.verify(&key, input, &good), Ok(true)) && matches!(self.verify(&key, input, &bad), Ok(false))
    }
}

impl<F: ForeignFunction> SignatureVerifier for HostSignatureVerifier<F> {
    fn verify(&self, key: &VerificationKey, signing_input: &[u8], signature: &[u8]) -> Result<bool, VerifierFault> {
        let der_signature;
        let sig = match key.alg {
            Alg::ES256 => match es256_to_der(signature) {
                Some(d) => {
                    der_signature = d;
                    &der_signature[..]
                }
                None => return Ok(false),
            },
            Alg::RS256 => signature,
            Alg::PS256 | Alg::EdDSA => return PureRust.verify(key, signing_input, signature),
        };
        let args = encode_arguments("sha256", &key.spki_der, sig, signing_input);
        let reply =
            self.host.call(VERIFY_SIGNATURE, &args).map_err(|e| VerifierFault(format!("verify_signature: {e}")))?;
        Ok(decode_result(&reply))
    }

    fn name(&self) -> &'static str {
        "envoy-native"
    }
}

/// Converts a JWS ES256 signature (r||s, 32 bytes each) to a DER ECDSA-Sig-Value with minimal
/// INTEGER encodings, which is the only form BoringSSL accepts (p256 does the encoding). `None` if
/// the length is wrong or r or s is out of range (zero, or not below the group order): such a
/// signature is invalid whatever the key.
pub fn es256_to_der(signature: &[u8]) -> Option<Vec<u8>> {
    let signature = p256::ecdsa::Signature::from_slice(signature).ok()?;
    Some(signature.to_der().as_bytes().to_vec())
}

/// Encodes `VerifySignatureArguments { hash_function=1; public_key=2; signature=3; text=4 }`.
pub fn encode_arguments(hash: &str, public_key_der: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let size = [hash.len(), public_key_der.len(), signature.len(), text.len(), 16]
        .iter()
        .fold(0usize, |a, n| a.saturating_add(*n));
    let mut out = Vec::with_capacity(size);
    for (tag, bytes) in [(0x0a, hash.as_bytes()), (0x12, public_key_der), (0x1a, signature), (0x22, text)] {
        out.push(tag);
        put_varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    out
}

/// Decodes `VerifySignatureResult { bool result = 1; string error = 2 }`. Anything but an explicit
/// `result = true` (including an empty message, which protobuf uses for false) is false.
pub fn decode_result(message: &[u8]) -> bool {
    let mut result = false;
    let mut rest = message;
    while let Some((&tag, tail)) = rest.split_first() {
        rest = tail;
        match tag {
            0x08 => match get_varint(&mut rest) {
                Some(v) => result = v == 1,
                None => return false,
            },
            0x12 => {
                let Some(len) = get_varint(&mut rest) else {
                    return false;
                };
                let Some(tail) = usize::try_from(len).ok().and_then(|l| rest.get(l..)) else {
                    return false;
                };
                rest = tail;
            }
            _ => return false,
        }
    }
    result
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(u8::try_from(v & 0x7f).unwrap_or(0) | 0x80);
        v >>= 7;
    }
    out.push(u8::try_from(v).unwrap_or(0x7f));
}

fn get_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, tail) = input.split_first()?;
        *input = tail;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// A fixed ES256 key, message and signature for the start-up probe (generated once; public data).
fn probe_vector() -> Option<(VerificationKey, &'static [u8], Vec<u8>)> {
    let jwk: crate::engine::keys::Jwk = serde_json::from_str(PROBE_JWK).ok()?;
    let key = jwk.to_key().ok()?;
    let sig = crate::engine::base64url::decode(PROBE_SIGNATURE.as_bytes())?;
    Some((key, PROBE_MESSAGE, sig))
}

const PROBE_JWK: &str = include_str!("probe_jwk.json");
const PROBE_MESSAGE: &[u8] = b"nhi-guard verify_signature probe";
const PROBE_SIGNATURE: &str = include_str!("probe_signature.txt");
