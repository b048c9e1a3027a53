//! The trust-store choice, measured: what the functions' TLS clients do at start to trust
//! AWS's certificates — read the system's roots (`/etc/ssl/certs`, the SDK's default) or build
//! them from the Mozilla roots compiled into the binary (what the service does since this was
//! measured).

use std::time::Instant;

use rustls::pki_types::pem::PemObject;

use serde_json::{Value, json};

use crate::report::{ms, percentile};

/// Median time of each way over `rounds`, and how many roots each yields.
pub fn measure(rounds: usize) -> Value {
    let (mut native, mut bundled) = (Vec::new(), Vec::new());
    let (mut native_count, mut bundled_count) = (0, 0);
    for _ in 0..rounds {
        let started = Instant::now();
        let mut store = rustls::RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        let (added, _) = store.add_parsable_certificates(loaded.certs);
        native.push(started.elapsed().as_secs_f64() * 1000.0);
        native_count = added;

        // What the service does with the bundled roots: each as PEM, parsed back (the SDK's
        // trust store takes PEM), into a rustls store.
        let started = Instant::now();
        let mut store = rustls::RootCertStore::empty();
        for certificate in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
            let pem = pipewise::aws::pem_certificate(certificate.as_ref());
            if let Ok(parsed) = rustls::pki_types::CertificateDer::from_pem_slice(&pem) {
                store.add_parsable_certificates([parsed]);
            }
        }
        bundled.push(started.elapsed().as_secs_f64() * 1000.0);
        bundled_count = store.len();
    }
    let figure = json!({
        "native_roots_ms": ms(percentile(&native, 50.0)),
        "native_roots_certificates": native_count,
        "bundled_roots_ms": ms(percentile(&bundled, 50.0)),
        "bundled_roots_certificates": bundled_count,
    });
    eprintln!("trust store {figure}");
    figure
}
