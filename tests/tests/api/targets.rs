use std::collections::HashSet;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pipewise_tests::TestApp;
use serde_json::{Value, json};

const TARGETS: &str = "/api/user/communication-targets";

fn seed() -> Value {
    json!({"name": "Ada Lovelace", "email": "Ada@Example.com", "twitter_username": "@ada", "notes": "met at PyCon"})
}

async fn raw_items(
    app: &TestApp,
    user: &str,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    app.dynamodb()
        .query()
        .table_name(app.resource("TargetsTable"))
        .key_condition_expression("user_id = :u")
        .expression_attribute_values(":u", AttributeValue::S(user.into()))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
}

fn sk_of(item: &std::collections::HashMap<String, AttributeValue>) -> String {
    item["sk"].as_s().unwrap().clone()
}

async fn active_count(app: &TestApp, user: &str) -> i64 {
    raw_items(app, user)
        .await
        .iter()
        .find(|item| sk_of(item) == "#count")
        .map(|item| item["active_count"].as_n().unwrap().parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_seed_body_creates_a_normalised_target() {
    let app = TestApp::spawn().await;
    let created = app.post(TARGETS, "alice", &seed()).await;
    created.assert_status(201);
    let target = &created.body;
    assert_eq!(target["name"], "Ada Lovelace");
    assert_eq!(target["email"], "ada@example.com");
    assert_eq!(target["twitter_username"], "ada");
    assert_eq!(target["instagram_username"], Value::Null);
    assert_eq!(target["active"], true);
    let id = target["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);

    let listed = app.get(TARGETS, "alice").await;
    listed.assert_status(200);
    assert_eq!(listed.body["targets"][0]["id"], id);
    assert_eq!(listed.body["next_cursor"], Value::Null);
    assert_eq!(app.get(TARGETS, "bob").await.body["targets"], json!([]));
}

#[tokio::test]
async fn an_active_email_is_unique_per_user_in_any_case() {
    let app = TestApp::spawn().await;
    let first = app.post(TARGETS, "alice", &seed()).await;
    first.assert_status(201);
    let again = app
        .post(
            TARGETS,
            "alice",
            &json!({"name": "Ada L.", "email": "ADA@example.COM"}),
        )
        .await;
    again.assert_error(409, "duplicate_email");
    assert_eq!(again.body["error"]["existing_id"], first.body["id"]);
    // Another user may use the same email.
    app.post(TARGETS, "bob", &seed()).await.assert_status(201);
    // Targets without an email never collide.
    app.post(
        TARGETS,
        "alice",
        &json!({"name": "A", "twitter_username": "a1"}),
    )
    .await
    .assert_status(201);
    app.post(
        TARGETS,
        "alice",
        &json!({"name": "B", "twitter_username": "a1"}),
    )
    .await
    .assert_status(201);
}

#[tokio::test]
async fn twenty_concurrent_creates_of_one_email_make_exactly_one_target() {
    let app = TestApp::spawn().await;
    let requests = (0..20).map(|i| {
        let app = &app;
        async move {
            app.post(
                TARGETS,
                "alice",
                &json!({"name": format!("Ada {i}"), "email": "ada@example.com"}),
            )
            .await
        }
    });
    let responses = futures::future::join_all(requests).await;
    let created: Vec<_> = responses.iter().filter(|r| r.status == 201).collect();
    let conflicts: Vec<_> = responses.iter().filter(|r| r.status == 409).collect();
    assert_eq!(
        created.len(),
        1,
        "{:?}",
        responses.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    assert_eq!(conflicts.len(), 19);
    for conflict in conflicts {
        assert_eq!(conflict.body["error"]["existing_id"], created[0].body["id"]);
    }
    assert_eq!(active_count(&app, "alice").await, 1);
}

#[tokio::test]
async fn every_validation_rule_names_its_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"name": "", "email": "a@example.com"}), "name"),
        (
            json!({"name": "x".repeat(201), "email": "a@example.com"}),
            "name",
        ),
        (json!({"name": "A", "email": "not-an-email"}), "email"),
        (
            json!({"name": "A", "twitter_username": "has space"}),
            "twitter_username",
        ),
        (
            json!({"name": "A", "twitter_username": "@sixteen_chars_xx"}),
            "twitter_username",
        ),
        (
            json!({"name": "A", "instagram_username": "no-dashes"}),
            "instagram_username",
        ),
        (
            json!({"name": "A", "instagram_username": "x".repeat(31)}),
            "instagram_username",
        ),
        (
            json!({"name": "A", "email": "a@example.com", "notes": "x".repeat(2001)}),
            "notes",
        ),
        (json!({"name": "A"}), "email"),
        (
            json!({"name": "A", "email": "a@example.com", "active": false}),
            "active",
        ),
        (json!({"email": "a@example.com"}), "name"),
    ];
    for (body, field) in cases {
        let response = app.post(TARGETS, "alice", &body).await;
        response.assert_error(422, "validation_failed");
        let fields: Vec<&str> = response.body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{body}: {fields:?}");
    }
    assert_eq!(active_count(&app, "alice").await, 0);
}

