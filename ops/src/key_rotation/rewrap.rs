//! The KMS side: the target key resolved once, and each data key re-wrapped inside KMS.

use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use pipewise::accounts::store::WrappedDataKey;
use pipewise::envelope::EncryptionContext;

use super::KeyRotation;
use super::report::RotationError;

impl KeyRotation {
    /// The target key's ARN (what stored envelopes record), once it is known to be enabled.
    pub(super) async fn resolve_target(&self) -> Result<String, RotationError> {
        let unusable = |reason: String| RotationError::TargetKey {
            key: self.target_key.clone(),
            reason,
        };
        let output = self
            .kms
            .describe_key()
            .key_id(&self.target_key)
            .send()
            .await
            .map_err(|error| unusable(DisplayErrorContext(&error).to_string()))?;
        let metadata = output
            .key_metadata()
            .ok_or_else(|| unusable("DescribeKey returned no key metadata".to_owned()))?;
        if !metadata.enabled() {
            return Err(unusable("the key is not enabled".to_owned()));
        }
        metadata
            .arn()
            .map(str::to_owned)
            .ok_or_else(|| unusable("DescribeKey returned no ARN".to_owned()))
    }

    /// KMS `ReEncrypt` of a wrapped data key: unwrapped and re-wrapped inside KMS, under the same
    /// encryption context, so the data key never reaches this process.
    pub(super) async fn rewrap(
        &self,
        wrapped: &WrappedDataKey,
        target_key_arn: &str,
        context: EncryptionContext<'_>,
    ) -> Result<WrappedDataKey, String> {
        let output = self
            .kms
            .re_encrypt()
            .ciphertext_blob(Blob::new(wrapped.wrapped_key.clone()))
            .source_key_id(&wrapped.kms_key_id)
            .set_source_encryption_context(Some(context.kms_context()))
            .destination_key_id(target_key_arn)
            .set_destination_encryption_context(Some(context.kms_context()))
            .send()
            .await
            .map_err(|error| format!("KMS ReEncrypt failed: {}", DisplayErrorContext(&error)))?;
        let wrapped_key = output
            .ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| "ReEncrypt returned no ciphertext".to_owned())?;
        Ok(WrappedDataKey {
            kms_key_id: output.key_id.unwrap_or_else(|| target_key_arn.to_owned()),
            wrapped_key,
        })
    }
}
