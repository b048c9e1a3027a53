//! The targets use cases, between the handlers and the store: validation of requests into
//! drafts, read-modify-write of an update, batches.

use super::batch::create_targets;
use super::model::{
    BatchCreateRequest, BatchCreateResponse, CreateTargetRequest, TargetPage, TargetView,
    UpdateTargetRequest,
};
use super::store::TargetStore;
use crate::error::Error;
use crate::ids::{TargetId, UserId};

/// Creates, lists, changes and deletes a user's targets.
#[derive(Clone)]
pub struct TargetService {
    store: TargetStore,
}

impl TargetService {
    /// Over the targets store.
    pub fn new(store: TargetStore) -> Self {
        Self { store }
    }

    /// From the function's settings (`TARGETS_TABLE`), once per cold start.
    pub fn from_config(
        source: &crate::config::ConfigSource<'_>,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(Self::new(TargetStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            source.required(crate::config::vars::TARGETS_TABLE)?,
        )))
    }

    /// A page of active targets, newest first.
    pub async fn page(
        &self,
        user: &UserId,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<TargetPage, Error> {
        self.store.page(user, limit, cursor).await
    }

    /// Validates and stores one target.
    pub async fn create(
        &self,
        user: &UserId,
        request: CreateTargetRequest,
    ) -> Result<TargetView, Error> {
        let draft = request.parse("").map_err(Error::Validation)?;
        self.store.create(user, draft).await
    }

    /// Up to 100 targets, a result per item.
    pub async fn create_batch(
        &self,
        user: &UserId,
        request: BatchCreateRequest,
    ) -> Result<BatchCreateResponse, Error> {
        create_targets(&self.store, user, request).await
    }

    /// Imports a CSV file: a result per row, valid new targets stored in bulk.
    pub async fn import_csv(
        &self,
        user: &UserId,
        bytes: &[u8],
    ) -> Result<super::import::ImportResponse, Error> {
        super::import::import_csv(&self.store, user, bytes).await
    }

    /// Applies a change to an active target (404 when there is none).
    pub async fn update(
        &self,
        user: &UserId,
        id: TargetId,
        request: UpdateTargetRequest,
    ) -> Result<TargetView, Error> {
        let current = self.store.get(user, id).await?.ok_or(Error::NotFound)?;
        let draft = request.apply(&current.target).map_err(Error::Validation)?;
        self.store.update(user, current, draft).await
    }

    /// Soft-deletes an active target.
    pub async fn delete(&self, user: &UserId, id: TargetId) -> Result<(), Error> {
        self.store.delete(user, id).await
    }
}
