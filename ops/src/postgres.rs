//! The migration's connection to the old PostgreSQL: TLS with certificate verification unless
//! the URL asks for plaintext in so many words (`sslmode=disable`, for a local database).
//!
//! - TLS is rustls on aws-lc-rs (the provider the rest of the service uses) through
//!   `tokio-postgres-rustls`. The server's certificate chain is verified against the Mozilla
//!   roots compiled into the binary (`webpki-roots`, as `pipewise::https` does), or against the
//!   PEM file named by `sslrootcert=` (libpq's parameter: a managed database's own CA, such as
//!   Supabase's or Amazon RDS's, is not a public root), and its name against the host.
//! - Every `sslmode` but `disable` means verified TLS, never a fallback to plaintext:
//!   libpq's default `prefer` (and `allow`) would quietly talk plaintext to a server without
//!   TLS, or to anyone in between who claims to be one; here they are `require`, and
//!   `verify-ca` / `verify-full` (which tokio-postgres does not parse) are what `require` already
//!   does. An unknown mode is refused.
//! - Errors never repeat the URL (it holds the password).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_postgres::config::SslMode;

/// How the connection is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// TLS, the server's certificate verified against the compiled-in Mozilla roots.
    Tls,
    /// TLS, the server's certificate verified against the roots of this PEM file only.
    TlsWithRoots(PathBuf),
    /// No TLS: only for `sslmode=disable`.
    Plaintext,
}

/// A connection string read: the driver's settings and how to connect.
#[derive(Debug)]
pub struct ConnectionSettings {
    /// The driver's settings (`ssl_mode` is `Require` or, for plaintext, `Disable`).
    pub config: tokio_postgres::Config,
    /// TLS or not, and with which roots.
    pub transport: Transport,
}

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL cannot be read (its text is never repeated: it holds the password).
    #[error("DATABASE_URL is not a PostgreSQL connection string the tool can read: {0}")]
    InvalidUrl(String),
    /// An `sslmode` no PostgreSQL client knows.
    #[error(
        "DATABASE_URL: sslmode={0} is unknown (use verify-full, require, or disable for a local database)"
    )]
    UnknownSslMode(String),
    /// The `sslrootcert` file cannot be read or holds no certificate.
    #[error("sslrootcert {path}: {problem}")]
    RootCertificates {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// TLS cannot be configured.
    #[error("TLS cannot be configured: {0}")]
    Tls(String),
    /// The server refused or could not be reached (TLS failures included).
    #[error("the old database is unreachable: {0}")]
    Unreachable(String),
}

/// Reads a `DATABASE_URL` (a `postgres://` URL or libpq's `key=value` form).
pub fn settings(url: &str) -> Result<ConnectionSettings, ConnectError> {
    let (rest, ssl_mode) = take_parameter(url, "sslmode");
    let (rest, root_cert) = take_parameter(&rest, "sslrootcert");
    let mut config: tokio_postgres::Config =
        rest.parse().map_err(|error: tokio_postgres::Error| {
            // The driver names the option, never its value.
            ConnectError::InvalidUrl(error.to_string())
        })?;
    let transport = match ssl_mode.as_deref() {
        Some("disable") => Transport::Plaintext,
        None | Some("allow" | "prefer" | "require" | "verify-ca" | "verify-full") => {
            match root_cert.filter(|path| !path.is_empty()) {
                Some(path) => Transport::TlsWithRoots(PathBuf::from(path)),
                None => Transport::Tls,
            }
        }
        Some(other) => return Err(ConnectError::UnknownSslMode(other.to_owned())),
    };
    config.ssl_mode(match transport {
        Transport::Plaintext => SslMode::Disable,
        Transport::Tls | Transport::TlsWithRoots(_) => SslMode::Require,
    });
    Ok(ConnectionSettings { config, transport })
}

/// The rustls configuration for `transport` (`None` for plaintext): aws-lc-rs, safe protocol
/// versions, the chosen roots, no client certificate.
pub fn tls_config(transport: &Transport) -> Result<Option<rustls::ClientConfig>, ConnectError> {
    let roots = match transport {
        Transport::Plaintext => return Ok(None),
        Transport::Tls => {
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned())
        }
        Transport::TlsWithRoots(path) => roots_from_file(path)?,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ConnectError::Tls(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(config))
}

/// Connects as `url` says (see the module's rules) and drives the connection in the
/// background.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, ConnectError> {
    let settings = settings(url)?;
    let unreachable = |error: tokio_postgres::Error| ConnectError::Unreachable(chain(&error));
    match tls_config(&settings.transport)? {
        None => {
            let (client, connection) = settings
                .config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(unreachable)?;
            tokio::spawn(connection);
            Ok(client)
        }
        Some(tls) => {
            let (client, connection) = settings
                .config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                .await
                .map_err(unreachable)?;
            tokio::spawn(connection);
            Ok(client)
        }
    }
}

/// What the tool tells the operator about the connection (no secret in it).
pub fn describe(transport: &Transport) -> String {
    match transport {
        Transport::Tls => {
            "TLS, server certificate verified against the compiled-in Mozilla roots".into()
        }
        Transport::TlsWithRoots(path) => format!(
            "TLS, server certificate verified against {}",
            path.display()
        ),
        Transport::Plaintext => "no TLS (sslmode=disable)".into(),
    }
}

/// An error with its causes (`error performing TLS handshake: invalid peer certificate: ...`):
/// the driver's own text stops at the first.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn roots_from_file(path: &Path) -> Result<rustls::RootCertStore, ConnectError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let problem = |problem: String| ConnectError::RootCertificates {
        path: path.to_owned(),
        problem,
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        CertificateDer::pem_file_iter(path).map_err(|error| problem(error.to_string()))?
    {
        let certificate = certificate.map_err(|error| problem(error.to_string()))?;
        roots
            .add(certificate)
            .map_err(|error| problem(error.to_string()))?;
    }
    if roots.is_empty() {
        return Err(problem("holds no PEM certificate".into()));
    }
    Ok(roots)
}

