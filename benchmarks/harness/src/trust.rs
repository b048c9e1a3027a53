//! The trust-store choice, measured: what the functions' TLS clients do at start to trust
//! AWS's certificates — read the system's roots (`/etc/ssl/certs`, what the SDK's default
//! client and ours do today) or build them from the roots compiled into the binary.

use std::time::Instant;

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

        let started = Instant::now();
        let store =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
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