#[tokio::test]
async fn paging_returns_every_target_once_newest_first() {
    let app = TestApp::spawn().await;
    let items: Vec<Value> = (0..125)
        .map(|i| json!({"name": format!("T{i}"), "email": format!("t{i}@example.com")}))
        .collect();
    for chunk in items.chunks(100) {
        let response = app
            .post(
                &format!("{TARGETS}/batch"),
                "alice",
                &json!({"targets": chunk}),
            )
            .await;
        response.assert_status(200);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("{TARGETS}?limit=50&cursor={c}"),
            None => format!("{TARGETS}?limit=50"),
        };
        let page = app.get(&path, "alice").await;
        page.assert_status(200);
        pages += 1;
        for target in page.body["targets"].as_array().unwrap() {
            seen.push(target["name"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..125).rev().map(|i| format!("T{i}")).collect();
    assert_eq!(seen, expected, "each exactly once, newest first");
    assert_eq!(
        app.get(&format!("{TARGETS}?limit=0"), "alice").await.status,
        422
    );
    assert_eq!(
        app.get(&format!("{TARGETS}?limit=101"), "alice")
            .await
            .status,
        422
    );
    assert_eq!(
        app.get(&format!("{TARGETS}?limit=ten"), "alice")
            .await
            .status,
        422
    );
    app.get(&format!("{TARGETS}?cursor=garbage"), "alice")
        .await
        .assert_error(422, "validation_failed");
}

#[tokio::test]
async fn a_cursor_from_another_users_page_reads_nothing_of_theirs() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        app.post(
            TARGETS,
            "bob",
            &json!({"name": format!("Bob's {i}"), "email": format!("b{i}@example.com")}),
        )
        .await
        .assert_status(201);
    }
    app.post(
        TARGETS,
        "alice",
        &json!({"name": "Alice's", "email": "a@example.com"}),
    )
    .await
    .assert_status(201);
    let bobs = app.get(&format!("{TARGETS}?limit=1"), "bob").await;
    let cursor = bobs.body["next_cursor"].as_str().unwrap().to_owned();
    // Alice replays Bob's cursor, and a forged one naming Bob's newest target.
    let forged = URL_SAFE_NO_PAD.encode(format!(
        "v1:{}",
        bobs.body["targets"][0]["id"].as_str().unwrap()
    ));
    for cursor in [cursor, forged] {
        let page = app
            .get(&format!("{TARGETS}?cursor={cursor}"), "alice")
            .await;
        if page.status == 200 {
            assert!(!page.text.contains("Bob's"), "{}", page.text);
        } else {
            page.assert_error(422, "validation_failed");
        }
    }
}