/// Removes every `key=value` of `key` from a connection string and returns the last value: in
/// a URL's query (percent-decoded) or among libpq's space-separated `key=value` pairs.
fn take_parameter(url: &str, key: &str) -> (String, Option<String>) {
    let mut value = None;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), None);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
                if name != key {
                    return true;
                }
                value = Some(
                    url::form_urlencoded::parse(format!("v={raw}").as_bytes())
                        .next()
                        .map(|(_, decoded)| decoded.into_owned())
                        .unwrap_or_default(),
                );
                false
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, value);
    }
    let kept: Vec<&str> = url
        .split_whitespace()
        .filter(|pair| match pair.split_once('=') {
            Some((name, raw)) if name.trim() == key => {
                value = Some(raw.trim_matches('\'').to_owned());
                false
            }
            _ => true,
        })
        .collect();
    (kept.join(" "), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> (Transport, SslMode) {
        let settings = settings(url).unwrap_or_else(|error| panic!("{url}: {error}"));
        (settings.transport, settings.config.get_ssl_mode())
    }

    #[test]
    fn tls_unless_the_url_says_sslmode_disable() {
        // Without sslmode: TLS, required (tokio-postgres' own default would be `prefer`).
        for url in [
            "postgres://migrator:pw@db.example.com:5432/postgres",
            "postgres://migrator@db.example.com/postgres?application_name=migrate",
            "host=db.example.com user=migrator dbname=postgres",
        ] {
            assert_eq!(mode(url), (Transport::Tls, SslMode::Require), "{url}");
        }
        // Explicitly plaintext, in both forms.
        for url in [
            "postgres://pipewise@127.0.0.1:5433/postgres?sslmode=disable",
            "postgres://pipewise@127.0.0.1/postgres?application_name=m&sslmode=disable",
            "host=127.0.0.1 port=5433 user=pipewise sslmode=disable",
        ] {
            assert_eq!(mode(url), (Transport::Plaintext, SslMode::Disable), "{url}");
        }
    }

    #[test]
    fn no_mode_but_disable_falls_back_to_plaintext() {
        // libpq's prefer and allow would talk plaintext to a server without TLS; require is
        // what the driver does when told `require`; verify-* are not even parsed by it.
        for requested in ["require", "prefer", "allow", "verify-ca", "verify-full"] {
            for url in [
                format!("postgres://m:pw@db.example.com/postgres?sslmode={requested}"),
                format!("host=db.example.com user=m sslmode={requested}"),
            ] {
                assert_eq!(mode(&url), (Transport::Tls, SslMode::Require), "{url}");
            }
        }
        // A mode nobody knows is refused, not guessed.
        let error = settings("postgres://m:hunter2@db.example.com/postgres?sslmode=disabled")
            .expect_err("an unknown sslmode");
        assert!(matches!(error, ConnectError::UnknownSslMode(ref m) if m == "disabled"));
        assert!(!error.to_string().contains("hunter2"));
        // A TLS configuration is built for every TLS transport, none for plaintext.
        assert!(tls_config(&Transport::Tls).unwrap().is_some());
        assert!(tls_config(&Transport::Plaintext).unwrap().is_none());
    }

    #[test]
    fn sslrootcert_replaces_the_compiled_in_roots() {
        let (transport, ssl_mode) = mode(
            "postgres://m:pw@db.example.com/postgres?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem",
        );
        assert_eq!(transport, Transport::TlsWithRoots("/tmp/ca.pem".into()));
        assert_eq!(ssl_mode, SslMode::Require);
        // The driver never sees sslrootcert (it would refuse the unknown option).
        let settings =
            settings("host=db.example.com user=m sslrootcert=/etc/ca.pem sslmode=require").unwrap();
        assert_eq!(
            settings.transport,
            Transport::TlsWithRoots("/etc/ca.pem".into())
        );

        // A PEM file of one real root loads; a missing or empty file is an error.
        let dir = std::env::temp_dir().join(format!("pipewise-roots-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = &webpki_root_certs::TLS_SERVER_ROOT_CERTS[0];
        let base64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, root);
        let lines: Vec<&str> = base64
            .as_bytes()
            .chunks(64)
            .map(|chunk| std::str::from_utf8(chunk).unwrap())
            .collect();
        let pem = dir.join("ca.pem");
        std::fs::write(
            &pem,
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            ),
        )
        .unwrap();
        assert!(
            tls_config(&Transport::TlsWithRoots(pem.clone()))
                .unwrap()
                .is_some()
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for path in [empty, dir.join("missing.pem")] {
            assert!(matches!(
                tls_config(&Transport::TlsWithRoots(path)),
                Err(ConnectError::RootCertificates { .. })
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_never_repeat_the_password() {
        for url in [
            "postgres://m:hunter2@db.example.com/postgres?sslmode=disable&nonsense=1",
            "postgres://m:hunter2@db.example.com:notaport/postgres",
        ] {
            let error = settings(url).expect_err("unreadable");
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
    }

    /// Nothing listens on the port: the connection fails, over TLS as asked, with a clean error.
    #[tokio::test]
    async fn an_unreachable_database_is_an_error_naming_no_secret() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let error = connect(&format!(
            "postgres://m:hunter2@127.0.0.1:{port}/postgres?connect_timeout=2"
        ))
        .await
        .expect_err("nothing listens");
        assert!(matches!(error, ConnectError::Unreachable(_)), "{error}");
        assert!(!error.to_string().contains("hunter2"));
    }
}
