//! KMS envelope encryption of secrets.
//!
//! Each seal asks KMS for a fresh AES-256 data key (`GenerateDataKey`, with an encryption context),
//! encrypts with AES-256-GCM under a fresh random nonce, binds the same context plus the format
//! version as additional authenticated data, stores only the KMS-wrapped data key, and zeroises the
//! plaintext data key. See docs/security.md for the format and the trade-offs.

use std::collections::{BTreeMap, HashMap};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::aws::dependency_error;
use crate::error::Error;

/// Version of the envelope format, bound into the AAD.
pub const ENVELOPE_VERSION: u32 = 1;

/// What a ciphertext is bound to: opening it under any other context fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptionContext<'a> {
    /// The DynamoDB table holding the item.
    pub table: &'a str,
    /// The owner of the item.
    pub user_id: &'a str,
    /// The account the secrets belong to.
    pub account_id: &'a str,
}

impl EncryptionContext<'_> {
    /// The context as KMS takes it (`EncryptionContext` of `GenerateDataKey`, `Decrypt` and both
    /// sides of `ReEncrypt`): the data key is bound to the item it protects.
    pub fn kms_context(&self) -> HashMap<String, String> {
        HashMap::from([
            ("table".to_owned(), self.table.to_owned()),
            ("user_id".to_owned(), self.user_id.to_owned()),
            ("account_id".to_owned(), self.account_id.to_owned()),
        ])
    }

    /// Canonical AAD: JSON with sorted keys, the format version included.
    fn aad(&self, version: u32) -> Vec<u8> {
        let fields = BTreeMap::from([
            ("account_id", self.account_id.to_owned()),
            ("table", self.table.to_owned()),
            ("user_id", self.user_id.to_owned()),
            ("v", version.to_string()),
        ]);
        serde_json::to_vec(&fields).unwrap_or_default()
    }
}

/// A sealed secret as stored: never contains plaintext or a plaintext key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version.
    pub v: u32,
    /// ARN of the KMS key that wrapped the data key (for decryption and re-wrapping on rotation).
    pub kms_key_id: String,
    /// The data key, encrypted by KMS.
    #[serde(with = "serde_bytes")]
    pub wrapped_key: Vec<u8>,
    /// AES-GCM nonce, fresh for every seal.
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    /// Ciphertext followed by the GCM tag.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// Seals and opens secrets with KMS-wrapped data keys.
#[derive(Clone)]
pub struct EnvelopeCipher {
    kms: aws_sdk_kms::Client,
    key_id: String,
}

impl EnvelopeCipher {
    /// A cipher wrapping data keys under `key_id` (id, ARN or alias).
    pub fn new(kms: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            kms,
            key_id: key_id.into(),
        }
    }

    /// Encrypts `plaintext` under a fresh data key bound to `context`. One KMS call.
    pub async fn seal(
        &self,
        context: EncryptionContext<'_>,
        plaintext: &[u8],
    ) -> Result<Envelope, Error> {
        let output = self
            .kms
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context.kms_context()))
            .send()
            .await
            .map_err(dependency_error)?;
        let kms_key_id = output.key_id.clone().unwrap_or_else(|| self.key_id.clone());
        let wrapped_key = output
            .ciphertext_blob
            .clone()
            .map(Blob::into_inner)
            .ok_or_else(|| Error::internal("GenerateDataKey returned no wrapped key"))?;
        let data_key = Zeroizing::new(
            output
                .plaintext
                .map(Blob::into_inner)
                .ok_or_else(|| Error::internal("GenerateDataKey returned no plaintext key"))?,
        );
        seal_with_data_key(&data_key, kms_key_id, wrapped_key, context, plaintext)
    }

    /// Decrypts an envelope sealed under the same `context`. One KMS call. A different context,
    /// a tampered field or an unknown version fails.
    pub async fn open(
        &self,
        context: EncryptionContext<'_>,
        envelope: &Envelope,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        // A malformed envelope is refused before KMS is asked anything.
        checked_nonce(envelope)?;
        let output = self
            .kms
            .decrypt()
            .key_id(&envelope.kms_key_id)
            .ciphertext_blob(Blob::new(envelope.wrapped_key.clone()))
            .set_encryption_context(Some(context.kms_context()))
            .send()
            .await
            .map_err(|error| {
                if crate::aws::error_code(&error) == Some("InvalidCiphertextException") {
                    Error::internal(format!("KMS refused the wrapped key: {error}"))
                } else {
                    dependency_error(error)
                }
            })?;
        let data_key = Zeroizing::new(
            output
                .plaintext
                .map(Blob::into_inner)
                .ok_or_else(|| Error::internal("Decrypt returned no plaintext key"))?,
        );
        open_with_data_key(&data_key, context, envelope)
    }
}

/// The AES-GCM half of [`EnvelopeCipher::seal`]: encrypts `plaintext` under an already unwrapped
/// `data_key` with a fresh random nonce, and records `kms_key_id` and `wrapped_key` (the same
/// data key as KMS wrapped it) in the envelope. No KMS call; the caller zeroises `data_key`.
pub fn seal_with_data_key(
    data_key: &[u8],
    kms_key_id: String,
    wrapped_key: Vec<u8>,
    context: EncryptionContext<'_>,
    plaintext: &[u8],
) -> Result<Envelope, Error> {
    let key = RandomizedNonceKey::new(&AES_256_GCM, data_key)
        .map_err(|_| Error::internal("data key has the wrong length"))?;
    let mut in_out = plaintext.to_vec();
    let nonce = key
        .seal_in_place_append_tag(Aad::from(context.aad(ENVELOPE_VERSION)), &mut in_out)
        .map_err(|_| Error::internal("AES-GCM seal failed"))?;
    Ok(Envelope {
        v: ENVELOPE_VERSION,
        kms_key_id,
        wrapped_key,
        nonce: nonce.as_ref().to_vec(),
        ciphertext: in_out,
    })
}

/// The AES-GCM half of [`EnvelopeCipher::open`]: decrypts an envelope with its already unwrapped
/// `data_key`. An unknown version, a nonce of the wrong length, another `context` or any changed
/// byte of nonce or ciphertext fails. No KMS call; the caller zeroises `data_key`.
pub fn open_with_data_key(
    data_key: &[u8],
    context: EncryptionContext<'_>,
    envelope: &Envelope,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let nonce = checked_nonce(envelope)?;
    let key = RandomizedNonceKey::new(&AES_256_GCM, data_key)
        .map_err(|_| Error::internal("data key has the wrong length"))?;
    let mut in_out = Zeroizing::new(envelope.ciphertext.clone());
    let plaintext_len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.aad(envelope.v)),
            &mut in_out,
        )
        .map_err(|_| Error::internal("envelope failed authentication"))?
        .len();
    in_out.truncate(plaintext_len);
    Ok(in_out)
}

/// The envelope's nonce, once its version is known and the nonce has the right length.
fn checked_nonce(envelope: &Envelope) -> Result<[u8; NONCE_LEN], Error> {
    if envelope.v != ENVELOPE_VERSION {
        return Err(Error::internal("unknown envelope version"));
    }
    envelope
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| Error::internal("envelope nonce has the wrong length"))
}
