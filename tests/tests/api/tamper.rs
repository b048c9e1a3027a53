//! Tampering with stored secret envelopes: every single-bit flip and every truncation of the
//! wrapped key, the nonce and the ciphertext is refused with a clean error (never plaintext, never
//! a panic), an envelope moved onto another item does not open, and a frozen vector in today's
//! stored format keeps opening (`tests/vectors/`).

use std::collections::HashMap;
use std::fmt::Write as _;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt as _;
use pipewise::Error;
use pipewise::accounts::secrets::StoredSecret;
use pipewise::accounts::store::{AccountItem, AccountStore};
use pipewise::accounts::{AccountId, AccountType};
use pipewise::auth::UserId;
use pipewise::envelope::{self, ENVELOPE_VERSION, EncryptionContext, Envelope, EnvelopeCipher};
use pipewise_tests::{TestApp, TestResponse};
use serde_json::{Value, json};

const ACCOUNTS: &str = "/api/user/integrations/accounts";
const SECRET: &str = "sk_live_tamper-target-must-not-leak";
/// Envelopes opened at once: keeps the emulator busy without flooding two cores.
const PARALLEL_OPENS: usize = 8;
/// Tampered envelopes also tried through the API (each a store write plus a request).
const HTTP_SAMPLE: usize = 20;
/// The frozen vector of envelope format v1 (see tests/vectors/README.md).
const FROZEN_VECTOR: &str = include_str!("../../vectors/envelope-v1.json");

fn store(app: &TestApp) -> AccountStore {
    AccountStore::new(app.dynamodb(), app.resource("AccountsTable"))
}

/// An account item, read through the production decoder.
async fn stored(app: &TestApp, user: &str, account_id: &str) -> AccountItem {
    store(app)
        .get(
            &UserId::from_verified_sub(user.to_owned()),
            &AccountId::parse(account_id).unwrap(),
        )
        .await
        .unwrap()
        .expect("the account item")
}

/// Stores `item` with `envelope` as its secrets, as anyone able to write the table could.
async fn store_with_envelope(app: &TestApp, item: &AccountItem, envelope: Envelope) {
    let changed = AccountItem {
        secrets: Some(envelope),
        ..item.clone()
    };
    // Same version as stored, so the item can be changed again from the same `item`.
    store(app)
        .replace(&changed, item.version, None, None)
        .await
        .unwrap();
}

async fn create_account(app: &TestApp, user: &str, account_id: &str, secret: &str) {
    let body = json!({"account_id": account_id, "account_type": "crm",
        "configuration": {"api_key": secret, "region": "eu"}});
    app.post(ACCOUNTS, user, &body).await.assert_status(201);
}

async fn reveal(app: &TestApp, user: &str, account_id: &str) -> TestResponse {
    app.reveal_secrets(user, account_id).await
}

/// A refusal as the API must give it: 500 or 503 in the contract's error shape, not the secret.
#[track_caller]
fn assert_refused(response: &TestResponse, case: &str, secret: &str) {
    let status = response.status.as_u16();
    assert!(
        matches!(status, 500 | 503),
        "{case}: answered {status}: {}",
        response.text
    );
    let code = if status == 500 {
        "internal_error"
    } else {
        "service_unavailable"
    };
    response.assert_error(status, code);
    assert!(
        !response.text.contains(secret),
        "{case}: the secret is in the answer"
    );
}

/// The envelope fields a tamperer can flip or cut.
#[derive(Clone, Copy)]
enum Field {
    WrappedKey,
    Nonce,
    Ciphertext,
}

impl Field {
    const ALL: [Field; 3] = [Field::WrappedKey, Field::Nonce, Field::Ciphertext];

    fn name(self) -> &'static str {
        match self {
            Field::WrappedKey => "wrapped_key",
            Field::Nonce => "nonce",
            Field::Ciphertext => "ciphertext",
        }
    }

    fn bytes(self, envelope: &Envelope) -> &[u8] {
        match self {
            Field::WrappedKey => &envelope.wrapped_key,
            Field::Nonce => &envelope.nonce,
            Field::Ciphertext => &envelope.ciphertext,
        }
    }

    fn bytes_mut(self, envelope: &mut Envelope) -> &mut Vec<u8> {
        match self {
            Field::WrappedKey => &mut envelope.wrapped_key,
            Field::Nonce => &mut envelope.nonce,
            Field::Ciphertext => &mut envelope.ciphertext,
        }
    }
}

