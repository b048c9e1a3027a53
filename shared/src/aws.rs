//! AWS SDK setup and the mapping of SDK failures onto API errors.
//!
//! Endpoints, region and credentials come only from the SDK's standard settings
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...), so the same binary talks to AWS, LocalStack or moto.

use std::fmt::Debug;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::error::Error;

/// Longest wait for a connection to an AWS endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for one attempt of a call (DynamoDB, KMS and SQS answer in milliseconds).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a call with its retries: a hanging dependency costs the caller a 503 inside
/// the shortest function timeout (10 s, template.yaml `Globals`), never the timeout itself.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// Loads the shared SDK configuration; call once per cold start and build every client from it.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(sdk_https_client())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(CALL_TIMEOUT)
                .build(),
        )
        .load()
        .await
}

/// The SDK's HTTPS client (rustls on aws-lc-rs, as the SDK's default) trusting the Mozilla roots
/// compiled into the binary: the default reads the ~150 files of `/etc/ssl/certs` at every cold
/// start, which `make bench` measured at 2.3 ms of an 8 ms init (docs/benchmarks.md, trust store).
/// Roots then change with a dependency bump rather than with the runtime image; AWS endpoints
/// chain to Amazon Trust Services roots, which both sets hold.
fn sdk_https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let mut roots = TrustStore::empty().with_native_roots(false);
    for certificate in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        roots.add_pem_certificate(pem_certificate(certificate.as_ref()));
    }
    let builder = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
    match TlsContext::builder().with_trust_store(roots).build() {
        Ok(context) => builder.tls_context(context).build_https(),
        // Cannot happen with valid bundled roots; the SDK's own default is the safe fallback.
        Err(error) => {
            tracing::error!(%error, "bundled trust roots refused; using the system's");
            builder.build_https()
        }
    }
}

/// A DER certificate as PEM (what the SDK's trust store takes).
pub fn pem_certificate(der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for line in encoded.as_bytes().chunks(64) {
        pem.extend_from_slice(line);
        pem.push(b'\n');
    }
    pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    pem
}

/// Turns an SDK failure into the API's answer: 503 with `Retry-After` for any failure of the
/// dependency itself (throttling, outage, a disabled key, a missing table); 422 `item_too_large`
/// when DynamoDB refuses an item over 400 KB (retrying cannot help); 500 when we built a request
/// the service calls invalid (a bug). The SDK's text only reaches the log.
pub fn dependency_error<E, R>(error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    match &error {
        SdkError::ConstructionFailure(_) => Error::internal(error),
        // DynamoDB refuses an item over 400 KB; retrying cannot help, so it is never a 503.
        SdkError::ServiceError(service)
            if service.err().code() == Some("ValidationException")
                && service
                    .err()
                    .message()
                    .is_some_and(|m| m.to_ascii_lowercase().contains("item size")) =>
        {
            Error::LimitExceeded {
                code: "item_too_large",
                message: "What this request would store is over DynamoDB's 400 KB item limit; \
                          send less data (fewer fields, shorter texts or fewer items)."
                    .into(),
            }
        }
        // Any other validation error is a request we built wrong: a bug, not an outage.
        SdkError::ServiceError(service) if service.err().code() == Some("ValidationException") => {
            Error::internal(error)
        }
        _ => Error::unavailable(error),
    }
}

/// The service error code of a failed call, if the service answered.
pub fn error_code<E, R>(error: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bundled_roots_survive_the_pem_round_trip() {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        assert!(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() > 100);
        for certificate in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
            let pem = super::pem_certificate(certificate.as_ref());
            let parsed = CertificateDer::from_pem_slice(&pem).expect("PEM");
            assert_eq!(parsed.as_ref(), certificate.as_ref());
        }
    }
}
