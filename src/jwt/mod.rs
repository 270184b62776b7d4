//! Access tokens: JWS parsing, claims, keys, signature backends, and the verified-token cache.

pub mod authenticator;
pub mod base64url;
pub mod cache;
pub mod claims;
pub mod jwks;
pub mod jws;
pub mod keys;
pub mod native;
pub mod verifier;

pub use authenticator::{Authenticator, VerifiedToken};
