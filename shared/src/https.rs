//! The HTTPS client for everything that is not an AWS SDK call (the social platforms' APIs, the
//! identity providers' discovery documents and key sets): rustls on aws-lc-rs (the SDK's
//! provider, so no second crypto library), the system's trust roots, short timeouts.

use std::sync::Arc;
use std::time::Duration;

/// Builds the client; `None` only when TLS cannot be configured at all (logged).
pub fn https_client() -> Option<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        tracing::error!("no trust roots found for outgoing HTTPS calls");
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_https_client_builds_with_system_roots() {
        assert!(super::https_client().is_some());
        assert!(
            !rustls_native_certs::load_native_certs().certs.is_empty(),
            "trust roots on this system"
        );
    }
}
