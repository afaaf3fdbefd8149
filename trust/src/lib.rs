//! Whom to trust: the system's CA roots, plus a private CA (`ca_file`) where a
//! receiver, a firewall's API or a server sits behind one. Every HTTP client
//! portwatch makes (notification channels, the block controller's http driver, the
//! command line) is made here, so that they all verify the same way, never follow
//! redirects and say who they are.

use std::sync::Arc;

pub use rustls::pki_types::CertificateDer;

/// Why a trust set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file is not a PEM certificate bundle.
    #[error("not a PEM certificate bundle: {0}")]
    NotPem(String),
    /// The bundle holds no certificate.
    #[error("no certificate in the PEM bundle")]
    Empty,
    /// TLS could not be set up.
    #[error("TLS set-up: {0}")]
    Tls(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The certificates of a PEM bundle.
pub fn parse_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrustError::NotPem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TrustError::Empty);
    }
    Ok(certs)
}

/// A TLS client configuration trusting the system's roots and `extra` CA
/// certificates.
pub fn client_config(extra: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, TrustError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra.iter().cloned(), provider.clone())
            .map_err(|e| TrustError::Tls(e.to_string()))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TrustError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// An HTTP client trusting the system's roots and `extra` CA certificates; it
/// follows no redirect.
pub fn http_client(extra: &[CertificateDer<'static>]) -> Result<reqwest::Client, TrustError> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(extra)?)
        .user_agent(concat!("portwatch/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_without_certificates_is_named_as_such() {
        assert!(matches!(parse_pem(b""), Err(TrustError::Empty)));
        let text = parse_pem(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
            .expect_err("not base64")
            .to_string();
        assert!(text.contains("PEM"), "{text}");
        assert!(http_client(&[]).is_ok(), "the system's roots alone");
    }
}
