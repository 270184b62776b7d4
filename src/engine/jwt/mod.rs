//! Access tokens: JWS parsing, claims, signature backends, issuers' fetched keys, and the
//! verified-token cache. (Key material itself is `engine::keys`, shared with the policy loader.)

pub mod authenticator;
pub mod cache;
pub mod claims;
pub mod jwks;
pub mod jws;
pub mod native;
pub mod verifier;

pub use authenticator::{Authenticator, VerifiedToken};