/// How an envelope was tampered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    BitFlip,
    Truncation,
    Extension,
    Version,
    OtherKey,
}

/// One tampered envelope.
struct Case {
    kind: Kind,
    label: String,
    envelope: Envelope,
}

fn changed(original: &Envelope, field: Field, change: impl FnOnce(&mut Vec<u8>)) -> Envelope {
    let mut envelope = original.clone();
    change(field.bytes_mut(&mut envelope));
    envelope
}

/// Every single-bit flip of every byte and every truncation of each field, each field with a
/// byte appended, other format versions, and another KMS key named.
fn tampered_envelopes(original: &Envelope, other_key_arn: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for field in Field::ALL {
        let name = field.name();
        let len = field.bytes(original).len();
        for index in 0..len {
            for bit in 0..8u32 {
                cases.push(Case {
                    kind: Kind::BitFlip,
                    label: format!("{name}: bit {bit} of byte {index} flipped"),
                    envelope: changed(original, field, |bytes| bytes[index] ^= 1u8 << bit),
                });
            }
        }
        for kept in 0..len {
            cases.push(Case {
                kind: Kind::Truncation,
                label: format!("{name}: cut to {kept} of {len} bytes"),
                envelope: changed(original, field, |bytes| bytes.truncate(kept)),
            });
        }
        cases.push(Case {
            kind: Kind::Extension,
            label: format!("{name}: a byte appended"),
            envelope: changed(original, field, |bytes| bytes.push(0)),
        });
    }
    for v in [0, ENVELOPE_VERSION + 1, u32::MAX] {
        cases.push(Case {
            kind: Kind::Version,
            label: format!("format version {v}"),
            envelope: Envelope {
                v,
                ..original.clone()
            },
        });
    }
    cases.push(Case {
        kind: Kind::OtherKey,
        label: "another KMS key named".to_owned(),
        envelope: Envelope {
            kms_key_id: other_key_arn.to_owned(),
            ..original.clone()
        },
    });
    cases
}

