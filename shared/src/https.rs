//! The process's HTTPS clients, both rustls on aws-lc-rs with the Mozilla roots compiled in (no
//! `/etc/ssl/certs` read at cold start: 2.3 ms saved, docs/benchmarks.md):
//! - [`shared_client`] for everything that is not an AWS SDK call (the social platforms' APIs,
//!   the identity providers' discovery documents and key sets), short timeouts;
//! - [`sdk_http_client`] for every AWS SDK client of a function, its TLS roots parsed once per
//!   process instead of once per SDK client.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_runtime_api::shared::IntoShared;
use aws_smithy_types::config_bag::ConfigBag;

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

/// The HTTPS client of every AWS SDK client a process builds (pass it to
/// `aws_config::defaults(..).http_client`): the SDK's own hyper + rustls client, trusting the
/// Mozilla roots compiled in. Its connectors are cached per timeout setting and shared by all
/// SDK clients; the SDK builds one more for each client it configures, to load the roots early,
/// which this client does only for the first (measured: docs/benchmarks.md, cold start).
pub fn sdk_http_client() -> SharedHttpClient {
    let context = TlsContext::builder()
        .with_trust_store(
            TrustStore::empty()
                .with_native_roots(false)
                .with_pem_certificate(mozilla_roots_pem()),
        )
        .build()
        // Building a TLS context only stores its trust store; it cannot fail.
        .unwrap_or_default();
    let inner = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https();
    RootsLoadedOnce {
        inner,
        loaded: OnceLock::new(),
    }
    .into_shared()
}

/// The Mozilla roots (`webpki-root-certs`) as PEM, the one form the SDK's trust store takes.
fn mozilla_roots_pem() -> Vec<u8> {
    use base64::Engine as _;
    let mut pem = Vec::with_capacity(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() * 2_048);
    for certificate in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(certificate.as_ref());
        for line in encoded.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem
}

/// The SDK's client, asked to load its roots early once per process rather than once per SDK
/// client (each time a connector is built and dropped: ~150 certificates parsed again).
#[derive(Debug)]
struct RootsLoadedOnce {
    inner: SharedHttpClient,
    loaded: OnceLock<()>,
}

impl HttpClient for RootsLoadedOnce {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.inner.http_connector(settings, components)
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        let mut result = Ok(());
        self.loaded.get_or_init(|| {
            result = self
                .inner
                .validate_base_client_config(runtime_components, cfg);
        });
        result
    }

    fn validate_final_config(
        &self,
        runtime_components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_final_config(runtime_components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
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

    #[test]
    fn the_sdks_trust_store_holds_every_mozilla_root_as_pem() {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let pem = super::mozilla_roots_pem();
        let parsed = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .expect("valid PEM");
        assert_eq!(parsed.len(), webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        assert!(
            parsed
                .iter()
                .zip(webpki_root_certs::TLS_SERVER_ROOT_CERTS)
                .all(|(ours, theirs)| ours.as_ref() == theirs.as_ref())
        );
    }
}
