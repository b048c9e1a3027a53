//! Tenant and secret safety: senders a user owns, credentials in any spelling, masks that cannot
//! move between list items, error bodies that never echo input, text without control characters.

use aws_sdk_dynamodb::types::AttributeValue;
use pipewise_tests::TestApp;
use serde_json::{Value, json};

const ACCOUNTS: &str = "/api/user/integrations/accounts";
const TARGETS: &str = "/api/user/communication-targets";
const INITIATE: &str = "/api/user/orchestrator/initiate-communications";

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}@t{}.example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

fn email_account(account_id: &str, from: &str) -> Value {
    json!({"account_id": account_id, "account_type": "email", "configuration": {"from_address": from}})
}

async fn raw_items(app: &TestApp) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    app.scan_table("AccountsTable").await
}

/// The claim item of a sender address, as stored.
async fn claim_of(
    app: &TestApp,
    address: &str,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    app.dynamodb()
        .get_item()
        .table_name(app.resource("AccountsTable"))
        .key("user_id", AttributeValue::S(format!("sender#{address}")))
        .key("account_id", AttributeValue::S("#owner".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

/// The claim attempt SES's identity for `address` is tagged with (`None`: no tag or no identity).
async fn identity_attempt(app: &TestApp, address: &str) -> Option<String> {
    let identity = aws_sdk_sesv2::Client::new(&app.sdk)
        .get_email_identity()
        .email_identity(address)
        .send()
        .await
        .ok()?;
    identity
        .tags()
        .iter()
        .find(|tag| tag.key() == "pipewise:sender-claim-attempt")
        .map(|tag| tag.value().to_owned())
}

#[tokio::test]
async fn a_user_cannot_send_as_another_users_address_or_an_unproven_one() {
    let app = TestApp::spawn().await;
    let alices = unique("alice");
    let created = app
        .post(ACCOUNTS, "alice", &email_account("work", &alices))
        .await;
    created.assert_status(201);
    assert_eq!(created.body["status_reason"], "sender_pending_verification");
    app.sender_verified("alice", "work").await;

    // Bob claims Alice's verified address, in any spelling: the same answer as any address
    // waiting for its owner (nothing tells Bob that Alice sends from it), and it never connects.
    for spelling in [alices.clone(), alices.to_uppercase(), format!(" {alices} ")] {
        let answer = app
            .post(ACCOUNTS, "bob", &email_account("mine", &spelling))
            .await;
        assert!(
            matches!(answer.status.as_u16(), 200 | 201),
            "{}",
            answer.text
        );
        assert_eq!(answer.body["connected"], false);
        assert_eq!(answer.body["status_reason"], "sender_pending_verification");
    }
    let bobs_read = app.get(&format!("{ACCOUNTS}/mine"), "bob").await;
    assert_eq!(bobs_read.body["connected"], false, "{}", bobs_read.text);
    // Not even through a second account of Alice's own.
    let second = app
        .post(ACCOUNTS, "alice", &email_account("other", &alices))
        .await;
    assert_eq!(second.body["connected"], false);
    let claim = claim_of(&app, &alices).await.expect("Alice's claim");
    assert_eq!(claim["owner_user_id"], AttributeValue::S("alice".into()));
    assert_eq!(claim["owner_account_id"], AttributeValue::S("work".into()));

    // Bob's own address that SES has not verified: stored, not connected, verification started.
    let bobs = unique("bob");
    let pending = app
        .post(ACCOUNTS, "bob", &email_account("mine", &bobs))
        .await;
    pending.assert_status(200);
    assert_eq!(pending.body["connected"], false);
    assert_eq!(pending.body["status_reason"], "sender_pending_verification");
    let target = json!({"name": "Ada", "email": unique("ada")});
    app.post(TARGETS, "bob", &target).await.assert_status(201);
    app.post(INITIATE, "bob", &json!({"message": {"body": "hi"}}))
        .await
        .assert_error(422, "nothing_deliverable");
    assert!(app.sent_emails(&bobs).await.is_empty());

    // SES verifies it (moto does so as soon as verification starts; AWS after the link is
    // clicked): the next read shows the account connected.
    let read = app.get(&format!("{ACCOUNTS}/mine"), "bob").await;
    assert_eq!(read.body["connected"], true, "{}", read.text);
    assert_eq!(read.body["status_reason"], Value::Null);

    // Alice disconnects: the identity her claim made is gone, then the claim; her address is
    // free for a new claimant, who must prove it again.
    let alices_attempt = identity_attempt(&app, &alices).await;
    assert!(alices_attempt.is_some());
    app.delete(&format!("{ACCOUNTS}/work"), "alice")
        .await
        .assert_status(204);
    assert_eq!(identity_attempt(&app, &alices).await, None);
    assert!(claim_of(&app, &alices).await.is_none());
    app.post(ACCOUNTS, "bob", &email_account("second", &alices))
        .await
        .assert_status(201);
    let bobs_attempt = identity_attempt(&app, &alices).await;
    assert!(bobs_attempt.is_some() && bobs_attempt != alices_attempt);
    app.sender_verified("bob", "second").await;
}

#[tokio::test]
async fn an_identity_ses_already_had_never_proves_a_claim() {
    let app = TestApp::spawn().await;
    // The operator's own verified address: claimed, it stays pending and SES keeps it as is.
    let operators = unique("no-reply");
    app.operator_identity(&operators).await;
    let answer = app
        .post(ACCOUNTS, "mallory", &email_account("spoof", &operators))
        .await;
    answer.assert_status(201);
    assert_eq!(answer.body["connected"], false);
    let read = app.get(&format!("{ACCOUNTS}/spoof"), "mallory").await;
    assert_eq!(read.body["connected"], false, "{}", read.text);
    assert_eq!(read.body["status_reason"], "sender_pending_verification");
    let untouched = aws_sdk_sesv2::Client::new(&app.sdk)
        .get_email_identity()
        .email_identity(&operators)
        .send()
        .await;
    assert!(
        untouched.is_ok(),
        "the operator's identity is never deleted"
    );

    // A verified identity an earlier claim of ours left behind (its claim gone, e.g. a release
    // cut short): the next claimant gets a new verification, never the old one's success.
    let address = unique("sales");
    app.post(ACCOUNTS, "alice", &email_account("work", &address))
        .await
        .assert_status(201);
    app.sender_verified("alice", "work").await;
    let first = identity_attempt(&app, &address)
        .await
        .expect("tagged identity");
    app.dynamodb()
        .delete_item()
        .table_name(app.resource("AccountsTable"))
        .key("user_id", AttributeValue::S(format!("sender#{address}")))
        .key("account_id", AttributeValue::S("#owner".into()))
        .send()
        .await
        .unwrap();
    let bob = app
        .post(ACCOUNTS, "bob", &email_account("mine", &address))
        .await;
    assert_eq!(bob.body["connected"], false, "{}", bob.text);
    let second = identity_attempt(&app, &address).await.expect("re-created");
    assert_ne!(
        first, second,
        "SES was asked to verify again, for Bob's claim"
    );
    // Alice's account, whose claim is gone, can no longer send.
    let claim = claim_of(&app, &address).await.expect("Bob's claim");
    assert_eq!(claim["owner_user_id"], AttributeValue::S("bob".into()));
    assert_eq!(claim["attempt"], AttributeValue::S(second));
}

#[tokio::test]
async fn an_unverified_claim_expires_and_its_address_can_be_claimed_by_its_owner() {
    let app = TestApp::spawn().await;
    let address = unique("ceo");
    // Mallory squats on an address she cannot verify (the claim is made; SES mails its owner).
    app.post(ACCOUNTS, "mallory", &email_account("squat", &address))
        .await
        .assert_status(201);
    // The real owner, within the day: pending, nothing claimed.
    let early = app
        .post(ACCOUNTS, "owner", &email_account("mine", &address))
        .await;
    assert_eq!(early.body["connected"], false);
    let claim = claim_of(&app, &address).await.unwrap();
    assert_eq!(claim["owner_user_id"], AttributeValue::S("mallory".into()));
    // A day and more later (SES's link expired), the owner's save takes the claim over.
    app.dynamodb()
        .update_item()
        .table_name(app.resource("AccountsTable"))
        .key("user_id", AttributeValue::S(format!("sender#{address}")))
        .key("account_id", AttributeValue::S("#owner".into()))
        .update_expression("SET started_at = :old")
        .expression_attribute_values(
            ":old",
            AttributeValue::N(
                (pipewise::clock::Clock::system().epoch_seconds() - 86_401).to_string(),
            ),
        )
        .send()
        .await
        .unwrap();
    app.post(ACCOUNTS, "owner", &email_account("mine", &address))
        .await
        .assert_status(200);
    let claim = claim_of(&app, &address).await.unwrap();
    assert_eq!(claim["owner_user_id"], AttributeValue::S("owner".into()));
    app.sender_verified("owner", "mine").await;
    let squatter = app.get(&format!("{ACCOUNTS}/squat"), "mallory").await;
    assert_eq!(squatter.body["connected"], false);
}

#[tokio::test]
async fn from_address_cannot_be_a_secret_and_verification_starts_are_limited() {
    let app = TestApp::spawn().await;
    let mut body = email_account("work", &unique("me"));
    body["secret_fields"] = json!(["from_address"]);
    let refused = app.post(ACCOUNTS, "alice", &body).await;
    refused.assert_error(422, "validation_failed");
    assert_eq!(
        refused.body["error"]["details"][0]["field"],
        "secret_fields.0"
    );
    assert!(raw_items(&app).await.is_empty(), "nothing stored");

    // Each new address makes SES mail someone: ten an hour per user, then 429.
    for i in 0..10 {
        let started = app
            .post(
                ACCOUNTS,
                "alice",
                &email_account("work", &unique(&format!("a{i}"))),
            )
            .await;
        assert!(
            matches!(started.status.as_u16(), 200 | 201),
            "{}",
            started.text
        );
    }
    let limited = app
        .post(
            ACCOUNTS,
            "alice",
            &email_account("work", &unique("eleventh")),
        )
        .await;
    limited.assert_error(429, "sender_verifications_exceeded");
    assert!(limited.headers.contains_key("retry-after"));
    // Another user is not limited by Alice's starts.
    app.post(ACCOUNTS, "bob", &email_account("work", &unique("bob")))
        .await
        .assert_status(201);
}

#[tokio::test]
async fn twenty_concurrent_claims_of_one_sender_have_one_winner() {
    let app = TestApp::spawn().await;
    let address = unique("shared");
    let claims = (0..20).map(|i| {
        let app = &app;
        let address = address.clone();
        async move {
            app.post(
                ACCOUNTS,
                &format!("user{i}"),
                &email_account("mail", &address),
            )
            .await
        }
    });
    let responses = futures::future::join_all(claims).await;
    // Every answer is the same "pending" (nobody learns who won)...
    assert!(
        responses.iter().all(|r| r.status.as_u16() == 201
            && r.body["status_reason"] == "sender_pending_verification")
    );
    // ...and exactly one claim exists, whose account alone connects.
    let claim = claim_of(&app, &address).await.expect("one claim");
    let AttributeValue::S(winner) = &claim["owner_user_id"] else {
        panic!("owner")
    };
    let mut connected = 0;
    for i in 0..20 {
        let user = format!("user{i}");
        let read = app.get(&format!("{ACCOUNTS}/mail"), &user).await;
        if read.body["connected"] == true {
            connected += 1;
            assert_eq!(&user, winner);
        }
    }
    assert_eq!(connected, 1);
}

#[tokio::test]
async fn delivery_rechecks_that_the_account_still_owns_its_sender() {
    let app = TestApp::spawn().await;
    let sender = unique("sales");
    app.post(ACCOUNTS, "alice", &email_account("work", &sender))
        .await
        .assert_status(201);
    app.sender_verified("alice", "work").await;
    app.post(
        TARGETS,
        "alice",
        &json!({"name": "Ada", "email": unique("ada")}),
    )
    .await
    .assert_status(201);
    let run = app
        .post(INITIATE, "alice", &json!({"message": {"body": "hi"}}))
        .await;
    run.assert_status(202);
    // The claim changes hands after the run was queued (e.g. a race with a disconnect).
    app.dynamodb()
        .put_item()
        .table_name(app.resource("AccountsTable"))
        .item("user_id", AttributeValue::S(format!("sender#{sender}")))
        .item("account_id", AttributeValue::S("#owner".into()))
        .item("owner_user_id", AttributeValue::S("mallory".into()))
        .item("owner_account_id", AttributeValue::S("work".into()))
        .send()
        .await
        .unwrap();
    app.drain_queue().await;
    assert!(
        app.sent_emails(&sender).await.is_empty(),
        "nothing was sent"
    );
    let run_id = run.body["run_id"].as_str().unwrap();
    let view = app
        .get(&format!("/api/user/orchestrator/runs/{run_id}"), "alice")
        .await;
    assert_eq!(view.body["communications"][0]["status"], "failed");
    assert_eq!(view.body["communications"][0]["reason"], "sender_not_owned");
}

/// Every spelling a frontend, an SDK or a copy-paste produces for a credential.
fn credential_configuration() -> (Value, Vec<String>) {
    let canary = |n: usize| format!("CANARY{n:02}x9f3kq2");
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    let pem =
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
    let aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let configuration = json!({
        "accessToken": canary(1),
        "clientSecret": canary(2),
        "privateKey": canary(3),
        "aws": {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": canary(4)},
        "headers": {"Authorization": format!("Bearer {}", canary(5))},
        "api_keys": [canary(6), canary(7)],
        "pwd": canary(8),
        "X-Api-Key": canary(9),
        "refresh-token": canary(10),
        "smtp.password": canary(11),
        "oauth": {"idToken": canary(12), "sessionToken": canary(13)},
        "webhookSigningSecret": canary(14),
        "database_url": format!("postgres://app:{}@db.internal:5432/crm", canary(15)),
        "note": jwt,
        "cert_blob": pem,
        "pair": {"id": "AKIAIOSFODNN7EXAMPLE", "other": aws_secret},
        "custom": {"opaque_thing": canary(16)},
        "Cookie": canary(17),
        "APIKey": canary(18),
        "host": "smtp.example.com",
        "max_tokens": 400,
    });
    let mut secrets: Vec<String> = (1..=18).map(canary).collect();
    secrets.extend([jwt.to_owned(), pem.to_owned(), aws_secret.to_owned()]);
    (configuration, secrets)
}

#[tokio::test]
async fn credentials_in_any_spelling_are_sealed_in_reads_lists_and_the_stored_item() {
    let app = TestApp::spawn().await;
    let (configuration, secrets) = credential_configuration();
    let body = json!({"account_id": "crm", "account_type": "crm", "configuration": configuration,
        "secret_fields": ["custom.opaque_thing"]});
    let created = app.post(ACCOUNTS, "alice", &body).await;
    created.assert_status(201);
    let read = app.get(&format!("{ACCOUNTS}/crm"), "alice").await;
    let listed = app.get(ACCOUNTS, "alice").await;
    let stored = format!("{:?}", raw_items(&app).await);
    let mut leaks = Vec::new();
    for secret in &secrets {
        for (place, text) in [
            ("POST answer", &created.text),
            ("GET", &read.text),
            ("list", &listed.text),
            ("DynamoDB item", &stored),
        ] {
            if text.contains(secret.as_str()) {
                leaks.push(format!("{place}: {secret}"));
            }
        }
    }
    assert!(leaks.is_empty(), "credentials got through: {leaks:#?}");
    // Readable settings stay readable, and the secrets come back whole to an agent.
    assert_eq!(read.body["configuration"]["host"], "smtp.example.com");
    assert_eq!(read.body["configuration"]["max_tokens"], 400);
    let revealed = app
        .send(
            app.request(reqwest::Method::GET, &format!("{ACCOUNTS}/crm/secrets"))
                .bearer_auth(app.token_with_scope("alice", "integrations:secrets:read")),
        )
        .await;
    revealed.assert_status(200);
    assert_eq!(revealed.body["configuration"], configuration);
    eprintln!(
        "figures: {} credential spellings tried, {} got through",
        secrets.len(),
        leaks.len()
    );
}

#[tokio::test]
async fn a_mask_never_moves_a_secret_to_another_list_item() {
    let app = TestApp::spawn().await;
    let body = json!({"account_id": "imap", "account_type": "email", "configuration": {
    "inboxes": [
        {"host": "imap.a.example", "password": "password-of-a"},
        {"host": "imap.b.example", "password": "password-of-b"},
    ]}});
    app.post(ACCOUNTS, "alice", &body).await.assert_status(201);
    // The user removes inbox A and posts back B with its mask: B moved from index 1 to 0.
    let moved = json!({"account_id": "imap", "account_type": "email", "configuration": {
        "inboxes": [{"host": "imap.b.example", "password": "********"}]}});
    let refused = app.post(ACCOUNTS, "alice", &moved).await;
    refused.assert_error(422, "validation_failed");
    assert_eq!(
        refused.body["error"]["details"][0]["field"],
        "configuration.inboxes.0.password"
    );
    // Swapped order, same length: refused too.
    let swapped = json!({"account_id": "imap", "account_type": "email", "configuration": {
    "inboxes": [
        {"host": "imap.b.example", "password": "********"},
        {"host": "imap.a.example", "password": "********"},
    ]}});
    app.post(ACCOUNTS, "alice", &swapped)
        .await
        .assert_error(422, "validation_failed");
    // Nothing changed; and an unchanged list keeps both secrets where they were.
    let unchanged = json!({"account_id": "imap", "account_type": "email", "configuration": {
    "inboxes": [
        {"host": "imap.a.example", "password": "********"},
        {"host": "imap.b.example", "password": "********"},
    ]}});
    app.post(ACCOUNTS, "alice", &unchanged)
        .await
        .assert_status(200);
    let revealed = app
        .send(
            app.request(reqwest::Method::GET, &format!("{ACCOUNTS}/imap/secrets"))
                .bearer_auth(app.token_with_scope("alice", "integrations:secrets:read")),
        )
        .await;
    assert_eq!(
        revealed.body["configuration"]["inboxes"],
        json!([
            {"host": "imap.a.example", "password": "password-of-a"},
            {"host": "imap.b.example", "password": "password-of-b"},
        ])
    );
}

/// Values built to look like the parts serde puts into its messages.
fn hostile_values() -> Vec<String> {
    let mut values = vec![
        "ECHO1, expected ECHO1".to_owned(),
        "ECHO2\", expected a boolean".to_owned(),
        "ECHO3` or `email".to_owned(),
        "one of `email`, `ECHO4`".to_owned(),
        "ECHO5 at line 1 column 1".to_owned(),
    ];
    // And a deterministic spread of other shapes.
    for n in 0..20u32 {
        values.push(format!(
            "ECHO {:02}{}",
            n + 10,
            ", expected x".repeat((n % 3) as usize)
        ));
    }
    values
}

#[tokio::test]
async fn no_422_contains_a_value_that_was_sent() {
    let app = TestApp::spawn().await;
    let mut cases = 0;
    for value in hostile_values() {
        let bodies = [
            (
                ACCOUNTS,
                json!({"account_id": "a", "account_type": "email", "connected": value}),
            ),
            (ACCOUNTS, json!({"account_id": "a", "account_type": value})),
            (
                ACCOUNTS,
                json!({"account_id": value, "account_type": "crm"}),
            ),
            (
                ACCOUNTS,
                json!({"account_id": "a", "account_type": "crm", "secret_fields": value}),
            ),
            (TARGETS, json!({"name": "A", "email": value})),
            (TARGETS, json!({"name": ["A"], "email": value})),
            (TARGETS, json!({"name": "A", "twitter_username": value})),
            (
                INITIATE,
                json!({"channels": [value], "message": {"body": "x"}}),
            ),
            (
                INITIATE,
                json!({"channels": value, "message": {"body": "x"}}),
            ),
            (
                INITIATE,
                json!({"target_ids": [value], "message": {"body": "x"}}),
            ),
        ];
        for (path, body) in bodies {
            let answer = app.post(path, "alice", &body).await;
            cases += 1;
            assert!(
                answer.status.is_client_error(),
                "{path} {body}: {}",
                answer.text
            );
            assert!(
                !answer.text.contains(&value) && !answer.text.contains("ECHO"),
                "{path} echoed the input: {}",
                answer.text
            );
        }
    }
    eprintln!("figures: {cases} invalid requests, 0 echoed their input");
}

#[tokio::test]
async fn control_characters_and_bidi_overrides_are_refused_in_stored_text() {
    let app = TestApp::spawn().await;
    for name in [
        "Ada\r\nBcc: x@evil.example",
        "Ada\u{0}",
        "Ada\u{202E}cod.exe",
        "\u{1b}[31mAda",
    ] {
        let answer = app
            .post(
                TARGETS,
                "alice",
                &json!({"name": name, "email": unique("ada")}),
            )
            .await;
        answer.assert_error(422, "validation_failed");
        assert_eq!(answer.body["error"]["details"][0]["field"], "name");
    }
    let notes = app
        .post(
            TARGETS,
            "alice",
            &json!({"name": "Ada", "email": unique("ada"), "notes": "met\u{0}"}),
        )
        .await;
    notes.assert_error(422, "validation_failed");
    assert_eq!(notes.body["error"]["details"][0]["field"], "notes");
    // Line breaks and tabs in notes are fine.
    let created = app
        .post(
            TARGETS,
            "alice",
            &json!({"name": "Ada", "email": unique("ada"), "notes": "line 1\nline 2\tend"}),
        )
        .await;
    created.assert_status(201);
    let id = created.body["id"].as_str().unwrap();
    app.patch(
        &format!("{TARGETS}/{id}"),
        "alice",
        &json!({"name": "Ada\u{2066}"}),
    )
    .await
    .assert_error(422, "validation_failed");
    let batch = app
        .post(
            &format!("{TARGETS}/batch"),
            "alice",
            &json!({"targets": [{"name": "Bad\rName", "email": unique("b")}]}),
        )
        .await;
    batch.assert_status(200);
    assert_eq!(
        batch.body["results"][0]["status"], "invalid",
        "{}",
        batch.text
    );
    app.post(
        ACCOUNTS,
        "alice",
        &json!({"account_id": "c", "account_type": "crm", "label": "x\u{202E}"}),
    )
    .await
    .assert_error(422, "validation_failed");
}