#[tokio::test]
async fn every_bit_flip_and_truncation_of_a_stored_envelope_is_refused() {
    let app = TestApp::spawn().await;
    create_account(&app, "alice", "stripe", SECRET).await;
    let item = stored(&app, "alice", "stripe").await;
    let original = item.secrets.clone().expect("the account has secrets");
    let table = app.resource("AccountsTable");
    let context = EncryptionContext {
        table,
        user_id: "alice",
        account_id: "stripe",
    };
    let cipher = EnvelopeCipher::new(app.kms(), app.resource("SecretsKey"));
    let opened = cipher.open(context, &original).await.unwrap();
    assert!(
        String::from_utf8_lossy(&opened).contains(SECRET),
        "the untouched envelope opens"
    );
    let other_key = app.kms().create_key().send().await.unwrap();
    let other_key_arn = other_key.key_metadata().unwrap().arn().unwrap().to_owned();

    let cases = tampered_envelopes(&original, &other_key_arn);
    let cipher = &cipher;
    let outcomes: Vec<(&Case, Result<usize, Error>)> = futures::stream::iter(&cases)
        .map(|case| async move {
            // Only the length leaves this closure: a wrong plaintext is never printed.
            let outcome = cipher
                .open(context, &case.envelope)
                .await
                .map(|plaintext| plaintext.len());
            (case, outcome)
        })
        .buffer_unordered(PARALLEL_OPENS)
        .collect()
        .await;
    let (mut internal, mut unavailable) = (0, 0);
    for (case, outcome) in &outcomes {
        match outcome {
            Ok(len) => panic!("{}: a tampered envelope opened ({len} bytes)", case.label),
            Err(Error::Internal(_)) => internal += 1,
            Err(Error::Unavailable(_)) => unavailable += 1,
            Err(other) => panic!("{}: refused with an unexpected error {other:?}", case.label),
        }
    }
    assert_eq!(internal + unavailable, cases.len());

    // A sample through the API: each tampered envelope stored on the item, then `/secrets`.
    let step = cases.len().div_ceil(HTTP_SAMPLE);
    let mut through_api = 0;
    for case in cases.iter().step_by(step).chain(cases.iter().rev().take(4)) {
        store_with_envelope(&app, &item, case.envelope.clone()).await;
        assert_refused(&reveal(&app, "alice", "stripe").await, &case.label, SECRET);
        through_api += 1;
    }
    // The refusals were the tampering's doing: put back, the envelope opens again.
    store_with_envelope(&app, &item, original.clone()).await;
    let revealed = reveal(&app, "alice", "stripe").await;
    revealed.assert_status(200);
    assert_eq!(revealed.body["configuration"]["api_key"], SECRET);

    let count = |kind: Kind| cases.iter().filter(|case| case.kind == kind).count();
    eprintln!(
        "figures: {} tampered envelopes ({} bit flips, {} truncations, {} extensions, {} other \
         versions, {} other key) over wrapped key {} B, nonce {} B, ciphertext {} B: {} refused \
         ({internal} as 500, {unavailable} as 503), 0 got through; {through_api} of them through \
         the API: all 500/503 in the error shape, none with the secret",
        cases.len(),
        count(Kind::BitFlip),
        count(Kind::Truncation),
        count(Kind::Extension),
        count(Kind::Version),
        count(Kind::OtherKey),
        original.wrapped_key.len(),
        original.nonce.len(),
        original.ciphertext.len(),
        internal + unavailable,
    );
}

#[tokio::test]
async fn an_envelope_moved_onto_another_item_does_not_open() {
    const BOB_SECRET: &str = "sk_live_bobs-own-secret";
    const SECOND_SECRET: &str = "sk_live_alices-second-secret";
    let app = TestApp::spawn().await;
    create_account(&app, "alice", "stripe", SECRET).await;
    create_account(&app, "bob", "stripe", BOB_SECRET).await;
    create_account(&app, "alice", "stripe-2", SECOND_SECRET).await;
    let alice_envelope = stored(&app, "alice", "stripe")
        .await
        .secrets
        .expect("alice's secrets");
    let cipher = EnvelopeCipher::new(app.kms(), app.resource("SecretsKey"));
    let table = app.resource("AccountsTable");

    let targets = [("bob", "stripe"), ("alice", "stripe-2")];
    for (user, account_id) in targets {
        let context = EncryptionContext {
            table,
            user_id: user,
            account_id,
        };
        assert!(
            cipher.open(context, &alice_envelope).await.is_err(),
            "alice's envelope opened as {user}/{account_id}"
        );
        let target = stored(&app, user, account_id).await;
        store_with_envelope(&app, &target, alice_envelope.clone()).await;
        assert_refused(
            &reveal(&app, user, account_id).await,
            &format!("alice's envelope on {user}/{account_id}"),
            SECRET,
        );
    }
    // Alice's own item still opens: only the moved copies are refused.
    let revealed = reveal(&app, "alice", "stripe").await;
    revealed.assert_status(200);
    assert_eq!(revealed.body["configuration"]["api_key"], SECRET);
    eprintln!(
        "figures: 1 envelope moved onto {} other items (another user's, another account of the \
         same user): {} refused by the cipher and the API, 0 opened",
        targets.len(),
        targets.len()
    );
}

