//! The webhook routes' service: create (URL checked, secret made, shown once, stored sealed),
//! list, delete, test, and the record of recent deliveries.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::address::{HostResolver, SystemResolver, UrlPolicy};
use super::event::{EventType, WebhookEvent};
use super::queue::{EventPublisher, WebhookMessage};
use super::secrets::EndpointSecrets;
use super::signing::SigningSecret;
use super::store::{DeliveryRecord, EndpointItem, WebhookStore};
use crate::config::{ConfigError, ConfigSource};
use crate::error::{Error, FieldError};
use crate::ids::{UserId, WebhookId};
use crate::paging::PageLimit;

/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 200;

/// Body of `POST /api/user/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where events are posted: `https`, resolving only to public addresses.
    pub url: String,
    /// The event types to receive; absent: every type.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// A note for the user (up to 200 characters).
    #[serde(default)]
    pub description: Option<String>,
}

/// An endpoint as the API shows it (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    /// Its id.
    pub id: String,
    /// Where events are posted.
    pub url: String,
    /// The event types it receives.
    pub events: Vec<String>,
    /// The user's note.
    pub description: Option<String>,
    /// `enabled`, or `disabled` after 5 days of failed deliveries.
    pub status: String,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// When it was disabled (RFC 3339).
    pub disabled_at: Option<String>,
    /// Since when every delivery has failed (RFC 3339), while it does.
    pub failing_since: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// Answer of `POST /api/user/webhooks`: the view plus the signing secret, shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookCreated {
    /// Its id.
    pub id: String,
    /// Where events are posted.
    pub url: String,
    /// The event types it receives.
    pub events: Vec<String>,
    /// The user's note.
    pub description: Option<String>,
    /// `whsec_` + base64: verify each delivery's `webhook-signature` with it.
    pub secret: String,
    /// RFC 3339.
    pub created_at: String,
}

/// Answer of `GET /api/user/webhooks`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// The user's endpoints, oldest first.
    pub webhooks: Vec<WebhookView>,
}

/// Answer of `POST /api/user/webhooks/{id}/test`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestQueued {
    /// The test event's id (`webhook-id`); its attempts show in the deliveries.
    pub event_id: String,
}

/// Answer of `GET /api/user/webhooks/{id}/deliveries`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// The latest attempts, newest first.
    pub deliveries: Vec<DeliveryRecord>,
}

/// Query of the deliveries route.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryListQuery {
    /// How many (1-100, default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<PageLimit>,
}

/// Webhook endpoints of users.
#[derive(Clone)]
pub struct WebhookService {
    store: WebhookStore,
    secrets: EndpointSecrets,
    queue: EventPublisher,
    policy: UrlPolicy,
    resolver: Arc<dyn HostResolver>,
    /// What `created_at` and test events' times read.
    clock: crate::clock::Clock,
}

impl WebhookService {
    /// A service over its parts.
    pub fn new(
        store: WebhookStore,
        secrets: EndpointSecrets,
        queue: EventPublisher,
        policy: UrlPolicy,
        resolver: Arc<dyn HostResolver>,
    ) -> Self {
        Self {
            store,
            secrets,
            queue,
            policy,
            resolver,
            clock: crate::clock::Clock::system(),
        }
    }

    /// The same service, telling time by `clock`.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// From the functions' settings (`WEBHOOKS_TABLE`, `SECRETS_KMS_KEY_ID`,
    /// `WEBHOOK_QUEUE_URL`, `WEBHOOK_ALLOW_LOOPBACK`), once per cold start.
    pub fn from_config(
        source: &ConfigSource<'_>,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, ConfigError> {
        let (store, secrets) = super::store_and_secrets(source, sdk)?;
        Ok(Self::new(
            store,
            secrets,
            EventPublisher::from_source(source, sdk),
            UrlPolicy::from_source(source),
            Arc::new(SystemResolver),
        ))
    }

