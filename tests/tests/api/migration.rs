//! Moving in from the old stack: a real PostgreSQL (tools/with-postgres) holding the old schema,
//! configuration encrypted at test time by Python's `cryptography` Fernet (the library the old
//! service used), copied by `pipewise_ops::migration` into the emulator's tables.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use pipewise::accounts::AccountService;
use pipewise::config::vars;
use pipewise::targets::TargetStore;
use pipewise_ops::migration::{
    Destination, MigrationError, MigrationReport, MigrationSettings, migrate, read_old_tables,
};
use pipewise_tests::TestApp;
use serde_json::{Value, json};

const OLD_SCHEMA: &str = "
CREATE TABLE user_accounts (
  user_id text NOT NULL, account_id text NOT NULL, account_type text NOT NULL,
  configuration jsonb, connected boolean DEFAULT true,
  created_at timestamp DEFAULT now(), updated_at timestamp DEFAULT now(),
  UNIQUE (user_id, account_id));
CREATE TABLE communication_targets (
  id uuid PRIMARY KEY, user_id text NOT NULL, name text, email text, twitter_username text,
  instagram_username text, notes text, active boolean DEFAULT true,
  created_at timestamp DEFAULT now(), updated_at timestamp DEFAULT now());";

/// A fresh database in the test run's PostgreSQL, with the old schema.
async fn old_database() -> tokio_postgres::Client {
    let url = std::env::var("PIPEWISE_TEST_DATABASE_URL")
        .expect("PIPEWISE_TEST_DATABASE_URL: run the tests with `make test` (tools/with-postgres)");
    let name = format!("old_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    // The migration's own connection, as `pipewise-migrate` makes it: the test PostgreSQL has no
    // TLS, so the URL asks for plaintext explicitly.
    let client = pipewise_ops::postgres::connect(&plaintext_url(
        &url.replace("/postgres", &format!("/{name}")),
    ))
    .await
    .expect("connect to the test database with sslmode=disable");
    client.batch_execute(OLD_SCHEMA).await.unwrap();
    client
}

/// `url` with `sslmode=disable`: the only way the migration talks to a database without TLS.
fn plaintext_url(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}sslmode=disable")
}

/// The test PostgreSQL speaks no TLS. Without `sslmode`, and with `require` or libpq's `prefer`,
/// the migration refuses to connect rather than fall back to plaintext; only `disable` connects.
#[tokio::test]
async fn the_migration_never_falls_back_to_plaintext() {
    let url = std::env::var("PIPEWISE_TEST_DATABASE_URL")
        .expect("PIPEWISE_TEST_DATABASE_URL: run the tests with `make test` (tools/with-postgres)");
    for tls_url in [
        url.clone(),
        format!("{url}?sslmode=require"),
        format!("{url}?sslmode=prefer"),
        format!("{url}?sslmode=verify-full"),
    ] {
        let refused = pipewise_ops::postgres::connect(&tls_url)
            .await
            .err()
            .unwrap_or_else(|| panic!("{tls_url}: connected without TLS"));
        assert!(
            refused.to_string().contains("TLS"),
            "{tls_url}: refused for another reason: {refused}"
        );
    }
    let client = pipewise_ops::postgres::connect(&plaintext_url(&url))
        .await
        .expect("sslmode=disable connects");
    let row = client.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
}

/// A CA and a server certificate it signed for IP 127.0.0.1 only, made by Python's
/// `cryptography`: `(ca.pem, server.pem, server-key.pem)` in a fresh directory.
fn test_certificates() -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("pipewise-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = r#"
import datetime, ipaddress, sys
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
out = Path(sys.argv[1])
now = datetime.datetime.now(datetime.timezone.utc)
def name(cn): return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
ca_key = ec.generate_private_key(ec.SECP256R1())
ca = (x509.CertificateBuilder().subject_name(name("pipewise test CA")).issuer_name(name("pipewise test CA"))
      .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
      .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
      .sign(ca_key, hashes.SHA256()))
key = ec.generate_private_key(ec.SECP256R1())
cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256()))
(out / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
(out / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
(out / "server-key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
"#;
    let output = std::process::Command::new(root.join(".venv/bin/python"))
        .args(["-c", script])
        .arg(&dir)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server-key.pem"),
    )
}

/// A server that speaks PostgreSQL's TLS opening only: it answers the client's SSLRequest with
/// `S` and does the TLS handshake with `certificate`; for each connection it reports whether
/// the handshake completed, then hangs up.
fn tls_only_server(
    certificate: &std::path::Path,
    key: &std::path::Path,
) -> (u16, std::sync::mpsc::Receiver<bool>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{Read, Write};
    let chain = vec![CertificateDer::from_pem_file(certificate).unwrap()];
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (report, handshakes) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut ssl_request = [0u8; 8];
            if stream.read_exact(&mut ssl_request).is_err() || stream.write_all(b"S").is_err() {
                let _ = report.send(false);
                continue;
            }
            let mut tls = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut completed = true;
            while tls.is_handshaking() {
                if tls.complete_io(&mut stream).is_err() {
                    completed = false;
                    break;
                }
            }
            let _ = report.send(completed);
        }
    });
    (port, handshakes)
}