#[tokio::test]
async fn soft_delete_hides_the_target_frees_the_email_and_is_404_twice() {
    let app = TestApp::spawn().await;
    let created = app.post(TARGETS, "alice", &seed()).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    app.delete(&format!("{TARGETS}/{id}"), "bob")
        .await
        .assert_error(404, "not_found");
    app.delete(&format!("{TARGETS}/{id}"), "alice")
        .await
        .assert_status(204);
    assert_eq!(app.get(TARGETS, "alice").await.body["targets"], json!([]));
    app.delete(&format!("{TARGETS}/{id}"), "alice")
        .await
        .assert_error(404, "not_found");
    app.patch(&format!("{TARGETS}/{id}"), "alice", &json!({"name": "x"}))
        .await
        .assert_error(404, "not_found");
    app.delete(&format!("{TARGETS}/not-a-uuid"), "alice")
        .await
        .assert_error(404, "not_found");
    // The email is free again, and the deleted target is kept as inactive.
    let again = app.post(TARGETS, "alice", &seed()).await;
    again.assert_status(201);
    assert_ne!(again.body["id"], id);
    let items = raw_items(&app, "alice").await;
    let deleted = items
        .iter()
        .find(|item| sk_of(item) == format!("D#{id}"))
        .expect("kept as deleted");
    assert_eq!(deleted["active"], AttributeValue::Bool(false));
    assert_eq!(active_count(&app, "alice").await, 1);
}

#[tokio::test]
async fn patch_changes_fields_and_keeps_email_uniqueness() {
    let app = TestApp::spawn().await;
    let ada = app.post(TARGETS, "alice", &seed()).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = app
        .post(
            TARGETS,
            "alice",
            &json!({"name": "Bob", "email": "bob@example.com"}),
        )
        .await;
    let bob_id = bob.body["id"].as_str().unwrap().to_owned();

    let taken = app
        .patch(
            &format!("{TARGETS}/{bob_id}"),
            "alice",
            &json!({"email": "ADA@example.com"}),
        )
        .await;
    taken.assert_error(409, "duplicate_email");
    assert_eq!(taken.body["error"]["existing_id"], ada);

    let changed = app
        .patch(
            &format!("{TARGETS}/{bob_id}"),
            "alice",
            &json!({"email": "robert@example.com", "notes": null, "instagram_username": "bob.r"}),
        )
        .await;
    changed.assert_status(200);
    assert_eq!(changed.body["email"], "robert@example.com");
    assert_eq!(changed.body["name"], "Bob");
    assert_eq!(changed.body["instagram_username"], "bob.r");
    assert_eq!(changed.body["created_at"], bob.body["created_at"]);
    // The old email is free, the new one taken.
    app.post(
        TARGETS,
        "alice",
        &json!({"name": "Other Bob", "email": "bob@example.com"}),
    )
    .await
    .assert_status(201);
    app.post(
        TARGETS,
        "alice",
        &json!({"name": "Rob", "email": "robert@example.com"}),
    )
    .await
    .assert_error(409, "duplicate_email");

    let emptied = app
        .patch(
            &format!("{TARGETS}/{ada}"),
            "alice",
            &json!({"email": null, "twitter_username": null}),
        )
        .await;
    emptied.assert_error(422, "validation_failed");
    app.patch(&format!("{TARGETS}/{ada}"), "alice", &json!({"name": null}))
        .await
        .assert_error(422, "validation_failed");
    app.patch(&format!("{TARGETS}/{ada}"), "bob", &json!({"name": "x"}))
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn a_batch_over_100_items_is_413_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let items: Vec<Value> = (0..101)
        .map(|i| json!({"name": format!("T{i}"), "email": format!("t{i}@example.com")}))
        .collect();
    app.post(
        &format!("{TARGETS}/batch"),
        "alice",
        &json!({"targets": items}),
    )
    .await
    .assert_error(413, "payload_too_large");
    assert_eq!(app.get(TARGETS, "alice").await.body["targets"], json!([]));
}

