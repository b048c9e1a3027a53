//! Why a communication did not go out (or may not have), as one enum with its wire names: the
//! `reason` a run shows for each communication, and the reason a retry is logged with. Stored as
//! its wire name; a platform's own HTTP status travels in [`DeliveryFailure::PlatformStatus`].

/// A reason the delivery names; [`FailureReason::as_str`] is what runs show and store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The email account names no `from_address`.
    AccountHasNoFromAddress,
    /// The social account has no usable token.
    AccountMissingCredentials,
    /// The account is disconnected (e.g. `reauth_required`, a pending sender).
    AccountNotConnected,
    /// The account that was to send it is gone.
    AccountNotFound,
    /// The accounts table could not be read (retried).
    AccountsUnavailable,
    /// A direct message was asked of an account that is not a social one.
    ChannelNotSocial,
    /// The send may have gone out (an answer lost, a platform 5xx): never sent again.
    DeliveryOutcomeUnknown,
    /// The HTTPS client could not be built (retried).
    HttpClientUnavailable,
    /// Instagram allows a reply only within 24 hours of the person's last message.
    InstagramWindowClosed,
    /// SES refused an address as invalid.
    InvalidRecipientOrSender,
    /// The mailbox's provider reports another address than the account's `from_address`.
    MailboxAddressMismatch,
    /// SES rejected the message (e.g. it found a virus).
    MessageRejected,
    /// The message could not be put together.
    MessageUnrenderable,
    /// The platform refused the send (403).
    NotPermitted,
    /// The platform did not answer a lookup in time (retried).
    PlatformTimeout,
    /// The platform could not be reached (retried).
    PlatformUnreachable,
    /// The platform refuses this deployment's OAuth client (retried; the operator is alerted).
    ProviderMisconfigured,
    /// The platform's rate limit is spent: waited out in SQS.
    RateLimited,
    /// The platform revoked the grant: the user must connect the account again.
    ReauthRequired,
    /// The platform knows no such recipient.
    RecipientNotFound,
    /// Transient failures outlasted the queue's receives.
    RetriesExhausted,
    /// The account no longer holds its sender's claim.
    SenderNotOwned,
    /// SES has not verified the sender.
    SenderNotVerified,
    /// SES suspended sending for the operator's account.
    SendingAccountSuspended,
    /// SES has no such sender identity.
    SendingIdentityNotFound,
    /// The sender's daily-cap counter could not be written (retried).
    SendingLimitsUnavailable,
    /// SES paused sending (account or configuration set).
    SendingPaused,
    /// SES did not answer the send (its outcome is unknown).
    SesNoAnswer,
    /// SES refused the send for another reason.
    SesRefused,
    /// SES throttled the send (retried).
    SesThrottled,
    /// SES failed (retried).
    SesUnavailable,
    /// SES could not be reached; nothing left (retried).
    SesUnreachable,
    /// The address unsubscribed, bounced or complained after the run was made.
    Suppressed,
    /// The suppression list could not be read (retried).
    SuppressionsUnavailable,
    /// The target has no address on the channel.
    TargetHasNoAddress,
    /// The token expired and nothing can refresh it.
    TokenExpired,
    /// The token could not be refreshed now (retried).
    TokenRefreshFailed,
    /// The platform refused the token again after a refresh.
    TokenRevoked,
    /// The unsubscribe signing key could not be read (retried: no email goes out without its link).
    UnsubscribeKeyUnavailable,
}

