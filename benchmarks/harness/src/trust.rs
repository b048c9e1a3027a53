//! The trust-store choice, measured three ways: read the system's roots (`/etc/ssl/certs`, what
//! the SDK's default client does, once per process); build the Mozilla roots compiled into the
//! binary as trust anchors (what our own HTTPS client does); or hand those roots to the SDK's
//! client as PEM, which it parses again for every client's connector.

use std::time::Instant;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::report::{ms, percentile};

/// A DER certificate as PEM, the form the SDK's trust store takes.
fn pem_certificate(der: &[u8]) -> Vec<u8> {
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

fn timed(samples: &mut Vec<f64>, work: impl FnOnce() -> usize) -> usize {
    let started = Instant::now();
    let count = work();
    samples.push(started.elapsed().as_secs_f64() * 1000.0);
    count
}

/// Median time of each way over `rounds`, and how many roots each yields.
pub fn measure(rounds: usize) -> Value {
    let pems: Vec<Vec<u8>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|certificate| pem_certificate(certificate.as_ref()))
        .collect();
    let (mut native, mut anchors, mut pem) = (Vec::new(), Vec::new(), Vec::new());
    let (mut native_count, mut anchor_count, mut pem_count) = (0, 0, 0);
    for _ in 0..rounds {
        native_count = timed(&mut native, || {
            let mut store = rustls::RootCertStore::empty();
            store
                .add_parsable_certificates(rustls_native_certs::load_native_certs().certs)
                .0
        });
        anchor_count = timed(&mut anchors, || {
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()).len()
        });
        pem_count = timed(&mut pem, || {
            let mut store = rustls::RootCertStore::empty();
            for text in &pems {
                if let Ok(parsed) = CertificateDer::from_pem_slice(text) {
                    store.add_parsable_certificates([parsed]);
                }
            }
            store.len()
        });
    }
    let figure = json!({
        "native_roots_ms": ms(percentile(&native, 50.0)),
        "native_roots_certificates": native_count,
        "bundled_roots_ms": ms(percentile(&anchors, 50.0)),
        "bundled_roots_certificates": anchor_count,
        "bundled_pem_per_connector_ms": ms(percentile(&pem, 50.0)),
        "bundled_pem_certificates": pem_count,
    });
    eprintln!("trust store {figure}");
    figure
}