#[tokio::test]
async fn a_batch_reports_created_duplicate_and_invalid_items() {
    let app = TestApp::spawn().await;
    let existing = app.post(TARGETS, "alice", &seed()).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"targets": [
        {"name": "Grace", "email": "grace@example.com"},
        {"name": "Ada again", "email": "ada@EXAMPLE.com"},
        {"name": "", "email": "nope"},
        {"name": "Grace twin", "email": "Grace@example.com"},
        "not an object",
    ]});
    let response = app.post(&format!("{TARGETS}/batch"), "alice", &body).await;
    response.assert_status(200);
    let results = response.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["status"], "created");
    assert_eq!(results[1]["status"], "duplicate");
    assert_eq!(results[1]["existing_id"], existing);
    assert_eq!(results[2]["status"], "invalid");
    let fields: HashSet<&str> = results[2]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        HashSet::from(["targets[2].name", "targets[2].email"])
    );
    assert_eq!(results[3]["status"], "duplicate");
    assert_eq!(results[3]["existing_id"], results[0]["id"]);
    assert_eq!(results[4]["status"], "invalid");
    assert_eq!(
        response.body["counts"],
        json!({"created": 1, "duplicate": 2, "invalid": 2, "unavailable": 0})
    );
    assert_eq!(active_count(&app, "alice").await, 2);
}

#[tokio::test]
async fn a_failed_transaction_leaves_no_guard_or_counter_behind() {
    let app = TestApp::spawn().await;
    // At the limit: the create must fail whole, leaving neither its guard nor a counter change.
    app.dynamodb()
        .put_item()
        .table_name(app.resource("TargetsTable"))
        .item("user_id", AttributeValue::S("alice".into()))
        .item("sk", AttributeValue::S("#count".into()))
        .item("active_count", AttributeValue::N("10000".into()))
        .send()
        .await
        .unwrap();
    app.post(TARGETS, "alice", &seed())
        .await
        .assert_error(422, "target_limit_reached");
    let items = raw_items(&app, "alice").await;
    assert_eq!(items.len(), 1, "only the counter: {items:?}");
    assert_eq!(active_count(&app, "alice").await, 10_000);

    // A duplicate leaves the counter where it was.
    app.post(TARGETS, "bob", &seed()).await.assert_status(201);
    app.post(TARGETS, "bob", &seed())
        .await
        .assert_error(409, "duplicate_email");
    assert_eq!(active_count(&app, "bob").await, 1);
    assert_eq!(
        raw_items(&app, "bob").await.len(),
        3,
        "target, guard, counter"
    );
}

/// DynamoDB fails from the batch's second write on: the first item is stored, the rest are
/// `unavailable` with `Retry-After`; resending exactly those stores each once (also the one
/// without an email, which no uniqueness check would catch).
#[tokio::test]
async fn a_batch_cut_by_an_outage_says_what_to_resend_and_stores_nothing_twice() {
    use pipewise_tests::fault_proxy::{Fault, FaultProxy, Persistence};
    let app = TestApp::spawn().await;
    let proxy = FaultProxy::start(&std::env::var("AWS_ENDPOINT_URL").unwrap()).await;
    let proxied = app.serve_through(app.sdk_through(&proxy.url)).await;
    let items = json!([
        {"name": "Ada", "email": "ada@example.com"},
        {"name": "Grace", "email": "grace@example.com"},
        {"name": "Social only", "twitter_username": "social_only"},
    ]);
    proxy.inject(
        "dynamodb:TransactWriteItems",
        2,
        Fault::ServerError,
        Persistence::Always,
    );
    let cut = proxied
        .post(
            &format!("{TARGETS}/batch"),
            "alice",
            &json!({"targets": items}),
        )
        .await;
    proxy.heal();
    cut.assert_status(200);
    assert!(cut.headers.contains_key("retry-after"));
    let statuses: Vec<&str> = cut.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["created", "unavailable", "unavailable"]);
    assert_eq!(active_count(&app, "alice").await, 1);
    let resend: Vec<serde_json::Value> = cut.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|result| result["status"] == "unavailable")
        .map(|result| items[result["index"].as_u64().unwrap() as usize].clone())
        .collect();
    let resent = proxied
        .post(
            &format!("{TARGETS}/batch"),
            "alice",
            &json!({"targets": resend}),
        )
        .await;
    resent.assert_status(200);
    assert!(!resent.headers.contains_key("retry-after"));
    assert_eq!(resent.body["counts"]["created"], 2);
    assert_eq!(active_count(&app, "alice").await, 3);
}
