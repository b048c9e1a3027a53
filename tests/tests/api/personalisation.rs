//! Personalisation (issue 24, items 5 and 6): targets carry a time zone and custom fields;
//! templates fill them in with fallbacks, and a placeholder that would print empty is refused
//! before anything is stored; a preview renders what a run would send and stores nothing.

use pipewise_tests::{TestApp, unique_domain};
use serde_json::{Value, json};

const TARGETS: &str = "/api/user/communication-targets";
const INITIATE: &str = "/api/user/orchestrator/initiate-communications";
const PREVIEW: &str = "/api/user/orchestrator/preview";

async fn add(app: &TestApp, body: Value) -> String {
    let created = app.post(TARGETS, "alice", &body).await;
    created.assert_status(201);
    created.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn time_zones_and_custom_fields_are_validated_stored_and_cleared() {
    let app = TestApp::spawn().await;
    let created = app
        .post(
            TARGETS,
            "alice",
            &json!({"name": "Ada", "email": "ada@example.com", "timezone": "Europe/Paris",
                "custom_fields": {"company": "Analytical Engines", "role": "Countess"}}),
        )
        .await;
    created.assert_status(201);
    assert_eq!(created.body["timezone"], "Europe/Paris");
    assert_eq!(
        created.body["custom_fields"]["company"],
        "Analytical Engines"
    );
    let id = created.body["id"].as_str().unwrap();

    let refused = app
        .post(
            TARGETS,
            "alice",
            &json!({"name": "Grace", "email": "grace@example.com", "timezone": "Mars/CANARY_TZ",
                "custom_fields": {"CANARY_FIELD": "x", "bio": "line\nbreak"}}),
        )
        .await;
    refused.assert_error(422, "validation_failed");
    let fields: Vec<&str> = refused.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|detail| detail["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["timezone", "custom_fields", "custom_fields.bio"]);
    assert!(
        !refused.text.contains("CANARY"),
        "never echoed: {}",
        refused.text
    );
    let many: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("f{i}"), json!("v"))).collect();
    app.post(
        TARGETS,
        "alice",
        &json!({"name": "Many", "email": "many@example.com", "custom_fields": many}),
    )
    .await
    .assert_error(422, "validation_failed");

    // PATCH replaces the custom fields whole; null clears either.
    let patched = app
        .patch(
            &format!("{TARGETS}/{id}"),
            "alice",
            &json!({"custom_fields": {"company": "Babbage & Co"}}),
        )
        .await;
    patched.assert_status(200);
    assert_eq!(
        patched.body["custom_fields"],
        json!({"company": "Babbage & Co"})
    );
    assert_eq!(patched.body["timezone"], "Europe/Paris", "untouched");
    let cleared = app
        .patch(
            &format!("{TARGETS}/{id}"),
            "alice",
            &json!({"custom_fields": null, "timezone": null}),
        )
        .await;
    cleared.assert_status(200);
    assert!(
        cleared.body.get("custom_fields").is_none(),
        "{}",
        cleared.text
    );
    assert!(cleared.body.get("timezone").is_none(), "{}", cleared.text);
}

#[tokio::test]
async fn templates_fill_custom_fields_and_fallbacks_and_refuse_a_hole() {
    let app = TestApp::spawn().await;
    let domain = unique_domain();
    let sender = app
        .verified_email_account("alice", "mail", &domain, None)
        .await;
    add(
        &app,
        json!({"name": "Ada Lovelace", "email": format!("ada@{domain}"),
            "custom_fields": {"company": "Analytical Engines"}}),
    )
    .await;
    let grace = add(
        &app,
        json!({"name": "Grace Hopper", "email": format!("grace@{domain}")}),
    )
    .await;

    let holed = app
        .post(
            INITIATE,
            "alice",
            &json!({"message": {"subject": "For {{company}}", "body": "Hi {{first_name}}"}}),
        )
        .await;
    holed.assert_error(422, "template_value_missing");
    assert_eq!(
        holed.body["error"]["details"],
        json!([{"field": grace, "problem": "has no value for a placeholder without a fallback"}])
    );
    let runs = app.get("/api/user/orchestrator/runs", "alice").await;
    assert_eq!(runs.body["runs"], json!([]), "nothing stored");

    let started = app
        .post(
            INITIATE,
            "alice",
            &json!({"message": {"subject": "For {{ company | default: \"your team\" }}",
                "body": "Hi {{first_name}}, how is {{company|default:\"work\"}}?"}}),
        )
        .await;
    started.assert_status(202);
    app.drain_queue().await;
    let mut emails = app.sent_emails(&sender).await;
    emails.sort();
    assert_eq!(emails.len(), 2);
    assert_eq!(emails[0].0, format!("ada@{domain}"));
    assert_eq!(emails[0].1, "For Analytical Engines");
    assert!(
        emails[0]
            .2
            .starts_with("Hi Ada, how is Analytical Engines?"),
        "{}",
        emails[0].2
    );
    assert_eq!(emails[1].1, "For your team");
    assert!(
        emails[1].2.starts_with("Hi Grace, how is work?"),
        "{}",
        emails[1].2
    );

    let malformed = app
        .post(
            INITIATE,
            "alice",
            &json!({"message": {"body": "Hi {{name | upcase}}"}}),
        )
        .await;
    malformed.assert_error(422, "validation_failed");
    assert_eq!(
        malformed.body["error"]["details"][0]["field"],
        "message.body"
    );
}

#[tokio::test]
async fn a_preview_renders_what_a_run_would_send_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let domain = unique_domain();
    app.verified_email_account("alice", "mail", &domain, None)
        .await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(
            add(
                &app,
                json!({"name": format!("Person{i} Surname"), "email": format!("p{i}@{domain}"),
                    "custom_fields": {"company": format!("Company {i}")}}),
            )
            .await,
        );
    }
    let preview = app
        .post(
            PREVIEW,
            "alice",
            &json!({"message": {"subject": "Hi {{first_name}}", "body": "About {{company}}"}}),
        )
        .await;
    preview.assert_status(200);
    let messages = preview.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 20, "the first 20 targets");
    assert_eq!(preview.body["targets_total"], 25);
    assert_eq!(preview.body["communications_total"], 25);
    let first = &messages[0];
    let i = ids
        .iter()
        .position(|id| first["target_id"] == id.as_str())
        .unwrap();
    assert_eq!(first["subject"], format!("Hi Person{i}"));
    assert_eq!(first["body"], format!("About Company {i}"));
    assert_eq!(first["channel"], "email");
    assert_eq!(first["step"], 1);
    assert_eq!(first["to"], format!("p{i}@{domain}"));
    assert!(first["send_at"].is_string());

    let runs = app.get("/api/user/orchestrator/runs", "alice").await;
    assert_eq!(runs.body["runs"], json!([]), "nothing stored");
    assert_eq!(app.drain_queue().await, 0, "nothing queued");

    let holed = app
        .post(
            PREVIEW,
            "alice",
            &json!({"message": {"body": "Hi {{role}}"}}),
        )
        .await;
    holed.assert_error(422, "template_value_missing");
    assert_eq!(holed.body["error"]["details"].as_array().unwrap().len(), 25);
}
