//! Email from the user's own mailbox (Gmail, Microsoft 365) and the replies read back from it,
//! through the real worker and reply poller, against the platform stand-in
//! (tests/src/fake_mailbox/), which plays Gmail's and Graph's send, history, delta and message
//! endpoints as they document them.

use aws_sdk_dynamodb::types::AttributeValue;
use pipewise_tests::TestApp;
use pipewise_tests::connect_flow::{app_with_providers, connected, revealed};
use pipewise_tests::fake_mailbox::{GmailSendAnswer, GraphSendAnswer, Inbound};
use pipewise_tests::fake_oauth::Provider;
use pipewise_tests::fake_social::FakeSocial;
use serde_json::{Value, json};

const ACCOUNTS: &str = "/api/user/integrations/accounts";
const TARGETS: &str = "/api/user/communication-targets";
const INITIATE: &str = "/api/user/orchestrator/initiate-communications";
const RUNS: &str = "/api/user/orchestrator/runs";

/// `count` of alice's targets with emails at `domain`; their ids.
async fn targets(app: &TestApp, domain: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let created = app
            .post(
                TARGETS,
                "alice",
                &json!({"name": format!("Grace{i} Hopper"), "email": format!("grace{i}@{domain}")}),
            )
            .await;
        created.assert_status(201);
        ids.push(created.body["id"].as_str().expect("id").to_owned());
    }
    ids
}

/// Starts a run of one email to every target; its id.
async fn run(app: &TestApp) -> String {
    let started = app
        .post(
            INITIATE,
            "alice",
            &json!({"channels": ["email"], "message": {"subject": "Hello {{first_name}}", "body": "Hi {{name}}"}}),
        )
        .await;
    started.assert_status(202);
    started.body["run_id"].as_str().expect("run id").to_owned()
}

/// Makes an account's access token look expired, so the next use refreshes it first.
async fn expire_tokens(app: &TestApp, user: &str, account_id: &str) {
    app.dynamodb()
        .update_item()
        .table_name(app.resource("AccountsTable"))
        .key("user_id", AttributeValue::S(user.into()))
        .key("account_id", AttributeValue::S(account_id.into()))
        .update_expression("SET expires_at = :past")
        .expression_attribute_values(":past", AttributeValue::S("2020-01-01T00:00:00Z".into()))
        .send()
        .await
        .expect("expire the tokens");
}

fn refreshes(fake: &FakeSocial, provider: Provider) -> usize {
    fake.token_calls()
        .iter()
        .filter(|call| call.provider == provider && call.grant_type == "refresh_token")
        .count()
}

async fn run_view(app: &TestApp, run_id: &str) -> Value {
    let view = app.get(&format!("{RUNS}/{run_id}"), "alice").await;
    view.assert_status(200);
    view.body
}

fn reply_to(mailbox: &str, from: &str, message_id: &str) -> Inbound {
    Inbound {
        mailbox: mailbox.into(),
        from: from.into(),
        subject: "Re: Hello Grace0".into(),
        in_reply_to: Some(message_id.into()),
        references: Some(message_id.into()),
        body: "Sounds good, let's talk.".into(),
        ..Inbound::default()
    }
}

