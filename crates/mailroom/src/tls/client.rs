//! The client side of TLS for mail between servers: opportunistic STARTTLS (RFC 3207, RFC 7435).
//!
//! Mail between servers is encrypted whenever the other side offers STARTTLS, but its
//! certificate is not required to verify: most mail servers present certificates that would
//! not (self-signed, or for another name), and refusing them would send the mail in clear
//! instead, which is worse. This protects against reading on the wire, not against an active
//! attacker; MTA-STS and DANE are what would (not built yet). The handshake's signatures are
//! still checked, so the session is a real TLS session with the key the server presented.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::{provider, versions};
use crate::config::TlsVersion;

/// Accepts any certificate; checks the handshake signatures with the crypto provider.
#[derive(Debug)]
struct Opportunistic(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Opportunistic {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration of opportunistic STARTTLS (TLS 1.2 and 1.3).
pub fn opportunistic() -> Arc<rustls::ClientConfig> {
    let p = provider();
    let config = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(versions(TlsVersion::V12))
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(Opportunistic(p)))
                .with_no_client_auth()
        });
    match config {
        Ok(c) => Arc::new(c),
        // The provider supports both versions; this cannot fail, but if it did the default
        // configuration (which verifies) would be the safe choice.
        Err(_) => Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    }
}