/// Certificates are verified: a server whose CA is not a public root is refused with the
/// compiled-in roots, accepted with its CA as `sslrootcert`, and refused under a name its
/// certificate does not carry (`localhost`, reached at 127.0.0.1 through `hostaddr`, for a
/// certificate of 127.0.0.1 only).
#[tokio::test]
async fn the_migration_verifies_the_servers_certificate() {
    let (ca, certificate, key) = test_certificates();
    let (port, handshakes) = tls_only_server(&certificate, &key);
    let next_handshake = || {
        handshakes
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the server saw a connection")
    };
    // The path as a URL query value (percent-encoding what a query would read otherwise).
    let ca_parameter: String = ca
        .to_str()
        .unwrap()
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '/' | '-' | '_' | '.' => c.to_string(),
            other => format!("%{:02X}", other as u32),
        })
        .collect();

    let Err(unknown_ca) = pipewise_ops::postgres::connect(&format!(
        "postgres://migrator:pw@127.0.0.1:{port}/postgres?sslmode=require"
    ))
    .await
    else {
        panic!("a certificate of an unknown CA was accepted");
    };
    assert!(!next_handshake(), "the handshake must not complete");
    assert!(
        unknown_ca.to_string().contains("invalid peer certificate"),
        "{unknown_ca}"
    );

    let Err(wrong_name) = pipewise_ops::postgres::connect(&format!(
        "postgres://migrator:pw@localhost:{port}/postgres?hostaddr=127.0.0.1&sslrootcert={ca_parameter}"
    ))
    .await
    else {
        panic!("a certificate for another name was accepted");
    };
    assert!(!next_handshake(), "the handshake must not complete");
    assert!(
        wrong_name.to_string().contains("not valid for name"),
        "{wrong_name}"
    );

    // With its CA the handshake completes (the stand-in then hangs up: no PostgreSQL behind it).
    let _ = pipewise_ops::postgres::connect(&format!(
        "postgres://migrator:pw@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={ca_parameter}"
    ))
    .await;
    assert!(next_handshake(), "TLS with the database's own CA");
    let _ = std::fs::remove_dir_all(ca.parent().unwrap());
}

/// `(key, tokens)`: a new Fernet key and each plaintext encrypted under it, by Python's
/// `cryptography` (the old service's library).
fn fernet(plaintexts: &[&str]) -> (String, Vec<String>) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = "import json, sys\nfrom cryptography.fernet import Fernet\nkey = Fernet.generate_key()\nf = Fernet(key)\nprint(json.dumps([key.decode(), [f.encrypt(p.encode()).decode() for p in json.loads(sys.argv[1])]]))";
    let output = std::process::Command::new(root.join(".venv/bin/python"))
        .args(["-c", script, &serde_json::to_string(plaintexts).unwrap()])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (key, tokens): (String, Vec<String>) = serde_json::from_slice(&output.stdout).unwrap();
    (key, tokens)
}

fn destination(app: &TestApp) -> Destination {
    let dynamodb = app.dynamodb();
    Destination {
        accounts: AccountService::from_config(
            &pipewise::config::ConfigSource::from_map(&app.environment),
            &app.sdk,
        )
        .expect("accounts service"),
        targets: TargetStore::new(dynamodb, app.environment[vars::TARGETS_TABLE].clone()),
    }
}

async fn run(
    app: &TestApp,
    old: &tokio_postgres::Client,
    key: &str,
    settings: &MigrationSettings,
) -> Result<MigrationReport, MigrationError> {
    let (accounts, targets) = read_old_tables(old).await?;
    migrate(
        accounts,
        targets,
        key,
        &destination(app),
        settings,
        |_, _| {},
    )
    .await
}

struct OldData {
    key: String,
    secrets: Vec<String>,
    /// alice's active targets' names, newest first.
    alice_names_newest_first: Vec<String>,
}