#[tokio::test]
async fn a_run_goes_out_through_gmail_with_one_refresh_and_nothing_through_ses() {
    let (app, fake) = app_with_providers().await;
    let account = connected(&app, "alice", Provider::Google).await;
    let before = revealed(&app, "alice", &account).await;
    expire_tokens(&app, "alice", &account).await;
    targets(&app, "client.example", 3).await;
    let run_id = run(&app).await;
    assert_eq!(app.drain_queue().await, 3);

    let sent = fake.sent_mail();
    assert_eq!(sent.len(), 3, "{sent:?}");
    let after = revealed(&app, "alice", &account).await;
    assert_ne!(after["access_token"], before["access_token"], "refreshed");
    assert_eq!(
        refreshes(&fake, Provider::Google),
        1,
        "one refresh for three sends"
    );
    assert_eq!(
        after["refresh_token"], before["refresh_token"],
        "Google keeps the refresh token"
    );
    for mail in &sent {
        assert_eq!(mail.provider, Provider::Google);
        assert_eq!(mail.from, "ada@example.com");
        assert_eq!(mail.token, after["access_token"].as_str().expect("token"));
        assert!(
            mail.message_id.ends_with("@example.com>"),
            "{}",
            mail.message_id
        );
        assert!(
            mail.list_unsubscribe
                .as_deref()
                .is_some_and(|l| l.contains("/api/user/unsubscribe/"))
        );
        assert_eq!(
            mail.list_unsubscribe_post.as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        assert!(mail.body.contains("To stop receiving these emails"));
    }
    assert!(
        app.sent_message_ids("ada@example.com").await.is_empty(),
        "nothing went through SES"
    );
    let view = run_view(&app, &run_id).await;
    assert_eq!(view["counts"]["sent"], 3);
    assert_eq!(view["status"], "completed");
}

#[tokio::test]
async fn a_reply_marks_exactly_its_communication_and_machines_and_the_sender_do_not() {
    let (app, fake) = app_with_providers().await;
    connected(&app, "alice", Provider::Google).await;
    let ids = targets(&app, "client.example", 3).await;
    let run_id = run(&app).await;
    app.drain_queue().await;
    let worker = app.worker();
    // The first read of a mailbox sets its cursor.
    worker.poll_replies().await.expect("poll");

    let sent = fake.sent_mail();
    let to = |i: usize| {
        sent.iter()
            .find(|mail| mail.to.contains(&format!("grace{i}@")))
            .expect("sent")
            .clone()
    };
    fake.deliver(reply_to(
        "ada@example.com",
        "Grace0 <grace0@client.example>",
        &to(0).message_id,
    ));
    fake.deliver(Inbound {
        headers: vec![("Auto-Submitted".into(), "auto-replied".into())],
        ..reply_to(
            "ada@example.com",
            "grace1@client.example",
            &to(1).message_id,
        )
    });
    fake.deliver(reply_to(
        "ada@example.com",
        "ada@example.com",
        &to(2).message_id,
    ));
    let report = worker.poll_replies().await.expect("poll");
    assert_eq!(report.replies, 1, "{report:?}");
    assert_eq!(report.failed, 0);

    let view = run_view(&app, &run_id).await;
    assert_eq!(view["counts"]["replied"], 1);
    let communications = view["communications"].as_array().expect("communications");
    let replied: Vec<&Value> = communications
        .iter()
        .filter(|c| c["status"] == "replied")
        .collect();
    assert_eq!(replied.len(), 1);
    assert_eq!(replied[0]["target_id"], ids[0].as_str());
    assert!(replied[0]["replied_at"].is_string());
    let listed = app.get(TARGETS, "alice").await;
    let target = |id: &str| {
        listed.body["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .find(|target| target["id"] == id)
            .cloned()
            .expect("the target")
    };
    assert!(
        target(&ids[0])["last_replied_at"].is_string(),
        "{}",
        listed.text
    );
    assert!(
        target(&ids[1])
            .get("last_replied_at")
            .is_none_or(Value::is_null)
    );

    // Read again (the same history), or a second copy: counted once.
    let again = worker.poll_replies().await.expect("poll");
    assert_eq!(again.replies, 0);
    assert_eq!(run_view(&app, &run_id).await["counts"]["replied"], 1);
}

#[tokio::test]
async fn a_cursor_gmail_no_longer_keeps_is_a_resync_of_the_last_week() {
    let (app, fake) = app_with_providers().await;
    connected(&app, "alice", Provider::Google).await;
    targets(&app, "client.example", 1).await;
    let run_id = run(&app).await;
    app.drain_queue().await;
    let worker = app.worker();
    worker.poll_replies().await.expect("first read");
    fake.mailbox_page_size(Some(1));
    let sent = fake.sent_mail();
    fake.deliver(reply_to(
        "ada@example.com",
        "grace0@client.example",
        &sent[0].message_id,
    ));
    fake.expire_gmail_history("ada@example.com");
    let report = worker.poll_replies().await.expect("poll");
    assert_eq!(report.resynced, 1, "{report:?}");
    assert_eq!(report.replies, 1, "{report:?}");
    assert_eq!(run_view(&app, &run_id).await["counts"]["replied"], 1);
    // The cursor is sound again: the next read is an ordinary one.
    let next = worker.poll_replies().await.expect("poll");
    assert_eq!(next.resynced, 0, "{next:?}");
}

#[tokio::test]
async fn microsofts_rotated_refresh_token_survives_concurrent_sends_and_replies_are_found() {
    let (app, fake) = app_with_providers().await;
    let account = connected(&app, "alice", Provider::Microsoft).await;
    let before = revealed(&app, "alice", &account).await;
    expire_tokens(&app, "alice", &account).await;
    targets(&app, "client.example", 4).await;
    let run_id = run(&app).await;
    // One batch: the worker sends its messages concurrently.
    assert_eq!(app.drain_queue().await, 4);
    assert_eq!(
        refreshes(&fake, Provider::Microsoft),
        1,
        "one refresh under the lease"
    );
    let after = revealed(&app, "alice", &account).await;
    assert_ne!(
        after["refresh_token"], before["refresh_token"],
        "rotated and kept"
    );
    let sent = fake.sent_mail();
    assert_eq!(sent.len(), 4);
    assert!(sent.iter().all(|mail| mail.provider == Provider::Microsoft
        && mail.token == after["access_token"].as_str().expect("token")
        && mail.from == "ada@contoso.example"));

    // The kept refresh token works: the next expiry refreshes again.
    expire_tokens(&app, "alice", &account).await;
    let worker = app.worker();
    worker.poll_replies().await.expect("first read");
    assert_eq!(refreshes(&fake, Provider::Microsoft), 2);
    assert_eq!(
        app.get(&format!("{ACCOUNTS}/{account}"), "alice")
            .await
            .body["connected"],
        true
    );

    fake.deliver(reply_to(
        "ada@contoso.example",
        "grace2@client.example",
        &sent[2].message_id,
    ));
    let report = worker.poll_replies().await.expect("poll");
    assert_eq!(report.replies, 1, "{report:?}");
    assert_eq!(run_view(&app, &run_id).await["counts"]["replied"], 1);
    // Graph's delta state is gone: a new delta query, and the same reply is not counted twice.
    fake.expire_graph_delta("ada@contoso.example");
    let resynced = worker.poll_replies().await.expect("poll");
    assert_eq!(resynced.resynced, 1, "{resynced:?}");
    assert_eq!(resynced.replies, 0);
}

#[tokio::test]
async fn the_mailboxes_answers_are_waited_out_failed_or_never_repeated() {
    let (app, fake) = app_with_providers().await;
    connected(&app, "alice", Provider::Google).await;
    targets(&app, "client.example", 3).await;
    fake.gmail_send_answers(&[
        GmailSendAnswer::BackendError,
        GmailSendAnswer::InvalidArgument("Invalid To header".into()),
        GmailSendAnswer::UserRateLimitExceeded,
    ]);
    let run_id = run(&app).await;
    app.drain_queue().await;
    let view = run_view(&app, &run_id).await;
    let reasons: Vec<String> = view["communications"]
        .as_array()
        .expect("communications")
        .iter()
        .filter_map(|c| c["reason"].as_str().map(str::to_owned))
        .collect();
    assert!(
        reasons.contains(&"delivery_outcome_unknown".to_owned()),
        "a 500 after the request left is never sent again: {reasons:?}"
    );
    assert!(
        reasons.contains(&"message_rejected".to_owned()),
        "{reasons:?}"
    );
    // The rate-limited one waits on the queue (Gmail's 403 names no time: a minute), not failed.
    assert_eq!(view["counts"]["failed"], 2, "{view}");
    assert_eq!(view["counts"]["pending"], 1, "{view}");
    assert_eq!(view["counts"]["sent"], 0);

    // Graph's 429 waits its `Retry-After`, then the message goes out once.
    let (app, fake) = app_with_providers().await;
    connected(&app, "alice", Provider::Microsoft).await;
    targets(&app, "client.example", 1).await;
    fake.graph_send_answers(&[GraphSendAnswer::Throttled {
        retry_after_seconds: 1,
    }]);
    let run_id = run(&app).await;
    app.drain_queue().await;
    assert!(fake.sent_mail().is_empty(), "nothing sent while throttled");
    assert_eq!(run_view(&app, &run_id).await["counts"]["pending"], 1);
    // The message waits in SQS (a real delay in the emulator) for the second Graph named.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    app.drain_queue().await;
    let view = run_view(&app, &run_id).await;
    assert_eq!(view["counts"]["sent"], 1, "{view}");
    assert_eq!(fake.sent_mail().len(), 1);
}

#[tokio::test]
async fn a_send_refreshes_its_token_at_most_once_whichever_step_was_refused() {
    let (app, fake) = app_with_providers().await;
    let account = connected(&app, "alice", Provider::Google).await;
    // Saved by hand (as a migration would) with an access token Google no longer takes: the
    // address check is refused, so the send refreshes first.
    let mut configuration = revealed(&app, "alice", &account).await;
    configuration["access_token"] = json!("ya29.stale");
    app.post(
        ACCOUNTS,
        "alice",
        &json!({"account_id": account, "account_type": "email", "provider": "google",
            "configuration": configuration}),
    )
    .await
    .assert_status(200);
    targets(&app, "client.example", 1).await;
    // The send itself is then refused too: a token refused right after its refresh is dead,
    // not stale, and is not refreshed a second time.
    fake.gmail_send_answers(&[GmailSendAnswer::Unauthenticated]);
    let run_id = run(&app).await;
    app.drain_queue().await;
    assert_eq!(
        refreshes(&fake, Provider::Google),
        1,
        "one refresh per send"
    );
    assert!(fake.sent_mail().is_empty());
    let view = run_view(&app, &run_id).await;
    assert_eq!(
        view["communications"][0]["reason"], "token_revoked",
        "{view}"
    );

    // A send refused once with a good refresh token goes out after one refresh.
    fake.gmail_send_answers(&[GmailSendAnswer::Unauthenticated]);
    run(&app).await;
    app.drain_queue().await;
    assert_eq!(fake.sent_mail().len(), 1);
    assert_eq!(refreshes(&fake, Provider::Google), 2);
}

#[tokio::test]
async fn the_poller_reads_connected_mailboxes_by_provider_and_nothing_else() {
    let (app, _platforms) = app_with_providers().await;
    connected(&app, "alice", Provider::Google).await;
    connected(&app, "bob", Provider::Microsoft).await;
    let gone = connected(&app, "carol", Provider::Google).await;
    // Carol's mailbox disconnected, and accounts that are no mailbox (a Google calendar, in the
    // same index partition; an SES sender, in none) beside them: none of them is read.
    app.dynamodb()
        .update_item()
        .table_name(app.resource("AccountsTable"))
        .key("user_id", AttributeValue::S("carol".into()))
        .key("account_id", AttributeValue::S(gone.clone()))
        .update_expression("SET connected = :false, status_reason = :reason")
        .expression_attribute_values(":false", AttributeValue::Bool(false))
        .expression_attribute_values(":reason", AttributeValue::S("reauth_required".into()))
        .send()
        .await
        .expect("disconnect carol's mailbox");
    app.post(
        ACCOUNTS,
        "dave",
        &json!({"account_id": "calendar", "account_type": "calendar", "provider": "google",
            "configuration": {"calendar_id": "primary"}}),
    )
    .await
    .assert_status(201);
    app.post(
        ACCOUNTS,
        "dave",
        &json!({"account_id": "ses", "account_type": "email",
            "configuration": {"from_address": "dave@sender.example"}}),
    )
    .await
    .assert_status(201);
    let report = app.worker().poll_replies().await.expect("a poll");
    assert_eq!(report.mailboxes, 2, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
}

#[tokio::test]
async fn one_dead_mailbox_never_stops_the_others() {
    let (app, fake) = app_with_providers().await;
    // Bob's Gmail, which will die, and Alice's Microsoft mailbox, which sends and is answered.
    let dead = connected(&app, "bob", Provider::Google).await;
    connected(&app, "alice", Provider::Microsoft).await;
    targets(&app, "client.example", 1).await;
    let run_id = run(&app).await;
    app.drain_queue().await;
    let worker = app.worker();
    worker.poll_replies().await.expect("first read");
    fake.revoke_grant(Provider::Google);
    expire_tokens(&app, "bob", &dead).await;
    let sent = fake.sent_mail();
    assert_eq!(sent.len(), 1);
    fake.deliver(reply_to(
        "ada@contoso.example",
        "grace0@client.example",
        &sent[0].message_id,
    ));
    let report = worker.poll_replies().await.expect("poll");
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(report.replies, 1, "{report:?}");
    assert_eq!(run_view(&app, &run_id).await["counts"]["replied"], 1);
    let account = app.get(&format!("{ACCOUNTS}/{dead}"), "bob").await;
    assert_eq!(account.body["status_reason"], "reauth_required");
}

#[tokio::test]
async fn a_typed_from_address_sends_nothing_until_the_mailbox_proves_it() {
    let (app, fake) = app_with_providers().await;
    let account = connected(&app, "alice", Provider::Google).await;
    // The user edits the address by hand (the raw-token POST, as a migration would): the
    // configuration comes back masked, so the tokens stay those of ada@example.com.
    let stored = app.get(&format!("{ACCOUNTS}/{account}"), "alice").await;
    let save = |from: &str| {
        let mut configuration = stored.body["configuration"].clone();
        configuration["from_address"] = json!(from);
        json!({"account_id": account, "account_type": "email", "provider": "google",
            "configuration": configuration})
    };
    app.post(ACCOUNTS, "alice", &save("ceo@bank.example"))
        .await
        .assert_status(200);
    targets(&app, "client.example", 2).await;
    let run_id = run(&app).await;
    app.drain_queue().await;
    assert!(
        fake.sent_mail().is_empty(),
        "nothing from a borrowed address"
    );
    let view = run_view(&app, &run_id).await;
    for communication in view["communications"].as_array().unwrap() {
        assert_eq!(communication["status"], "failed");
        assert_eq!(communication["reason"], "mailbox_address_mismatch");
    }
    let marked = app.get(&format!("{ACCOUNTS}/{account}"), "alice").await;
    assert_eq!(marked.body["connected"], false);
    assert_eq!(marked.body["status_reason"], "mailbox_address_mismatch");

    // Saved with the mailbox's own address (in another case), it proves it on the next send.
    app.post(ACCOUNTS, "alice", &save("Ada@Example.com"))
        .await
        .assert_status(200);
    run(&app).await;
    app.drain_queue().await;
    let sent = fake.sent_mail();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let confirmed = app.get(&format!("{ACCOUNTS}/{account}"), "alice").await;
    assert_eq!(confirmed.body["connected"], true);
    assert!(confirmed.body["status_reason"].is_null());
}

#[tokio::test]
async fn free_mail_needs_its_mailbox_and_a_mailbox_cap_can_only_be_lowered() {
    let (app, _fake) = app_with_providers().await;
    for address in [
        "me@gmail.com",
        "Me@Hotmail.com",
        "me@gmx.de",
        "me@yahoo.com",
    ] {
        let refused = app
            .post(
                ACCOUNTS,
                "alice",
                &json!({"account_id": "ses", "account_type": "email",
                    "configuration": {"from_address": address}}),
            )
            .await;
        refused.assert_error(422, "freemail_sender_needs_mailbox");
        assert_eq!(
            refused.body["error"]["details"][0]["field"],
            "configuration.from_address"
        );
    }
    assert_eq!(app.get(ACCOUNTS, "alice").await.body["total"], 0);

    let mailbox = |limit: u32| {
        json!({"account_id": "gmail", "account_type": "email", "provider": "google",
            "configuration": {"from_address": "me@gmail.com", "access_token": "ya29.mailbox-token", "daily_send_limit": limit}})
    };
    app.post(ACCOUNTS, "alice", &mailbox(501))
        .await
        .assert_error(422, "validation_failed");
    let saved = app.post(ACCOUNTS, "alice", &mailbox(200)).await;
    saved.assert_status(201);
    assert_eq!(
        saved.body["connected"], true,
        "a mailbox needs no SES verification"
    );
}