impl FailureReason {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AccountHasNoFromAddress => "account_has_no_from_address",
            Self::AccountMissingCredentials => "account_missing_credentials",
            Self::AccountNotConnected => "account_not_connected",
            Self::AccountNotFound => "account_not_found",
            Self::AccountsUnavailable => "accounts_unavailable",
            Self::ChannelNotSocial => "channel_not_social",
            Self::DeliveryOutcomeUnknown => "delivery_outcome_unknown",
            Self::HttpClientUnavailable => "http_client_unavailable",
            Self::InstagramWindowClosed => "instagram_window_closed",
            Self::InvalidRecipientOrSender => "invalid_recipient_or_sender",
            Self::MailboxAddressMismatch => "mailbox_address_mismatch",
            Self::MessageRejected => "message_rejected",
            Self::MessageUnrenderable => "message_unrenderable",
            Self::NotPermitted => "not_permitted",
            Self::PlatformTimeout => "platform_timeout",
            Self::PlatformUnreachable => "platform_unreachable",
            Self::ProviderMisconfigured => "provider_misconfigured",
            Self::RateLimited => "rate_limited",
            Self::ReauthRequired => "reauth_required",
            Self::RecipientNotFound => "recipient_not_found",
            Self::RetriesExhausted => "retries_exhausted",
            Self::SenderNotOwned => "sender_not_owned",
            Self::SenderNotVerified => "sender_not_verified",
            Self::SendingAccountSuspended => "sending_account_suspended",
            Self::SendingIdentityNotFound => "sending_identity_not_found",
            Self::SendingLimitsUnavailable => "sending_limits_unavailable",
            Self::SendingPaused => "sending_paused",
            Self::SesNoAnswer => "ses_no_answer",
            Self::SesRefused => "ses_refused",
            Self::SesThrottled => "ses_throttled",
            Self::SesUnavailable => "ses_unavailable",
            Self::SesUnreachable => "ses_unreachable",
            Self::Suppressed => "suppressed",
            Self::SuppressionsUnavailable => "suppressions_unavailable",
            Self::TargetHasNoAddress => "target_has_no_address",
            Self::TokenExpired => "token_expired",
            Self::TokenRefreshFailed => "token_refresh_failed",
            Self::TokenRevoked => "token_revoked",
            Self::UnsubscribeKeyUnavailable => "unsubscribe_key_unavailable",
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a communication was cancelled before it went out: the `reason` a run shows for it and
/// counts under `cancelled_by_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The user cancelled its run.
    CancelledByUser,
    /// A follow-up whose person replied after the sequence started.
    Replied,
    /// A follow-up whose target was deleted.
    TargetDeleted,
    /// A follow-up whose address was suppressed meanwhile (its wire name is the suppression's:
    /// `unsubscribed`, `bounced`, `complained`).
    Suppressed(crate::communications::suppression::SuppressionReason),
}

impl StopReason {
    /// The wire name, as runs show and store it.
    pub const fn as_str(self) -> &'static str {
        use crate::communications::suppression::SuppressionReason;
        match self {
            Self::CancelledByUser => "cancelled_by_user",
            Self::Replied => "replied",
            Self::TargetDeleted => "target_deleted",
            Self::Suppressed(SuppressionReason::Unsubscribed) => "unsubscribed",
            Self::Suppressed(SuppressionReason::Bounced) => "bounced",
            Self::Suppressed(SuppressionReason::Complained) => "complained",
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason, or a platform's own HTTP answer (`platform_error_<status>` for a 5xx,
/// `platform_refused_<status>` for another refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFailure {
    /// One of ours.
    Reason(FailureReason),
    /// The platform answered with this status.
    PlatformStatus(u16),
}

impl From<FailureReason> for DeliveryFailure {
    fn from(reason: FailureReason) -> Self {
        Self::Reason(reason)
    }
}

impl std::fmt::Display for DeliveryFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reason(reason) => f.write_str(reason.as_str()),
            Self::PlatformStatus(status) if *status >= 500 => write!(f, "platform_error_{status}"),
            Self::PlatformStatus(status) => write!(f, "platform_refused_{status}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_snake_case_and_platform_answers_carry_their_status() {
        assert_eq!(
            FailureReason::DeliveryOutcomeUnknown.as_str(),
            "delivery_outcome_unknown"
        );
        assert_eq!(
            FailureReason::InstagramWindowClosed.to_string(),
            "instagram_window_closed"
        );
        assert_eq!(
            DeliveryFailure::PlatformStatus(503).to_string(),
            "platform_error_503"
        );
        assert_eq!(
            DeliveryFailure::PlatformStatus(400).to_string(),
            "platform_refused_400"
        );
    }

    #[test]
    fn a_stopped_follow_up_is_named_as_its_suppression_or_its_cause() {
        use crate::communications::suppression::SuppressionReason;
        for suppression in [
            SuppressionReason::Unsubscribed,
            SuppressionReason::Bounced,
            SuppressionReason::Complained,
        ] {
            assert_eq!(
                StopReason::Suppressed(suppression).as_str(),
                suppression.as_str()
            );
        }
        assert_eq!(StopReason::CancelledByUser.to_string(), "cancelled_by_user");
        assert_eq!(StopReason::Replied.as_str(), "replied");
        assert_eq!(StopReason::TargetDeleted.as_str(), "target_deleted");
    }
}