    /// Creates an endpoint; the answer holds its secret, which is never shown again.
    pub async fn create(&self, user: &UserId, body: Value) -> Result<WebhookCreated, Error> {
        let request: CreateWebhookRequest = crate::json_input::from_json_value(body)?;
        let mut problems = Vec::new();
        let url = match self.policy.parse(request.url.trim()) {
            Ok(url) => match self.policy.check(&url, self.resolver.as_ref()).await {
                Ok(_) => Some(url),
                Err(refusal) => {
                    problems.push(FieldError::new("url", refusal.problem()));
                    None
                }
            },
            Err(refusal) => {
                problems.push(FieldError::new("url", refusal.problem()));
                None
            }
        };
        let events = match &request.events {
            None => Vec::new(),
            Some(names) if names.is_empty() => {
                problems.push(FieldError::new(
                    "events",
                    "must name at least one event type, or be left out for every type",
                ));
                Vec::new()
            }
            Some(names) => {
                let mut events = Vec::new();
                for (position, name) in names.iter().enumerate() {
                    match EventType::parse(name) {
                        Some(event) if !events.contains(&event) => events.push(event),
                        Some(_) => {}
                        None => problems.push(FieldError::new(
                            format!("events[{position}]"),
                            "is not an event type",
                        )),
                    }
                }
                events
            }
        };
        let description = request
            .description
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty());
        if let Some(text) = &description {
            if text.chars().count() > MAX_DESCRIPTION_CHARS {
                problems.push(FieldError::new(
                    "description",
                    "must be at most 200 characters",
                ));
            } else if let Some(problem) =
                crate::plain_text::check(text, crate::plain_text::Lines::Single)
            {
                problems.push(FieldError::new("description", problem));
            }
        }
        let Some(url) = url.filter(|_| problems.is_empty()) else {
            return Err(Error::Validation(problems));
        };
        let webhook_id = WebhookId::new();
        let secret = SigningSecret::generate()?;
        let item = EndpointItem {
            user_id: user.clone(),
            sk: EndpointItem::sort_key(&webhook_id),
            webhook_id,
            url: url.to_string(),
            events,
            description,
            secret: self.secrets.seal(user, &webhook_id, &secret).await?,
            created_at: self.clock.now_rfc3339(),
            failing_since: None,
            disabled_at: None,
            disabled_reason: None,
        };
        self.store.insert(&item).await?;
        let view = view(item);
        Ok(WebhookCreated {
            id: view.id,
            url: view.url,
            events: view.events,
            description: view.description,
            secret: secret.to_text().to_string(),
            created_at: view.created_at,
        })
    }

    /// The user's endpoints.
    pub async fn list(&self, user: &UserId) -> Result<WebhookList, Error> {
        Ok(WebhookList {
            webhooks: self.store.list(user).await?.into_iter().map(view).collect(),
        })
    }

    /// Deletes an endpoint: no delivery goes to it afterwards (attempts already queued find
    /// it gone and stop).
    pub async fn delete(&self, user: &UserId, webhook_id: &WebhookId) -> Result<(), Error> {
        if !self.store.delete(user, webhook_id).await? {
            return Err(Error::NotFound);
        }
        Ok(())
    }

    /// Queues a `webhook.test` event to one endpoint (even a disabled one: a success enables
    /// it again).
    pub async fn test(&self, user: &UserId, webhook_id: &WebhookId) -> Result<TestQueued, Error> {
        self.endpoint(user, webhook_id).await?;
        let event = WebhookEvent::new(
            user,
            EventType::WebhookTest,
            &uuid::Uuid::new_v4().to_string(),
            json!({"webhook_id": webhook_id.to_string()}),
            &self.clock,
        );
        let event_id = event.id.clone();
        let attempt = WebhookMessage::Attempt {
            webhook_id: *webhook_id,
            event,
            attempt: 1,
            not_before: 0,
        };
        self.queue.send(&attempt, 0).await?;
        Ok(TestQueued { event_id })
    }

    /// The endpoint's latest delivery attempts.
    pub async fn deliveries(
        &self,
        user: &UserId,
        webhook_id: &WebhookId,
        limit: u32,
    ) -> Result<DeliveryList, Error> {
        self.endpoint(user, webhook_id).await?;
        Ok(DeliveryList {
            deliveries: self.store.deliveries(user, webhook_id, limit).await?,
        })
    }

    async fn endpoint(&self, user: &UserId, webhook_id: &WebhookId) -> Result<EndpointItem, Error> {
        self.store
            .get(user, webhook_id)
            .await?
            .ok_or(Error::NotFound)
    }
}

fn view(item: EndpointItem) -> WebhookView {
    let events = if item.events.is_empty() {
        EventType::ALL
            .into_iter()
            .filter(|event| *event != EventType::WebhookTest)
            .map(|event| event.as_str().to_owned())
            .collect()
    } else {
        item.events
            .iter()
            .map(|event| event.as_str().to_owned())
            .collect()
    };
    WebhookView {
        id: item.webhook_id.to_string(),
        url: item.url,
        events,
        description: item.description,
        status: if item.disabled_at.is_some() {
            "disabled".into()
        } else {
            "enabled".into()
        },
        disabled_reason: item.disabled_reason,
        disabled_at: item.disabled_at,
        failing_since: item.failing_since.map(crate::clock::rfc3339),
        created_at: item.created_at,
    }
}
