//! The service's own TLS listener, with client certificates: who is calling, by certificate.
//!
//! With `tls` in the config the service listens with rustls; with `tls.client_ca_file` it asks for a
//! client certificate, verifies it against that CA (a certificate is optional at the handshake, so
//! bearer-only callers still connect) and hands each request the verified identity: the
//! certificate's SHA-256 (x5t#S256) and its URI SANs (SPIFFE IDs). Push streams and API callers
//! name the identity they accept (`client_certificate`).

use crate::feed::config::{CertMatch, TlsMaterial};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The verified client certificate of a connection, if it presented one.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity {
    /// base64url SHA-256 of the certificate (RFC 8705 `x5t#S256`).
    pub sha256: Option<String>,
    pub uri_sans: Vec<String>,
}

impl PeerIdentity {
    pub fn from_certificate(der: &[u8]) -> PeerIdentity {
        use x509_cert::der::Decode;
        let sha256 = Some(crate::engine::base64url::encode(&Sha256::digest(der)));
        let mut uri_sans = Vec::new();
        if let Ok(cert) = x509_cert::Certificate::from_der(der) {
            if let Ok(Some((_, san))) = cert.tbs_certificate.get::<x509_cert::ext::pkix::SubjectAltName>() {
                for name in san.0 {
                    if let x509_cert::ext::pkix::name::GeneralName::UniformResourceIdentifier(uri) = name {
                        uri_sans.push(uri.to_string());
                    }
                }
            }
        }
        PeerIdentity { sha256, uri_sans }
    }

    /// Whether this identity is the one `want` names.
    pub fn matches(&self, want: &CertMatch) -> bool {
        match want {
            CertMatch::UriSan(uri) => self.uri_sans.iter().any(|u| u == uri),
            CertMatch::Sha256(t) => self.sha256.as_deref().is_some_and(|s| crate::feed::config::same_secret(s, t)),
        }
    }
}

/// The rustls server config: our certificate, and the client CA if client certificates are used.
pub fn server_config(m: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let builder = match &m.client_roots {
        Some(roots) => {
            let mut store = RootCertStore::empty();
            for c in roots {
                store.add(c.clone()).map_err(|e| format!("tls.client_ca_file: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("tls.client_ca_file: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(m.certs.clone(), m.key.clone_key())
        .map_err(|e| format!("tls.cert_file / tls.key_file: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The identity of a finished handshake's peer.
pub fn peer_of(certs: Option<&[CertificateDer<'_>]>) -> PeerIdentity {
    match certs.and_then(|c| c.first()) {
        Some(leaf) => PeerIdentity::from_certificate(leaf.as_ref()),
        None => PeerIdentity::default(),
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            // A handshake that does not finish in 10 s is dropped (slowloris at the TLS layer).
            let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let peer = peer_of(tls.get_ref().1.peer_certificates());
            let service = hyper_util::service::TowerToHyperService::new(router.layer(axum::Extension(peer)));
            let io = hyper_util::rt::TokioIo::new(tls);
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(io, service)
                .await;
        });
    }
}