/// Alice's and Bob's old rows: three accounts (Fernet around the whole column, inside values,
/// a plaintext one), targets with order, an inactive one, an invalid email and a duplicate.
async fn seed(old: &tokio_postgres::Client) -> OldData {
    let plain = ["sk-old-crm-1", "imap-password-2", "x-token-3"];
    let whole = json!({"api_key": plain[0], "region": "eu"}).to_string();
    let (key, tokens) = fernet(&[&whole, plain[1], plain[2]]);
    let rows = [
        (
            "alice",
            "crm",
            "crm",
            Value::String(tokens[0].clone()),
            true,
        ),
        (
            "alice",
            "imap",
            "email",
            json!({"host": "imap.example.com", "password": tokens[1]}),
            true,
        ),
        (
            "alice",
            "x",
            "social",
            json!({"access_token": tokens[2], "username": "alice_x"}),
            false,
        ),
        ("bob", "notes", "crm", json!({"workspace": "bob"}), true),
    ];
    for (user, id, kind, configuration, connected) in rows {
        old.execute(
            "INSERT INTO user_accounts (user_id, account_id, account_type, configuration, connected, created_at, updated_at) \
             VALUES ($1, $2, $3, $4::text::jsonb, $5, '2025-01-02 03:04:05', '2025-02-03 04:05:06')",
            &[&user, &id, &kind, &configuration.to_string(), &connected],
        )
        .await
        .unwrap();
    }
    let targets = [
        (
            "alice",
            "Ada Lovelace",
            Some("ada@example.com"),
            true,
            "2024-01-01",
        ),
        (
            "alice",
            "Grace Hopper",
            Some("grace@example.com"),
            true,
            "2024-02-01",
        ),
        (
            "alice",
            "Gone Person",
            Some("gone@example.com"),
            false,
            "2024-03-01",
        ),
        (
            "alice",
            "Bad Email",
            Some("not-an-email"),
            true,
            "2024-04-01",
        ),
        (
            "alice",
            "Ada Twin",
            Some("ADA@example.com"),
            true,
            "2024-05-01",
        ),
        ("alice", "Linus", None, true, "2024-06-01"),
        (
            "bob",
            "Bob's Contact",
            Some("ada@example.com"),
            true,
            "2024-07-01",
        ),
    ];
    for (user, name, email, active, day) in targets {
        let handle = email.is_none().then_some("linus_t");
        old.execute(
            "INSERT INTO communication_targets (id, user_id, name, email, twitter_username, active, created_at, updated_at) \
             VALUES ($1::text::uuid, $2, $3, $4, $5, $6, $7::text::timestamp, $7::text::timestamp)",
            &[&uuid::Uuid::new_v4().to_string(), &user, &name, &email, &handle, &active, &day],
        )
        .await
        .unwrap();
    }
    OldData {
        key,
        secrets: plain.iter().map(|s| (*s).to_owned()).collect(),
        alice_names_newest_first: vec![
            "Linus".into(),
            "Grace Hopper".into(),
            "Ada Lovelace".into(),
        ],
    }
}

async fn scan(app: &TestApp, table: &str) -> Vec<HashMap<String, AttributeValue>> {
    app.scan_table(table).await
}

#[tokio::test]
async fn old_tables_move_in_once_with_secrets_sealed_and_order_kept() {
    let app = TestApp::spawn().await;
    let old = old_database().await;
    let data = seed(&old).await;
    let started = std::time::Instant::now();
    let report = run(&app, &old, &data.key, &MigrationSettings::default())
        .await
        .expect("the migration runs");
    let elapsed = started.elapsed();
    assert_eq!(report.accounts.migrated, 4, "{report:#?}");
    assert_eq!(report.targets.migrated, 5, "{report:#?}");
    assert_eq!(report.targets.failures(), 2, "{report:#?}");
    let reasons: Vec<&String> = report
        .targets
        .problems
        .iter()
        .map(|(_, reason)| reason)
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("validation_failed: email")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("duplicate_email")),
        "{reasons:?}"
    );

    // Through the API: secrets masked, revealed whole to an agent; old timestamps kept.
    let crm = app
        .get("/api/user/integrations/accounts/crm", "alice")
        .await;
    assert_eq!(
        crm.body["configuration"],
        json!({"api_key": "********", "region": "eu"})
    );
    assert_eq!(crm.body["created_at"], "2025-01-02T03:04:05.000000Z");
    let x = app.get("/api/user/integrations/accounts/x", "alice").await;
    assert_eq!(x.body["connected"], false);
    for (account, field, value) in [
        ("crm", "api_key", &data.secrets[0]),
        ("imap", "password", &data.secrets[1]),
        ("x", "access_token", &data.secrets[2]),
    ] {
        let revealed = app
            .send(
                app.request(
                    reqwest::Method::GET,
                    &format!("/api/user/integrations/accounts/{account}/secrets"),
                )
                .bearer_auth(app.token_with_scope("alice", "integrations:secrets:read")),
            )
            .await;
        assert_eq!(&revealed.body["configuration"][field], value, "{account}");
    }
    let stored = format!("{:?}", scan(&app, "AccountsTable").await);
    for secret in &data.secrets {
        assert!(
            !stored.contains(secret.as_str()),
            "plaintext {secret} is stored"
        );
    }
    // Targets in the old order, newest first; the inactive one hidden.
    let listed = app.get("/api/user/communication-targets", "alice").await;
    let names: Vec<&str> = listed.body["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, data.alice_names_newest_first);

    // A second run changes nothing and says so.
    let again = run(&app, &old, &data.key, &MigrationSettings::default())
        .await
        .unwrap();
    assert_eq!(
        (again.accounts.migrated, again.targets.migrated),
        (0, 0),
        "{again:#?}"
    );
    assert_eq!(again.accounts.unchanged, 4);
    assert_eq!(again.targets.unchanged, 5);
    eprintln!(
        "figures: {} rows in {:?} ({:.0} ms per 1,000 rows)",
        11,
        elapsed,
        elapsed.as_secs_f64() * 1000.0 / 11.0 * 1000.0
    );
}

