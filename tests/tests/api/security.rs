use aws_sdk_dynamodb::types::AttributeValue;
use pipewise::envelope::{EncryptionContext, Envelope, EnvelopeCipher};
use pipewise_tests::TestApp;
use serde_json::json;

const ACCOUNTS: &str = "/api/user/integrations/accounts";
const SECRET: &str = "sk_live_51Hplaintext-must-not-be-stored";

fn contains_text(value: &AttributeValue, needle: &[u8]) -> bool {
    let found = |bytes: &[u8]| bytes.windows(needle.len()).any(|window| window == needle);
    match value {
        AttributeValue::S(text) => found(text.as_bytes()),
        AttributeValue::B(blob) => found(blob.as_ref()),
        AttributeValue::M(map) => map.values().any(|v| contains_text(v, needle)),
        AttributeValue::L(list) => list.iter().any(|v| contains_text(v, needle)),
        AttributeValue::Ss(set) => set.iter().any(|s| found(s.as_bytes())),
        _ => false,
    }
}

#[tokio::test]
async fn no_secret_is_stored_in_plaintext_anywhere_in_the_item() {
    let app = TestApp::spawn().await;
    let body = json!({"account_id": "stripe", "account_type": "crm",
        "configuration": {"api_key": SECRET, "nested": {"deep": {"password": SECRET}}, "region": "eu"}});
    app.post(ACCOUNTS, "alice", &body).await.assert_status(201);
    let scan = app
        .dynamodb()
        .scan()
        .table_name(app.resource("AccountsTable"))
        .send()
        .await
        .unwrap();
    let item = scan
        .items()
        .iter()
        .find(|item| item.get("account_id") == Some(&AttributeValue::S("stripe".into())))
        .expect("the account item");
    for (name, value) in item {
        assert!(
            !contains_text(value, SECRET.as_bytes()),
            "plaintext secret in attribute {name}"
        );
        assert!(
            !contains_text(value, b"sk_live"),
            "part of the secret in attribute {name}"
        );
    }
    // The envelope records the key that wrapped its data key.
    let AttributeValue::M(envelope) = &item["secrets"] else {
        panic!("no envelope")
    };
    assert_eq!(
        envelope["kms_key_id"],
        AttributeValue::S(app.resource("SecretsKey").to_owned())
    );
    // Public fields stay readable.
    assert!(contains_text(&item["configuration"], b"\"region\":\"eu\""));
}

#[tokio::test]
async fn an_envelope_opens_only_under_its_own_context() {
    let app = TestApp::spawn().await;
    let cipher = EnvelopeCipher::new(app.kms(), app.resource("SecretsKey"));
    let table = app.resource("AccountsTable");
    let alice = EncryptionContext {
        table,
        user_id: "alice",
        account_id: "gmail",
    };
    let envelope = cipher.seal(alice, b"top secret").await.unwrap();
    assert!(!envelope.ciphertext.windows(10).any(|w| w == b"top secret"));
    assert_eq!(
        &*cipher.open(alice, &envelope).await.unwrap(),
        b"top secret"
    );

    for other in [
        EncryptionContext {
            user_id: "bob",
            ..alice
        },
        EncryptionContext {
            account_id: "gmail-2",
            ..alice
        },
        EncryptionContext {
            table: "another-table",
            ..alice
        },
    ] {
        assert!(
            cipher.open(other, &envelope).await.is_err(),
            "opened under {other:?}"
        );
    }
    let tampered = Envelope {
        ciphertext: {
            let mut c = envelope.ciphertext.clone();
            c[0] ^= 1;
            c
        },
        ..envelope.clone()
    };
    assert!(cipher.open(alice, &tampered).await.is_err());
    // Two seals of the same secret never share a nonce or a data key.
    let again = cipher.seal(alice, b"top secret").await.unwrap();
    assert_ne!(again.nonce, envelope.nonce);
    assert_ne!(again.wrapped_key, envelope.wrapped_key);
}

#[tokio::test]
async fn keeping_every_secret_reuses_the_stored_envelope() {
    let app = TestApp::spawn().await;
    let body = json!({"account_id": "crm", "account_type": "crm", "configuration": {"api_key": "k-1", "region": "eu"}});
    app.post(ACCOUNTS, "alice", &body).await.assert_status(201);
    let read = |app: &TestApp| {
        let client = app.dynamodb();
        let table = app.resource("AccountsTable").to_owned();
        async move {
            client
                .get_item()
                .table_name(table)
                .key("user_id", AttributeValue::S("alice".into()))
                .key("account_id", AttributeValue::S("crm".into()))
                .send()
                .await
                .unwrap()
                .item
                .unwrap()
        }
    };
    let before = read(&app).await;
    // A re-seal would show as a new data key and nonce; the stored envelope must be untouched.
    let edit = json!({"account_id": "crm", "account_type": "crm", "configuration": {"api_key": "********", "region": "us"}});
    app.post(ACCOUNTS, "alice", &edit).await.assert_status(200);
    let after = read(&app).await;
    assert_eq!(before["secrets"], after["secrets"]);
    assert!(contains_text(&after["configuration"], b"\"region\":\"us\""));
}

#[tokio::test]
async fn secrets_never_reach_a_log_line_and_reading_them_is_audited() {
    let logs = pipewise_tests::log_capture::LogCapture::install();
    let app = TestApp::spawn().await;
    let body = json!({"account_id": "stripe", "account_type": "crm", "configuration": {"api_key": SECRET}});
    app.post(ACCOUNTS, "alice", &body).await.assert_status(201);
    app.get(ACCOUNTS, "alice").await.assert_status(200);
    let revealed = app
        .send(
            app.request(reqwest::Method::GET, &format!("{ACCOUNTS}/stripe/secrets"))
                .bearer_auth(app.token_with_scope("alice", "integrations:secrets:read")),
        )
        .await;
    revealed.assert_status(200);
    assert_eq!(revealed.body["configuration"]["api_key"], SECRET);
    // A refused request with a secret in its body is not logged with it either.
    let bad = json!({"account_id": "bad id", "account_type": "crm", "configuration": {"api_key": SECRET}});
    app.post(ACCOUNTS, "alice", &bad).await.assert_status(422);

    let text = logs.text();
    assert!(
        !text.contains(SECRET) && !text.contains("sk_live"),
        "a secret reached the log"
    );
    let audit: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("account_secrets_read"))
        .collect();
    assert_eq!(audit.len(), 1, "one audit line per read:\n{text}");
    assert!(
        audit[0].contains("\"user_id\":\"alice\"") && audit[0].contains("api_key"),
        "{}",
        audit[0]
    );
    assert!(
        !text.contains(&app.token("alice")[..40]),
        "tokens are not logged"
    );
}
