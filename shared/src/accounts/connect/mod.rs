//! Connecting an account by signing in at its provider (hosted OAuth), and checking a
//! connection: use cases of the accounts service.
//!
//! A session binds a single-use `state` to the user, the provider, the account and a PKCE
//! verifier, for 10 minutes. The browser goes to the provider's consent page and comes back to
//! the public callback with a code; the callback takes the session (a conditional write, so a
//! state works once), exchanges the code server to server, asks the provider who signed in,
//! seals the tokens and writes the account through the one write path of accounts. Tokens never
//! reach a URL, a response or a log line. docs/security.md, "Connecting accounts".
//!
//! Starting a session and reading where it stands is [`session`]'s job, completing the callback
//! [`callback`]'s, and checking a connection [`connection_test`]'s.

mod callback;
mod connection_test;
mod session;
pub mod settings;

pub use callback::{CallbackOutcome, CallbackQuery, derived_account_id};
pub use connection_test::ConnectionTest;
pub use session::{ConnectSessionCreated, ConnectSessionRequest, ConnectSessionView};
pub use settings::{CALLBACK_PATH, ConnectSettings};

use serde_json::Value;

use super::provider::Provider;
use super::service::{AccountService, parse_configuration};
use super::store::AccountItem;
use crate::envelope::EncryptionContext;
use crate::error::Error;
use crate::platforms::connect::ProviderIdentity;

/// How long a connect session (and so its authorize URL) can be used.
pub const SESSION_SECONDS: i64 = 10 * 60;

fn sha256_hex(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn rfc3339(epoch: i64) -> Result<String, Error> {
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .map_err(Error::internal)?
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(Error::internal)
}

impl AccountService {
    fn session_context<'a>(&'a self, owner: &'a str, partition: &'a str) -> EncryptionContext<'a> {
        EncryptionContext {
            table: self.store.table(),
            user_id: owner,
            account_id: partition,
        }
    }
}

/// The provider's id of the user a stored account belongs to.
fn stored_identity(item: &AccountItem, provider: Provider) -> Option<String> {
    let configuration = parse_configuration(&item.configuration).ok()?;
    configuration
        .get(ProviderIdentity::id_field(provider))
        .and_then(Value::as_str)
        .map(str::to_owned)
}