#[tokio::test]
async fn an_interrupted_run_resumes_without_duplicates() {
    let app = TestApp::spawn().await;
    let old = old_database().await;
    let data = seed(&old).await;
    let first = run(
        &app,
        &old,
        &data.key,
        &MigrationSettings {
            max_rows: Some(6),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(first.stopped_early);
    let rest = run(&app, &old, &data.key, &MigrationSettings::default())
        .await
        .unwrap();
    assert!(!rest.stopped_early);
    assert_eq!(first.targets.migrated + rest.targets.migrated, 5);
    assert_eq!(first.accounts.migrated + rest.accounts.migrated, 4);
    let targets = scan(&app, "TargetsTable").await;
    let records = targets
        .iter()
        .filter(|item| matches!(item.get("sk"), Some(AttributeValue::S(sk)) if sk.starts_with("T#") || sk.starts_with("D#")))
        .count();
    assert_eq!(records, 5, "every old target once, no duplicates");
    let alice_count = targets
        .iter()
        .find(|item| {
            item.get("user_id") == Some(&AttributeValue::S("alice".into()))
                && item.get("sk") == Some(&AttributeValue::S("#count".into()))
        })
        .and_then(|item| item.get("active_count"))
        .and_then(|n| n.as_n().ok())
        .cloned();
    assert_eq!(
        alice_count.as_deref(),
        Some("3"),
        "the counter equals alice's active targets"
    );
}

#[tokio::test]
async fn a_wrong_fernet_key_writes_nothing() {
    let app = TestApp::spawn().await;
    let old = old_database().await;
    seed(&old).await;
    let (wrong_key, _) = fernet(&[]);
    let result = run(&app, &old, &wrong_key, &MigrationSettings::default()).await;
    assert!(
        matches!(result, Err(MigrationError::WrongKey(3))),
        "{result:?}"
    );
    assert!(matches!(
        run(&app, &old, "not a key", &MigrationSettings::default()).await,
        Err(MigrationError::InvalidKey)
    ));
    assert!(scan(&app, "AccountsTable").await.is_empty());
    assert!(scan(&app, "TargetsTable").await.is_empty());
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_users_can_be_mapped() {
    let app = TestApp::spawn().await;
    let old = old_database().await;
    let data = seed(&old).await;
    let dry = run(
        &app,
        &old,
        &data.key,
        &MigrationSettings {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.accounts.migrated, 4);
    assert_eq!(dry.targets.migrated, 5);
    assert_eq!(dry.targets.failures(), 2, "{dry:#?}");
    assert!(scan(&app, "AccountsTable").await.is_empty());
    assert!(scan(&app, "TargetsTable").await.is_empty());
    // alice moves to another issuer's subject; bob is not mapped and is reported.
    let map = HashMap::from([("alice".to_owned(), "cognito-sub-alice".to_owned())]);
    let mapped = run(
        &app,
        &old,
        &data.key,
        &MigrationSettings {
            user_map: Some(map),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(mapped.accounts.skipped.get("unmapped_user"), Some(&1));
    assert_eq!(mapped.targets.skipped.get("unmapped_user"), Some(&1));
    let listed = app
        .get("/api/user/integrations/accounts", "cognito-sub-alice")
        .await;
    assert_eq!(listed.body["total"], 3);
    assert_eq!(
        app.get("/api/user/integrations/accounts", "alice")
            .await
            .body["total"],
        0
    );
}
