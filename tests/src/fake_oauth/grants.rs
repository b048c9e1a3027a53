//! Codes, grants and the tokens issued for them: a code redeemed once, for its client,
//! `redirect_uri` and PKCE verifier (RFC 7636); grants started and revoked; which live grant an
//! access or refresh token belongs to.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{
    Code, Fields, Grant, Identity, IssuedToken, OAuthState, Provider, Refused, TokenProblem, field,
    random_part,
};

/// BASE64URL(SHA-256(verifier)), RFC 7636 §4.2.
pub(super) fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An `S256` challenge is a SHA-256 in base64url without padding: 43 characters.
pub(super) fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

impl OAuthState {
    pub(super) fn signer(&self, provider: Provider) -> Identity {
        self.signers
            .get(&provider)
            .cloned()
            .unwrap_or_else(|| Identity::default_at(provider))
    }

    /// Who a good access token of `provider` belongs to: one the code flow or a refresh issued,
    /// unexpired, of a grant not revoked. The mailbox endpoints ([`crate::fake_mailbox`]) answer
    /// for this identity's mailbox.
    pub(crate) fn token_identity(&self, provider: Provider, token: &str) -> Option<&Identity> {
        self.access_grant(provider, token)
            .ok()
            .map(|grant| &self.grants[grant].identity)
    }

    /// Everyone the stand-in knows at any provider: whoever was granted access, and whoever signs
    /// in next. An inbound message for an address finds its mailbox's provider here.
    pub(crate) fn known_identities(&self) -> Vec<Identity> {
        let mut identities: Vec<Identity> = self
            .grants
            .iter()
            .map(|grant| grant.identity.clone())
            .collect();
        identities.extend(
            Provider::ALL
                .into_iter()
                .map(|provider| self.signer(provider)),
        );
        identities
    }

    /// Takes a code for an exchange by `client_id`; the code is spent once it is found, whatever
    /// the rest of the request.
    pub(super) fn redeem(
        &mut self,
        provider: Provider,
        form: &Fields,
        client_id: &str,
    ) -> Result<Code, Refused> {
        let code = self
            .codes
            .get_mut(field(form, "code"))
            .filter(|code| code.provider == provider)
            .ok_or(Refused::Unknown)?;
        if code.spent {
            return Err(Refused::Spent);
        }
        code.spent = true;
        if Instant::now() >= code.expires_at {
            return Err(Refused::Expired);
        }
        if code.client_id != client_id {
            return Err(Refused::OtherClient);
        }
        // Exactly the string of the authorize request (no normalising: providers compare strings).
        if field(form, "redirect_uri") != code.redirect_uri {
            return Err(Refused::RedirectMismatch);
        }
        if let Some(challenge) = &code.challenge {
            let verifier = field(form, "code_verifier");
            if verifier.is_empty() {
                return Err(Refused::VerifierMissing);
            }
            if !is_verifier(verifier) || s256(verifier) != *challenge {
                return Err(Refused::VerifierMismatch);
            }
        }
        Ok(code.clone())
    }

    pub(super) fn start_grant(&mut self, code: &Code) -> usize {
        self.grants.push(Grant {
            provider: code.provider,
            client_id: code.client_id.clone(),
            identity: code.identity.clone(),
            scope: code.scope.clone(),
            revoked: false,
        });
        self.grants.len() - 1
    }

    pub(super) fn issue_access(
        &mut self,
        grant: usize,
        prefix: &str,
        lifetime: Duration,
    ) -> String {
        let token = format!("{prefix}{}{}", random_part(), random_part());
        self.access_tokens.insert(
            token.clone(),
            IssuedToken {
                grant,
                expires_at: Instant::now() + lifetime,
            },
        );
        token
    }

    pub(super) fn issue_refresh(&mut self, grant: usize, prefix: &str) -> String {
        let token = format!("{prefix}{}{}", random_part(), random_part());
        self.refresh_tokens.insert(token.clone(), grant);
        token
    }

    /// The grant behind an access token of `provider`.
    pub(super) fn access_grant(
        &self,
        provider: Provider,
        token: &str,
    ) -> Result<usize, TokenProblem> {
        let issued = self
            .access_tokens
            .get(token)
            .filter(|issued| self.grants[issued.grant].provider == provider)
            .ok_or(TokenProblem::Unknown)?;
        if self.grants[issued.grant].revoked {
            return Err(TokenProblem::Revoked);
        }
        if Instant::now() >= issued.expires_at {
            return Err(TokenProblem::Expired);
        }
        Ok(issued.grant)
    }

    /// The grant behind a refresh token of `provider` presented by `client_id`; a single-use
    /// token (X's) is gone once it has worked.
    pub(super) fn refresh_grant(
        &mut self,
        provider: Provider,
        token: &str,
        client_id: &str,
        single_use: bool,
    ) -> Result<usize, TokenProblem> {
        let grant = *self
            .refresh_tokens
            .get(token)
            .filter(|grant| self.grants[**grant].provider == provider)
            .ok_or(TokenProblem::Unknown)?;
        if self.grants[grant].revoked {
            return Err(TokenProblem::Revoked);
        }
        if self.grants[grant].client_id != client_id {
            return Err(TokenProblem::OtherClient);
        }
        if single_use {
            self.refresh_tokens.remove(token);
        }
        Ok(grant)
    }

    /// Whether `token` is a refresh token the code flow issued at `provider` (spent or not).
    pub(crate) fn knows_refresh_token(&self, provider: Provider, token: &str) -> bool {
        self.refresh_tokens
            .get(token)
            .is_some_and(|grant| self.grants[*grant].provider == provider)
    }

    /// The person took the app's access back at `provider`: every grant there is dead.
    pub(crate) fn revoke(&mut self, provider: Provider) {
        for grant in self.grants.iter_mut().filter(|g| g.provider == provider) {
            grant.revoked = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{is_verifier, s256};
    use crate::fake_oauth::tests::VERIFIER;

    #[test]
    fn the_pkce_check_is_rfc_7636s() {
        // RFC 7636, appendix B.
        assert_eq!(
            s256(VERIFIER),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(is_verifier(VERIFIER));
        assert!(!is_verifier("too-short"));
    }
}
