//! Signature verification behind one interface, with a pure-Rust implementation.
//!
//! The core asks a `SignatureVerifier`; the filter shell may hand it Envoy's native one
//! (`native::HostSignatureVerifier`), which delegates what BoringSSL cannot do back to `PureRust`.

use crate::engine::keys::{KeyMaterial, VerificationKey};

/// The verifier could not give an answer (as opposed to answering "invalid"). Fails closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierFault(pub String);

/// Checks one JWS signature against one pinned key.
pub trait SignatureVerifier {
    /// `Ok(true)` valid, `Ok(false)` invalid, `Err` when no answer could be had.
    fn verify(&self, key: &VerificationKey, signing_input: &[u8], signature: &[u8]) -> Result<bool, VerifierFault>;

    /// A short name for logs and the backend metric.
    fn name(&self) -> &'static str;
}

/// Pure-Rust verification (RustCrypto p256 and rsa, ed25519-compact): runs anywhere, natively and in wasm.
#[derive(Debug, Default, Clone, Copy)]
pub struct PureRust;

impl SignatureVerifier for PureRust {
    fn verify(&self, key: &VerificationKey, signing_input: &[u8], signature: &[u8]) -> Result<bool, VerifierFault> {
        use crate::engine::keys::Alg;
        Ok(match (&key.material, key.alg) {
            (KeyMaterial::P256(vk), Alg::ES256) => {
                use p256::ecdsa::signature::Verifier;
                // JWS ES256 signatures are exactly r||s, 64 bytes (RFC 7518 §3.4); DER is refused.
                match p256::ecdsa::Signature::from_slice(signature) {
                    Ok(sig) if signature.len() == 64 => vk.verify(signing_input, &sig).is_ok(),
                    _ => false,
                }
            }
            (KeyMaterial::Ed25519(pk), Alg::EdDSA) => match ed25519_compact::Signature::from_slice(signature) {
                Ok(sig) => pk.verify(signing_input, &sig).is_ok(),
                Err(_) => false,
            },
            (KeyMaterial::Rsa(pk), Alg::PS256) => {
                use rsa::signature::Verifier;
                let vk = rsa::pss::VerifyingKey::<sha2::Sha256>::new(pk.as_ref().clone());
                match rsa::pss::Signature::try_from(signature) {
                    Ok(sig) => vk.verify(signing_input, &sig).is_ok(),
                    Err(_) => false,
                }
            }
            (KeyMaterial::Rsa(pk), Alg::RS256) => {
                use rsa::signature::Verifier;
                let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(pk.as_ref().clone());
                match rsa::pkcs1v15::Signature::try_from(signature) {
                    Ok(sig) => vk.verify(signing_input, &sig).is_ok(),
                    Err(_) => false,
                }
            }
            // A key is pinned to one alg at load; any other pairing is a bug, so refuse.
            _ => false,
        })
    }

    fn name(&self) -> &'static str {
        "pure-rust"
    }
}
