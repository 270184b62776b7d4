//! Sender binding: may *this presenter* use this token? RFC 8705 certificate-bound tokens, RFC 9449
//! DPoP, clients pinned to their mTLS credentials, and route/client demands for bound tokens. Also
//! workload identity: a registered workload authenticated by its mTLS SPIFFE ID alone.

use crate::engine::credentials::{PeerCertificate, Scheme};
use crate::engine::dpop::{self, ProofContext};
use crate::engine::jwt::verifier::SignatureVerifier;
use crate::engine::jwt::VerifiedToken;
use crate::engine::policy::{Client, Policy, RouteRule};
use crate::engine::reason::Reason;
use crate::engine::replay::{ReplayError, ReplayGuard};

/// How the caller authenticated, as sent upstream in `x-nhi-auth` and in the audit's token stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A bearer token (possibly from a pinned client over its own certificate).
    Bearer,
    /// A token bound to the mTLS client certificate (`cnf.x5t#S256`).
    MtlsBound,
    /// A DPoP-bound token with a valid proof.
    Dpop,
    /// No token: a registered workload's SPIFFE ID from mutual TLS.
    Workload,
}

impl AuthMethod {
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Bearer => "bearer",
            AuthMethod::MtlsBound => "mtls-bound",
            AuthMethod::Dpop => "dpop",
            AuthMethod::Workload => "workload",
        }
    }
}

/// How the presenter proved its right to the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderCheck {
    pub method: AuthMethod,
    /// The DPoP proof's server nonce is due for rotation: the response carries the next one.
    pub renew_nonce: bool,
}

/// What the request brought besides the token.
pub struct Presenter<'a> {
    pub scheme: Scheme,
    /// The `DPoP` header, already reduced to at most one value (or the reason it is not).
    pub dpop: Result<Option<&'a str>, Reason>,
    pub peer: Option<PeerCertificate<'a>>,
    pub method: &'a str,
    /// Request path without query.
    pub path: &'a str,
    pub token_text: &'a str,
    pub now: i64,
}

/// Checks the token's binding against the presenter. Runs on every request, cached token or not:
/// the binding is a property of the token, the presenter of the connection.
pub fn check(
    policy: &Policy,
    route: &RouteRule,
    client: &Client,
    token: &VerifiedToken,
    p: &Presenter<'_>,
    verifier: &dyn SignatureVerifier,
    replay: &mut dyn ReplayGuard,
) -> Result<SenderCheck, Reason> {
    let bound_to_key = token.binding.dpop_jkt.as_deref();
    let mut method = AuthMethod::Bearer;
    let mut renew_nonce = false;
    match (p.scheme, bound_to_key) {
        (Scheme::Bearer, None) => {}
        // RFC 9449 §7.2: a DPoP-bound token must not work as a bearer token.
        (Scheme::Bearer, Some(_)) if policy.dpop.is_none() => return Err(Reason::DpopNotEnabled),
        (Scheme::Bearer, Some(_)) => return Err(Reason::DpopDowngrade),
        (Scheme::Dpop, _) if policy.dpop.is_none() => return Err(Reason::DpopNotEnabled),
        (Scheme::Dpop, None) => return Err(Reason::DpopTokenUnbound),
        (Scheme::Dpop, Some(jkt)) => {
            let settings = policy.dpop.as_ref().ok_or(Reason::DpopNotEnabled)?;
            let proof = p.dpop?.ok_or(Reason::DpopProofMissing)?;
            let nonce = settings.nonce.as_ref().filter(|_| route.require_dpop_nonce);
            let request =
                ProofContext { method: p.method, path: p.path, access_token: p.token_text, jkt, now: p.now, nonce };
            let proof = dpop::check_proof(settings, proof, &request, verifier)?;
            match replay.record(&proof.id, p.now) {
                Ok(()) => {}
                Err(ReplayError::Replayed) => return Err(Reason::DpopReplayed),
                Err(ReplayError::Unavailable(_)) => return Err(Reason::DpopReplayCacheUnavailable),
            }
            method = AuthMethod::Dpop;
            renew_nonce = proof.renew_nonce;
        }
    }
    if let Some(cert) = token.binding.certificate {
        let peer = p.peer.ok_or(Reason::CertificateBindingMissing)?;
        if peer.sha256 != cert {
            return Err(Reason::CertificateBindingMismatch);
        }
        if method == AuthMethod::Bearer {
            method = AuthMethod::MtlsBound;
        }
    }
    if client.is_pinned() && !owns(client, p.peer.as_ref()) {
        return Err(Reason::ClientCredentialMismatch);
    }
    if (route.require_sender_constraint || client.require_sender_constraint) && !token.binding.is_bound() {
        return Err(Reason::SenderConstraintRequired);
    }
    Ok(SenderCheck { method, renew_nonce })
}

/// The connection's certificate is one the client registered (by thumbprint or SPIFFE ID).
fn owns(client: &Client, peer: Option<&PeerCertificate<'_>>) -> bool {
    let Some(peer) = peer else { return false };
    client.certificate_thumbprints.contains(&peer.sha256)
        || peer.spiffe_id().is_some_and(|id| client.spiffe_ids.iter().any(|s| s == id))
}

/// The registered workload behind a SPIFFE ID (exact match), for routes that take workload identity.
pub fn workload<'p>(policy: &'p Policy, peer: Option<&PeerCertificate<'_>>) -> Result<&'p Client, Reason> {
    let id = peer.and_then(|p| p.spiffe_id()).ok_or(Reason::TokenMissing)?;
    policy.client_by_spiffe_id(id).ok_or(Reason::WorkloadUnknown)
}