#[tokio::test]
async fn the_frozen_vector_still_decrypts() {
    let vector: Value = serde_json::from_str(FROZEN_VECTOR).unwrap();
    let data_key = from_hex(vector["data_key_hex"].as_str().unwrap());
    let context_field = |name: &str| vector["context"][name].as_str().unwrap();
    let context = EncryptionContext {
        table: context_field("table"),
        user_id: context_field("user_id"),
        account_id: context_field("account_id"),
    };
    let plaintext = vector["plaintext"].as_str().unwrap().as_bytes();
    let stored_item: HashMap<String, AttributeValue> = vector["stored_item"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| (name.clone(), attribute_from_json(value)))
        .collect();

    // Read as any stored item is read: through `AccountStore`'s decoder.
    let app = TestApp::spawn().await;
    app.dynamodb()
        .put_item()
        .table_name(app.resource("AccountsTable"))
        .set_item(Some(stored_item.clone()))
        .send()
        .await
        .unwrap();
    let item = stored(&app, context.user_id, context.account_id).await;
    let frozen = item.secrets.clone().expect("the vector has secrets");
    assert_eq!(frozen.v, ENVELOPE_VERSION);
    let opened = envelope::open_with_data_key(&data_key, context, &frozen)
        .expect("the frozen vector no longer opens: the stored envelope format changed");
    assert_eq!(opened.as_slice(), plaintext);
    let secrets: Vec<StoredSecret> = serde_json::from_slice(&opened).unwrap();
    assert_eq!(
        secrets,
        vec![StoredSecret {
            path: vec!["api_key".to_owned()],
            value: json!("sk_test_frozen-vector-secret"),
        }]
    );
    // The vector does not open trivially: another context or one flipped bit is refused.
    let elsewhere = EncryptionContext {
        user_id: "someone-else",
        ..context
    };
    assert!(envelope::open_with_data_key(&data_key, elsewhere, &frozen).is_err());
    let mut flipped = frozen.clone();
    flipped.ciphertext[0] ^= 1;
    assert!(envelope::open_with_data_key(&data_key, context, &flipped).is_err());

    // Today's writer stores an envelope exactly as the vector has it.
    let rewritten = AccountItem {
        account_id: pipewise::accounts::AccountId::parse("frozen-rewritten").unwrap(),
        ..item
    };
    store(&app).insert(&rewritten, None).await.unwrap();
    let raw = app
        .dynamodb()
        .get_item()
        .table_name(app.resource("AccountsTable"))
        .key("user_id", AttributeValue::S(rewritten.user_id.to_string()))
        .key(
            "account_id",
            AttributeValue::S(rewritten.account_id.to_string()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    for attribute in ["secrets", "secret_paths"] {
        assert_eq!(
            raw[attribute], stored_item[attribute],
            "today's code stores `{attribute}` in another form than the frozen vector"
        );
    }
}

/// Writes a vector of today's format with today's code (`seal_with_data_key`, `AccountStore`) to
/// `tests/vectors/envelope-v<N>.new.json`. Run on purpose, with the emulator, when the envelope
/// format version changes; review the file and commit it under its version, next to the old ones
/// (never replacing one: old items stay stored in the old format).
#[tokio::test]
#[ignore = "writes a new vector file; run on purpose when the envelope format changes"]
async fn generate_envelope_vector() {
    let data_key: Vec<u8> = (0u8..32).collect();
    let context = EncryptionContext {
        table: "pipewise-prod-AccountsTable",
        user_id: "frozen-vector-user",
        account_id: "frozen-stripe",
    };
    let secrets = vec![StoredSecret {
        path: vec!["api_key".to_owned()],
        value: json!("sk_test_frozen-vector-secret"),
    }];
    let plaintext = serde_json::to_vec(&secrets).unwrap();
    let sealed = envelope::seal_with_data_key(
        &data_key,
        "arn:aws:kms:us-east-1:123456789012:key/0f0f0f0f-1111-4222-8333-444444444444".to_owned(),
        b"frozen vector: stands in for the KMS-wrapped data key".to_vec(),
        context,
        &plaintext,
    )
    .unwrap();
    let timestamp = "2025-11-26T00:00:00Z".to_owned();
    let item = AccountItem {
        user_id: UserId::from_verified_sub(context.user_id.to_owned()),
        account_id: pipewise::accounts::AccountId::parse(context.account_id).unwrap(),
        account_type: AccountType::Crm,
        provider: Some("stripe".to_owned()),
        label: None,
        configuration: r#"{"api_key":"********","region":"eu"}"#.to_owned(),
        secret_paths: vec![vec!["api_key".to_owned()]],
        secrets: Some(sealed),
        connected: true,
        status_reason: None,
        created_at: timestamp.clone(),
        updated_at: timestamp,
        expires_at: None,
        sender_address: None,
        refresh_lease_until: None,
        refresh_lease_id: None,
        last_checked_at: None,
        version: 1,
    };
    let app = TestApp::spawn().await;
    store(&app).insert(&item, None).await.unwrap();
    let raw = app
        .dynamodb()
        .get_item()
        .table_name(app.resource("AccountsTable"))
        .key("user_id", AttributeValue::S(item.user_id.to_string()))
        .key("account_id", AttributeValue::S(item.account_id.to_string()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    // Built before `json!`, which would split a `Map<_, _>` turbofish at its comma.
    let stored_item: serde_json::Map<String, Value> = raw
        .iter()
        .map(|(name, value)| (name.clone(), attribute_to_json(value)))
        .collect();
    let vector = json!({
        "about": format!("Envelope format v{ENVELOPE_VERSION}, frozen: an account item as stored \
            today, sealed under the fixed test data key below (not a secret). The test \
            `the_frozen_vector_still_decrypts` must keep opening it; see README.md."),
        "data_key_hex": to_hex(&data_key),
        "context": {"table": context.table, "user_id": context.user_id,
            "account_id": context.account_id},
        "plaintext": String::from_utf8(plaintext).unwrap(),
        "stored_item": stored_item,
    });
    let path = format!(
        "{}/vectors/envelope-v{ENVELOPE_VERSION}.new.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::write(&path, serde_json::to_string_pretty(&vector).unwrap() + "\n").unwrap();
    eprintln!("wrote {path}: review it, then commit it as envelope-v{ENVELOPE_VERSION}.json");
}

fn from_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        write!(text, "{byte:02x}").unwrap();
    }
    text
}

/// An attribute from DynamoDB JSON (`{"S": ...}`, `{"B": base64}`, ...), as the AWS CLI shows it.
fn attribute_from_json(value: &Value) -> AttributeValue {
    let (kind, inner) = value
        .as_object()
        .and_then(|typed| typed.iter().next())
        .expect("a typed DynamoDB JSON value");
    match kind.as_str() {
        "S" => AttributeValue::S(inner.as_str().unwrap().to_owned()),
        "N" => AttributeValue::N(inner.as_str().unwrap().to_owned()),
        "B" => AttributeValue::B(Blob::new(BASE64.decode(inner.as_str().unwrap()).unwrap())),
        "BOOL" => AttributeValue::Bool(inner.as_bool().unwrap()),
        "NULL" => AttributeValue::Null(true),
        "L" => AttributeValue::L(
            inner
                .as_array()
                .unwrap()
                .iter()
                .map(attribute_from_json)
                .collect(),
        ),
        "M" => AttributeValue::M(
            inner
                .as_object()
                .unwrap()
                .iter()
                .map(|(name, value)| (name.clone(), attribute_from_json(value)))
                .collect(),
        ),
        other => panic!("no DynamoDB JSON type {other} in the vectors"),
    }
}

/// The inverse of [`attribute_from_json`].
fn attribute_to_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(text) => json!({"S": text}),
        AttributeValue::N(number) => json!({"N": number}),
        AttributeValue::B(blob) => json!({"B": BASE64.encode(blob.as_ref())}),
        AttributeValue::Bool(flag) => json!({"BOOL": flag}),
        AttributeValue::Null(_) => json!({"NULL": true}),
        AttributeValue::L(items) => {
            let items: Vec<Value> = items.iter().map(attribute_to_json).collect();
            json!({ "L": items })
        }
        AttributeValue::M(map) => {
            let fields: serde_json::Map<String, Value> = map
                .iter()
                .map(|(name, value)| (name.clone(), attribute_to_json(value)))
                .collect();
            json!({ "M": fields })
        }
        other => panic!("no DynamoDB JSON for {other:?} in the vectors"),
    }
}
