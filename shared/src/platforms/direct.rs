//! Direct messages on the social platforms: [`DirectMessenger`] sends one through the platform
//! an account belongs to (X's user lookup and DM call in `x.rs`, Instagram's open-conversation
//! search and send in `instagram.rs`), and every answer is read the same way into what it means
//! ([`DirectRefusal`]). What a refusal does to a communication is the caller's.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::{PlatformApis, Provider, instagram, x};
use crate::clock::Clock;
use crate::ids::{AccountId, UserId};

/// Why a platform took no direct message, or may have taken it without saying so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectRefusal {
    /// The account's configuration lacks what the platform needs (a token, the business id).
    MissingCredentials,
    /// The platform knows no such recipient (404, or X's lookup found nobody).
    NoSuchRecipient,
    /// Instagram: the person has not messaged the business in the last 24 hours.
    WindowClosed,
    /// The platform refused the token (401): refresh it and try once more.
    TokenRevoked,
    /// The platform refused the call (403).
    NotPermitted,
    /// The platform's rate limit is spent for `seconds` (429).
    RateLimited {
        /// Seconds until its window resets (X says when; otherwise a minute).
        seconds: u64,
    },
    /// The platform could not be reached: nothing was sent.
    Unreachable,
    /// No answer in time; `maybe_sent` when it was the sending call.
    TimedOut {
        /// The sending call timed out: the message may have gone out.
        maybe_sent: bool,
    },
    /// Any other status; a 5xx of the sending call `maybe_sent`.
    Status {
        /// The HTTP status.
        code: u16,
        /// A 5xx of the sending call: the platform failed inside it and may have sent.
        maybe_sent: bool,
    },
}

/// X user ids by (user, account, lower-case username): one lookup per recipient per warm
/// instance.
pub(super) type XRecipientIds =
    Arc<Mutex<std::collections::HashMap<(UserId, AccountId, String), String>>>;

/// Sends direct messages through the platforms' APIs, built once per cold start.
#[derive(Clone)]
pub struct DirectMessenger {
    x_base: String,
    instagram_base: String,
    x_recipient_ids: XRecipientIds,
    /// What rate-limit resets and Instagram's messaging window are counted from.
    clock: Clock,
}

/// Who sends: the account a direct message goes out from.
#[derive(Debug, Clone, Copy)]
pub struct DirectSender<'a> {
    /// The account's owner.
    pub user_id: &'a UserId,
    /// The account.
    pub account_id: &'a AccountId,
    /// Its configuration with working tokens.
    pub configuration: &'a Map<String, Value>,
}

impl DirectMessenger {
    /// Through the platforms at `apis`; times as `clock` tells them.
    pub fn new(apis: &PlatformApis, clock: Clock) -> Self {
        Self {
            x_base: apis.x.clone(),
            instagram_base: apis.instagram.clone(),
            x_recipient_ids: XRecipientIds::default(),
            clock,
        }
    }

    /// Sends `text` to `username` on `provider` from `sender`. A mailbox provider takes no
    /// direct messages: `None`.
    pub async fn send(
        &self,
        provider: Provider,
        http: &reqwest::Client,
        sender: DirectSender<'_>,
        username: &str,
        text: &str,
    ) -> Option<Result<(), DirectRefusal>> {
        Some(match provider {
            Provider::X => {
                let recipient = x::DirectRecipient {
                    cache: &self.x_recipient_ids,
                    username,
                };
                x::send_direct_message(http, &self.x_base, sender, recipient, text, &self.clock)
                    .await
            }
            Provider::Instagram => {
                instagram::send_direct_message(
                    http,
                    &self.instagram_base,
                    sender.configuration,
                    username,
                    text,
                    &self.clock,
                )
                .await
            }
            Provider::Google | Provider::Microsoft => return None,
        })
    }
}

/// Reads a platform's answer. `sending` marks the call that sends: a timeout or a 5xx there may
/// have delivered the message.
pub(super) async fn read_answer(
    response: Result<reqwest::Response, reqwest::Error>,
    sending: bool,
    now: i64,
) -> Result<Value, DirectRefusal> {
    let response = match response {
        Ok(response) => response,
        Err(error) if error.is_connect() => return Err(DirectRefusal::Unreachable),
        Err(_) => {
            return Err(DirectRefusal::TimedOut {
                maybe_sent: sending,
            });
        }
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response.json().await.unwrap_or(Value::Null));
    }
    // X says when its window resets; otherwise a minute.
    let reset_seconds = x::rate_limit_reset_seconds(response.headers(), now).unwrap_or(60);
    Err(match status.as_u16() {
        401 => DirectRefusal::TokenRevoked,
        403 => DirectRefusal::NotPermitted,
        404 => DirectRefusal::NoSuchRecipient,
        429 => DirectRefusal::RateLimited {
            seconds: reset_seconds,
        },
        code => DirectRefusal::Status {
            code,
            maybe_sent: sending && status.is_server_error(),
        },
    })
}
