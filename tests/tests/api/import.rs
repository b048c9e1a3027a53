//! CSV import of targets (issue 24, item 7): a spreadsheet's export read row by row (BOM, `;`,
//! quoted fields with line breaks, custom field columns), duplicates in the file and against
//! stored targets reported and never stored twice, written in bulk, refusals of the whole file.

use pipewise_tests::fault_proxy::FaultProxy;
use pipewise_tests::{TestApp, TestResponse};
use reqwest::Method;
use serde_json::{Value, json};

const TARGETS: &str = "/api/user/communication-targets";
const IMPORT: &str = "/api/user/communication-targets/import";

async fn import(app: &TestApp, body: impl Into<reqwest::Body>) -> TestResponse {
    app.send(
        app.request(Method::POST, IMPORT)
            .bearer_auth(app.token("alice"))
            .header("content-type", "text/csv; charset=utf-8")
            .body(body),
    )
    .await
}

fn statuses(answer: &TestResponse) -> Vec<(u64, String)> {
    answer.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| {
            (
                result["row"].as_u64().unwrap(),
                result["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn all_targets(app: &TestApp) -> Vec<Value> {
    let page = app.get(&format!("{TARGETS}?limit=100"), "alice").await;
    page.body["targets"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_spreadsheet_export_is_imported_row_by_row_and_never_twice() {
    let app = TestApp::spawn().await;
    let stored = app
        .post(
            TARGETS,
            "alice",
            &json!({"name": "Stored", "email": "stored@example.com"}),
        )
        .await;
    stored.assert_status(201);
    let stored_id = stored.body["id"].as_str().unwrap().to_owned();

    // What a spreadsheet in a comma-decimal locale exports: a BOM, `;` between fields, a quoted
    // field holding the separator and a line break.
    let csv = "\u{feff}Name;Email;Twitter_Username;Timezone;Notes;Company\r\n\
        \"Lovelace; Ada\";ada@example.com;;Europe/London;\"Met at the\r\nRoyal Society\";Analytical Engines\r\n\
        Grace Hopper;GRACE@example.com;@grace;;;Navy\r\n\
        Grace again;grace@example.com;;;;\r\n\
        Someone;stored@example.com;;;;\r\n\
        Broken;not-an-email;;;;\r\n\
        \r\n\
        No Address;;;;;\r\n\
        Handle Only;;@grace;;;\r\n\
        Zone;zone@example.com;;Mars/Olympus;;\r\n";
    let answer = import(&app, csv).await;
    answer.assert_status(200);
    assert_eq!(
        statuses(&answer),
        [
            (2, "created".into()),
            (4, "created".into()),
            (5, "duplicate".into()),
            (6, "duplicate".into()),
            (7, "invalid".into()),
            (9, "invalid".into()),
            (10, "duplicate".into()),
            (11, "invalid".into()),
        ],
        "{}",
        answer.text
    );
    assert_eq!(
        (
            answer.body["created"].clone(),
            answer.body["duplicates"].clone(),
            answer.body["invalid"].clone()
        ),
        (json!(2), json!(3), json!(3))
    );
    let results = answer.body["results"].as_array().unwrap();
    let grace_id = results[1]["id"].clone();
    assert_eq!(results[2]["id"], grace_id, "the earlier row's target");
    assert_eq!(results[3]["id"], stored_id.as_str(), "the stored target");
    assert_eq!(results[4]["problems"][0]["field"], "email");
    assert!(
        !answer.text.contains("not-an-email"),
        "values are never echoed"
    );
    assert_eq!(results[7]["problems"][0]["field"], "timezone");

    let targets = all_targets(&app).await;
    assert_eq!(targets.len(), 3, "stored, Ada, Grace");
    let ada = targets
        .iter()
        .find(|t| t["email"] == "ada@example.com")
        .unwrap();
    assert_eq!(ada["name"], "Lovelace; Ada");
    assert_eq!(ada["timezone"], "Europe/London");
    assert_eq!(
        ada["notes"], "Met at the\r\nRoyal Society",
        "a quoted line break stays"
    );
    assert_eq!(
        ada["custom_fields"],
        json!({"company": "Analytical Engines"})
    );
    let grace = targets
        .iter()
        .find(|t| t["email"] == "grace@example.com")
        .unwrap();
    assert_eq!(grace["twitter_username"], "grace");
    assert_eq!(grace["custom_fields"], json!({"company": "Navy"}));

    // The same file again: everyone is already there.
    let again = import(&app, csv).await;
    again.assert_status(200);
    assert_eq!(again.body["created"], 0, "{}", again.text);
    assert_eq!(all_targets(&app).await.len(), 3, "nothing stored twice");
}

#[tokio::test]
async fn three_hundred_rows_are_written_in_a_handful_of_transactions() {
    let direct = TestApp::spawn().await;
    let emulator = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let proxy = FaultProxy::start(&emulator).await;
    let app = direct.serve_through(direct.sdk_through(&proxy.url)).await;
    let mut csv = String::from("name,email,company\n");
    for i in 0..300 {
        csv.push_str(&format!("Person {i},p{i}@example.com,Company {i}\n"));
    }
    proxy.take_calls();
    let answer = import(&app, csv).await;
    answer.assert_status(200);
    assert_eq!(answer.body["created"], 300, "{}", answer.text);
    let calls = proxy.take_calls();
    let count = |operation: &str| calls.iter().filter(|call| *call == operation).count();
    // 49 targets with their guards and the counter per transaction: 7 for 300.
    assert_eq!(count("dynamodb:TransactWriteItems"), 7, "{calls:?}");
    assert_eq!(
        count("dynamodb:BatchGetItem"),
        3,
        "stored emails, 100 a call"
    );
    assert_eq!(count("dynamodb:PutItem"), 0);
    let counter = direct
        .dynamodb()
        .get_item()
        .table_name(direct.resource("TargetsTable"))
        .key(
            "user_id",
            aws_sdk_dynamodb::types::AttributeValue::S("alice".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("#count".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        counter.item.unwrap()["active_count"].as_n().unwrap(),
        "300",
        "the counter counts every row"
    );
}

#[tokio::test]
async fn a_file_that_cannot_be_read_is_refused_whole() {
    let app = TestApp::spawn().await;
    let json_body = app
        .send(
            app.request(Method::POST, IMPORT)
                .bearer_auth(app.token("alice"))
                .json(&json!({"name": "Ada"})),
        )
        .await;
    json_body.assert_error(415, "unsupported_media_type");
    import(&app, "email\nada@example.com\n")
        .await
        .assert_error(422, "csv_header_invalid");
    import(&app, "name,CANARY Column\nAda,x\n")
        .await
        .assert_error(422, "csv_header_invalid");
    import(&app, b"name\nJos\xe9\n".to_vec())
        .await
        .assert_error(422, "csv_unreadable");
    let mut rows = String::from("name\n");
    for i in 0..10_001 {
        rows.push_str(&format!("P{i}\n"));
    }
    import(&app, rows)
        .await
        .assert_error(413, "payload_too_large");
    let big = format!("name,notes\n{}", "Ada,x\n".repeat(1_000_000));
    import(&app, big)
        .await
        .assert_error(413, "payload_too_large");
    assert!(all_targets(&app).await.is_empty(), "nothing imported");
}
