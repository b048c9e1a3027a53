//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): the secret is
//! `whsec_` and the base64 of random bytes, and each delivery carries `webhook-signature:
//! v1,<base64 of HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`, so receivers verify with
//! the published libraries. HMAC from aws-lc-rs, the crypto library the service already uses.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// Prefix of a signing secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";

/// Random bytes of a new secret (the contract asks for at least 24).
const SECRET_BYTES: usize = 32;

/// An endpoint's signing key; its bytes are wiped when dropped.
pub struct SigningSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

impl SigningSecret {
    /// A new random secret.
    pub fn generate() -> Result<Self, crate::Error> {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_BYTES]);
        aws_lc_rs::rand::fill(&mut bytes)
            .map_err(|_| crate::Error::internal("the random generator failed"))?;
        Ok(Self(bytes))
    }

    /// The key's raw bytes (what is sealed at rest).
    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// Reads `whsec_<base64>`.
    pub fn from_text(text: &str) -> Option<Self> {
        let encoded = text.strip_prefix(SECRET_PREFIX)?;
        STANDARD
            .decode(encoded)
            .ok()
            .map(|bytes| Self(Zeroizing::new(bytes)))
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// `whsec_<base64>`: shown to the user once, when the endpoint is made.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(&*self.0)))
    }

    /// The `webhook-signature` header value of one delivery.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let signed = format!("{message_id}.{timestamp}.{body}");
        let tag = hmac::sign(&key, signed.as_bytes());
        format!("v1,{}", STANDARD.encode(tag.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of the Standard Webhooks specification's reference libraries.
    #[test]
    fn signatures_match_the_specifications_test_vectors() {
        let secret = SigningSecret::from_text("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            secret.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                r#"{"email":"test@example.com","username":"test_user"}"#,
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
        let secret = SigningSecret::from_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                r#"{"test": 2432232314}"#,
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_new_secret_is_random_long_enough_and_reads_back() {
        let one = SigningSecret::generate().unwrap();
        let two = SigningSecret::generate().unwrap();
        assert_ne!(one.bytes(), two.bytes());
        assert!(one.bytes().len() >= 24);
        let text = one.to_text();
        assert!(text.starts_with(SECRET_PREFIX));
        assert_eq!(
            SigningSecret::from_text(&text).unwrap().bytes(),
            one.bytes()
        );
        assert!(SigningSecret::from_text("not-a-secret").is_none());
        assert_eq!(format!("{one:?}"), "SigningSecret(..)");
    }
}
