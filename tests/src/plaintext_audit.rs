//! The end-of-suite plaintext audit's recording side. With `PLAINTEXT_AUDIT_DIR` set (as
//! `make test` sets it), every test process writes, under that directory:
//! - `secrets-<pid>.txt`: every secret value a test submitted to the API (the string leaves of
//!   what the service's own rule takes out of an account's configuration), one JSON string
//!   per line: the canaries;
//! - `responses-<pid>.txt`: every response body the API gave (except the scope-gated
//!   `.../secrets` reveal, whose job is to return them);
//! - `logs-<pid>.jsonl`: every log line the service wrote in that process;
//! - `queue-<pid>.txt`: every SQS message body the tests' pollers received.
//!
//! `tools/plaintext-audit` then reads those and the emulator's whole state (every DynamoDB
//! item, every message still queued) and fails if any canary appears anywhere.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::Value;

/// Secrets shorter than this are not canaries: a value like `k-1` also occurs by chance.
pub const MIN_CANARY_LEN: usize = 8;

/// The audit directory, when the audit is on.
pub fn directory() -> Option<PathBuf> {
    std::env::var_os("PLAINTEXT_AUDIT_DIR").map(PathBuf::from)
}

fn append(kind: &str, line: &str) {
    let Some(directory) = directory() else {
        return;
    };
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock();
    let path = directory.join(format!("{kind}-{}.txt", std::process::id()));
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

/// Records the secrets of a request body sent to `path`.
pub fn record_request(path: &str, body: &[u8]) {
    if directory().is_none() || !path.starts_with("/api/user/integrations/accounts") {
        return;
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Some(Value::Object(configuration)) = request.get("configuration").cloned() else {
        return;
    };
    for (_, secret) in pipewise::accounts::secrets::split(configuration).secrets {
        if let pipewise::accounts::secrets::SubmittedSecret::New(value) = secret {
            for text in strings(&value) {
                if text.len() >= MIN_CANARY_LEN {
                    append("secrets", &Value::String(text).to_string());
                }
            }
        }
    }
}

/// Records a secret the service obtained itself (a token a provider issued at a connect): it
/// must appear nowhere the submitted ones may not.
pub fn record_secret(value: &str) {
    if value.len() >= MIN_CANARY_LEN {
        append("secrets", &Value::String(value.to_owned()).to_string());
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(fields) => fields.values().flat_map(strings).collect(),
        Value::Number(number) => vec![number.to_string()],
        _ => Vec::new(),
    }
}

/// Records a response body of `path`.
pub fn record_response(path: &str, body: &str) {
    if directory().is_none() || path.ends_with("/secrets") || body.is_empty() {
        return;
    }
    append("responses", &Value::String(body.to_owned()).to_string());
}

/// Records a queue message body.
pub fn record_queue_body(body: &str) {
    append("queue", &Value::String(body.to_owned()).to_string());
}

/// A writer of log lines into the audit directory (or nowhere when the audit is off).
#[derive(Clone, Copy, Default)]
pub struct AuditLogWriter;

impl Write for AuditLogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Some(directory) = directory() {
            static LOCK: Mutex<()> = Mutex::new(());
            let _guard = LOCK.lock();
            let path = directory.join(format!("logs-{}.jsonl", std::process::id()));
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?
                .write_all(bytes)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for AuditLogWriter {
    type Writer = AuditLogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Sends this process's log lines (the functions' JSON, level info, as they log in AWS) to the
/// audit directory; a no-op when the audit is off or another subscriber is installed.
pub fn install_log_writer() {
    if directory().is_none() {
        return;
    }
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(AuditLogWriter)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
}
