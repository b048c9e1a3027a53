//! Every AWS call a function makes is one its role may make: each route's clean run (the fault
//! matrix's scenarios), the worker's sends (SES, a Gmail mailbox), its tick and reply poll, the webhook
//! deliverer, the SES feedback handler and the token keeper, recorded at the wire by the fault proxy as the IAM actions they need (a
//! transaction as the action of each item), checked against that function's `Allow` statements
//! in template.yaml — for DynamoDB also the table or index each statement names. The emulator
//! does not enforce IAM, so without this a missing action only shows in AWS, as an
//! `AccessDenied` on the first call. Other services' resources (a queue, a key, a secret) are
//! not compared: each function has one of each kind, read in review.

use std::collections::BTreeSet;

use pipewise::config::ConfigSource;
use pipewise_local::template::Template;
use pipewise_tests::TestApp;
use pipewise_tests::connect_flow::{app_with_providers, connected};
use pipewise_tests::fake_mailbox::Inbound;
use pipewise_tests::fake_oauth::Provider;
use pipewise_tests::fault_proxy::FaultProxy;
use pipewise_tests::webhook_receiver::WebhookReceiver;
use serde_json::json;

use crate::faults::{scenario, send};

/// The recorded actions `function`'s policy does not allow: the action must be in a statement
/// that names the DynamoDB table or index it acted on (by logical id, `app`'s tables) or `*`.
fn not_allowed(
    template: &Template,
    app: &TestApp,
    function: &str,
    actions: Vec<String>,
) -> BTreeSet<String> {
    let statements = template.policy_statements(function);
    let logical_of = |physical: &str| -> String {
        let (table, index) = match physical.split_once("/index/") {
            Some((table, index)) => (table, Some(index)),
            None => (physical, None),
        };
        let logical = template
            .resources_of_type("AWS::DynamoDB::Table")
            .into_iter()
            .map(|(logical, _)| logical)
            .find(|logical| app.resource(logical) == table)
            .unwrap_or_else(|| table.to_owned());
        match index {
            Some(index) => format!("{logical}/index/{index}"),
            None => logical,
        }
    };
    actions
        .into_iter()
        // The platforms' and identity providers' HTTPS calls are not AWS's.
        .filter(|action| !action.starts_with("http:"))
        .filter_map(|recorded| {
            let (action, resource) = match recorded.split_once('@') {
                Some((action, physical)) => (action.to_owned(), Some(logical_of(physical))),
                None => (recorded.clone(), None),
            };
            let allowed = statements.iter().any(|statement| {
                statement.actions.contains(&action)
                    && resource.as_ref().is_none_or(|resource| {
                        statement
                            .resources
                            .iter()
                            .any(|named| named == "*" || named == resource)
                    })
            });
            (!allowed).then(|| match resource {
                Some(resource) => format!("{function}: {action} on {resource}"),
                None => format!("{function}: {action}"),
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_a_function_makes_is_allowed_by_its_policy() {
    let template = Template::project().expect("the template");
    let direct = TestApp::spawn().await;
    let emulator = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let proxy = FaultProxy::start(&emulator).await;
    let through_proxy = direct.sdk_through(&proxy.url);
    let mut missing = BTreeSet::new();
    let mut checked = 0usize;

    for (index, route) in template.routes().iter().enumerate() {
        let key = format!("{} {}", route.method, route.path);
        let user = format!("iam-{index}");
        let call = scenario(&key, &direct, &user).await;
        let proxied = direct.serve_through(through_proxy.clone()).await;
        proxy.take_actions();
        send(&proxied, &user, &call).await;
        let actions = proxy.take_actions();
        checked += actions.len();
        missing.extend(not_allowed(&template, &direct, &route.function, actions));
    }

    // What the routes' runs enqueued, sent by the worker through SES.
    let worker = direct.worker_on(&through_proxy);
    proxy.take_actions();
    assert!(direct.drain_queue_with(&worker).await > 0);
    let actions = proxy.take_actions();
    assert!(
        actions.iter().any(|action| action == "ses:SendEmail"),
        "{actions:?}"
    );
    checked += actions.len();
    missing.extend(not_allowed(
        &template,
        &direct,
        "CommunicationsWorkerFunction",
        actions,
    ));

    // The worker: an email through a Gmail mailbox, a reply read back by
    // the poller, the tick; then the token keeper.
    let (app, fake) = app_with_providers().await;
    let through_proxy = app.sdk_through(&proxy.url);
    connected(&app, "iam-mailbox", Provider::Google).await;
    let receiver = WebhookReceiver::start().await;
    app.post(
        "/api/user/webhooks",
        "iam-mailbox",
        &json!({"url": receiver.url}),
    )
    .await
    .assert_status(201);
    app.post(
        "/api/user/communication-targets",
        "iam-mailbox",
        &json!({"name": "Grace Hopper", "email": "grace@client.example"}),
    )
    .await
    .assert_status(201);
    app.post(
        "/api/user/orchestrator/initiate-communications",
        "iam-mailbox",
        &json!({"channels": ["email"], "message": {"subject": "Hello", "body": "Hi {{name}}"}}),
    )
    .await
    .assert_status(202);
    let worker = app.worker_on(&through_proxy);
    proxy.take_actions();
    assert_eq!(app.drain_queue_with(&worker).await, 1);
    let sent = fake.sent_mail();
    assert_eq!(sent.len(), 1, "the mailbox sent it");
    fake.deliver(Inbound {
        mailbox: "ada@example.com".into(),
        from: "grace@client.example".into(),
        subject: "Re: Hello".into(),
        in_reply_to: Some(sent[0].message_id.clone()),
        references: Some(sent[0].message_id.clone()),
        body: "Yes, let's talk.".into(),
        ..Inbound::default()
    });
    let report = worker.poll_replies().await.expect("a poll");
    assert_eq!(report.replies, 1, "{report:?}");
    worker.tick().await.expect("a tick");
    let actions = proxy.take_actions();
    assert!(
        actions
            .iter()
            .any(|a| a.starts_with("dynamodb:BatchGetItem@")),
        "{actions:?}"
    );
    checked += actions.len();
    missing.extend(not_allowed(
        &template,
        &app,
        "CommunicationsWorkerFunction",
        actions,
    ));

    // The run's events, delivered to the user's endpoint; SES feedback on a message id.
    let deliverer = app.webhook_deliverer_on(&through_proxy, pipewise::clock::Clock::system());
    assert!(app.drain_webhooks_with(&deliverer).await > 0);
    assert!(!receiver.received().is_empty(), "the events arrived");
    let actions = proxy.take_actions();
    checked += actions.len();
    missing.extend(not_allowed(
        &template,
        &app,
        "WebhookDeliveryFunction",
        actions,
    ));
    app.publish_ses_event(&json!({
        "eventType": "Delivery",
        "mail": {"timestamp": "2026-12-06T00:00:00.000Z", "source": "ada@example.com",
            "messageId": "0100iam-policies-000000", "destination": ["grace@client.example"]},
        "delivery": {"timestamp": "2026-12-06T00:00:01.000Z",
            "recipients": ["grace@client.example"], "smtpResponse": "250 OK"}
    }))
    .await;
    assert_eq!(
        app.drain_feedback_with(&app.feedback_on(&through_proxy))
            .await,
        1
    );
    let actions = proxy.take_actions();
    assert!(!actions.is_empty(), "the feedback looked the message up");
    checked += actions.len();
    missing.extend(not_allowed(
        &template,
        &app,
        "CommunicationsFeedbackFunction",
        actions,
    ));

    let keeper = token_keeper::service_from_config(
        &ConfigSource::from_map(&app.environment),
        &through_proxy,
    )
    .expect("the keeper's service");
    keeper.keep_tokens_alive().await.expect("a keeper run");
    let actions = proxy.take_actions();
    checked += actions.len();
    missing.extend(not_allowed(&template, &app, "TokenKeeperFunction", actions));

    assert!(checked > 100, "only {checked} calls were recorded");
    assert!(
        missing.is_empty(),
        "actions the functions call but their policies do not allow: {missing:#?}"
    );
}
