//! The HTTPS client for everything that is not an AWS SDK call (the social platforms' APIs, the
//! identity providers' discovery documents and key sets): rustls on aws-lc-rs (the SDK's
//! provider, so no second crypto library), the Mozilla roots compiled in as trust anchors (no
//! `/etc/ssl/certs` read when it is built, which the Cognito verifier does at cold start: 2.3 ms
//! saved, docs/benchmarks.md), short timeouts.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The process's one client (see [`shared_client`]).
static SHARED: OnceLock<Option<reqwest::Client>> = OnceLock::new();

/// The process's one HTTPS client, built on first use (so once per cold start, and only by a
/// function that calls out) and shared by every platform, token endpoint and key-set fetch:
/// one connection pool, the roots parsed once.
pub fn shared_client() -> Option<reqwest::Client> {
    SHARED.get_or_init(https_client).clone()
}

/// The TLS settings of every outbound client: rustls on aws-lc-rs with the bundled Mozilla
/// roots; `None` only when TLS cannot be configured at all.
pub fn tls_config() -> Option<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Some(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Builds the client; `None` only when TLS cannot be configured at all (logged).
pub fn https_client() -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config()?)
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_https_client_builds_with_the_bundled_roots() {
        assert!(super::https_client().is_some());
        assert!(
            webpki_roots::TLS_SERVER_ROOTS.len() > 100,
            "the Mozilla roots are compiled in"
        );
    }
}
