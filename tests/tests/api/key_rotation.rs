//! KMS key rotation (`pipewise-rotate-keys`): every data key re-wrapped under the new key with
//! `ReEncrypt` and nothing else changed, the old key no longer needed, a stopped run finished by
//! running again, and user updates made during a rotation kept.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use pipewise::config::vars;
use pipewise_ops::key_rotation::{KeyRotation, RotationError};
use pipewise_tests::{TestApp, TestResponse};
use serde_json::json;

const ACCOUNTS: &str = "/api/user/integrations/accounts";
const USERS: [&str; 3] = ["alice", "bob", "carol"];
const ACCOUNT_COUNT: usize = 30;

type Item = HashMap<String, AttributeValue>;

/// An account created by a test, with the secret `/secrets` must answer.
struct Account {
    user: &'static str,
    id: String,
    secret: String,
}

fn original_secret(n: usize) -> String {
    format!("sk_live_rotation-{n}-original")
}

fn updated_secret(n: usize, round: usize) -> String {
    format!("sk_live_rotation-{n}-update-{round}")
}

fn account_body(account_id: &str, secret: &str) -> serde_json::Value {
    json!({"account_id": account_id, "account_type": "crm",
        "configuration": {"api_key": secret, "region": "eu"}})
}

/// `count` accounts with a secret each, spread over [`USERS`], sealed under the stack's key.
async fn create_accounts(app: &TestApp, count: usize) -> Vec<Account> {
    let mut accounts = Vec::with_capacity(count);
    for n in 0..count {
        let account = Account {
            user: USERS[n % USERS.len()],
            id: format!("crm-{n}"),
            secret: original_secret(n),
        };
        app.post(
            ACCOUNTS,
            account.user,
            &account_body(&account.id, &account.secret),
        )
        .await
        .assert_status(201);
        accounts.push(account);
    }
    accounts
}

async fn reveal(app: &TestApp, user: &str, account_id: &str) -> TestResponse {
    app.reveal_secrets(user, account_id).await
}

#[track_caller]
fn assert_revealed(response: &TestResponse, secret: &str) {
    response.assert_status(200);
    assert_eq!(
        response.body["configuration"]["api_key"], secret,
        "body: {}",
        response.text
    );
}

async fn assert_every_secret_reads_back(app: &TestApp, accounts: &[Account]) {
    for account in accounts {
        assert_revealed(
            &reveal(app, account.user, &account.id).await,
            &account.secret,
        );
    }
}

/// Every item of the accounts table, read consistently.
async fn scan_items(app: &TestApp) -> Vec<Item> {
    let mut pages = app
        .dynamodb()
        .scan()
        .table_name(app.resource("AccountsTable"))
        .consistent_read(true)
        .into_paginator()
        .send();
    let mut items = Vec::new();
    while let Some(page) = pages.next().await {
        items.extend(page.unwrap().items.unwrap_or_default());
    }
    items
}

/// Items by their key, so that two scans compare regardless of order.
fn by_key(items: Vec<Item>) -> HashMap<(String, String), Item> {
    items
        .into_iter()
        .map(|item| {
            let text = |name: &str| item[name].as_s().unwrap().clone();
            let key = (text("user_id"), text("account_id"));
            (key, item)
        })
        .collect()
}

/// The key an item's envelope names; `None` for items without secrets.
fn envelope_key(item: &Item) -> Option<&str> {
    let envelope = item.get("secrets")?.as_m().ok()?;
    envelope.get("kms_key_id")?.as_s().ok().map(String::as_str)
}

fn version(item: &Item) -> u64 {
    item["version"].as_n().unwrap().parse().unwrap()
}

/// The key named by each envelope in the table.
async fn wrapping_keys(app: &TestApp) -> Vec<String> {
    scan_items(app)
        .await
        .iter()
        .filter_map(|item| envelope_key(item).map(str::to_owned))
        .collect()
}

fn count_of(keys: &[String], arn: &str) -> usize {
    keys.iter().filter(|key| *key == arn).count()
}

/// A new KMS key in the emulator: `(ARN, key id)`.
async fn new_key(app: &TestApp) -> (String, String) {
    let created = app
        .kms()
        .create_key()
        .description("rotation target")
        .send()
        .await
        .unwrap();
    let metadata = created.key_metadata().unwrap();
    (
        metadata.arn().unwrap().to_owned(),
        metadata.key_id().to_owned(),
    )
}

/// The bare key id of a key ARN (the emulator's DisableKey takes only that).
async fn key_id_of(app: &TestApp, arn: &str) -> String {
    let described = app.kms().describe_key().key_id(arn).send().await.unwrap();
    described.key_metadata().unwrap().key_id().to_owned()
}

fn rotation(app: &TestApp, target: &str) -> KeyRotation {
    KeyRotation::new(
        app.dynamodb(),
        app.kms(),
        app.resource("AccountsTable"),
        target,
    )
}

/// The same stack served with `SECRETS_KMS_KEY_ID` naming `key`: step 1 of the runbook.
async fn sealing_under(app: &TestApp, key: &str) -> TestApp {
    app.serve_variant(|environment| {
        environment.insert(vars::SECRETS_KMS_KEY_ID.to_owned(), key.to_owned());
    })
    .await
}

#[tokio::test]
async fn rotation_rewraps_every_data_key_and_the_old_key_can_be_disabled() {
    let app = TestApp::spawn().await;
    let mut accounts = create_accounts(&app, ACCOUNT_COUNT).await;
    let without_secrets = json!({"account_id": "no-secrets", "account_type": "crm", "configuration": {"region": "eu"}});
    app.post(ACCOUNTS, "alice", &without_secrets)
        .await
        .assert_status(201);
    let old_arn = app.resource("SecretsKey").to_owned();
    let (new_arn, new_key_id) = new_key(&app).await;
    // The target given as an alias, as `make rotate-keys TO=alias/...` would.
    let alias = format!("alias/rotation-{}", uuid::Uuid::new_v4().simple());
    app.kms()
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&new_key_id)
        .send()
        .await
        .unwrap();
    let before = by_key(scan_items(&app).await);
    assert_eq!(
        count_of(&wrapping_keys(&app).await, &old_arn),
        ACCOUNT_COUNT
    );

    // A dry run counts and changes nothing.
    let dry = KeyRotation {
        dry_run: true,
        ..rotation(&app, &alias)
    }
    .run(|_| {})
    .await
    .unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.counts.rewrapped, ACCOUNT_COUNT);
    assert_eq!(by_key(scan_items(&app).await), before);

    let progress_calls = AtomicUsize::new(0);
    let report = rotation(&app, &alias)
        .run(|_| {
            progress_calls.fetch_add(1, Ordering::Relaxed);
        })
        .await
        .unwrap();
    // Envelopes record the key's ARN, whatever name the operator gave.
    assert_eq!(report.target_key_arn, new_arn);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(!report.stopped_early);
    let counts = report.counts;
    assert_eq!(counts.scanned, before.len());
    assert_eq!(counts.rewrapped, ACCOUNT_COUNT);
    assert_eq!(counts.already_on_target, 0);
    // The account without secrets and each user's counter item.
    assert_eq!(counts.skipped_without_secrets, before.len() - ACCOUNT_COUNT);
    assert!(counts.skipped_without_secrets > USERS.len());
    assert_eq!(counts.retried_after_conflict, 0);
    assert_eq!(progress_calls.load(Ordering::Relaxed), counts.scanned);

    // Only the wrapping changed: the same data key (nonce and ciphertext untouched), wrapped
    // under the new key, and the version bumped once; items without secrets are untouched.
    let after = by_key(scan_items(&app).await);
    assert_eq!(after.len(), before.len());
    for (key, old_item) in &before {
        let new_item = &after[key];
        let (Some(AttributeValue::M(old_envelope)), Some(AttributeValue::M(new_envelope))) =
            (old_item.get("secrets"), new_item.get("secrets"))
        else {
            assert_eq!(old_item, new_item, "an item without secrets changed");
            continue;
        };
        assert_eq!(
            new_envelope["kms_key_id"],
            AttributeValue::S(new_arn.clone())
        );
        for unchanged in ["v", "nonce", "ciphertext"] {
            assert_eq!(
                new_envelope[unchanged], old_envelope[unchanged],
                "{unchanged}"
            );
        }
        assert_ne!(new_envelope["wrapped_key"], old_envelope["wrapped_key"]);
        assert_eq!(version(new_item), version(old_item) + 1);
        for unchanged in ["configuration", "secret_paths", "updated_at"] {
            assert_eq!(new_item[unchanged], old_item[unchanged], "{unchanged}");
        }
    }

    // Step 3 of the runbook: disable the old key. The emulator's KMS would still decrypt under a
    // disabled key, so the proof that nothing needs it is that no item names it.
    app.kms()
        .disable_key()
        .key_id(key_id_of(&app, &old_arn).await)
        .send()
        .await
        .unwrap();
    let described = app
        .kms()
        .describe_key()
        .key_id(&old_arn)
        .send()
        .await
        .unwrap();
    assert!(!described.key_metadata().unwrap().enabled());
    let keys = wrapping_keys(&app).await;
    assert_eq!(count_of(&keys, &old_arn), 0);
    assert_eq!(count_of(&keys, &new_arn), ACCOUNT_COUNT);
    let rotated = sealing_under(&app, &new_arn).await;
    assert_every_secret_reads_back(&rotated, &accounts).await;
    // A new seal after the rotation names the new key too.
    accounts[0].secret = "sk_live_rotation-after-disable".to_owned();
    rotated
        .post(
            ACCOUNTS,
            accounts[0].user,
            &account_body(&accounts[0].id, &accounts[0].secret),
        )
        .await
        .assert_status(200);
    assert_every_secret_reads_back(&rotated, &accounts).await;
    assert_eq!(count_of(&wrapping_keys(&app).await, &old_arn), 0);

    // Idempotent: a second run re-wraps nothing.
    let again = rotation(&app, &new_arn).run(|_| {}).await.unwrap();
    assert!(again.failed.is_empty(), "{:?}", again.failed);
    assert_eq!(again.counts.rewrapped, 0);
    assert_eq!(again.counts.already_on_target, ACCOUNT_COUNT);
    eprintln!(
        "figures: {} items read, {} data keys re-wrapped, {} items without secrets, \
         0 left under the old key; second run re-wrapped 0",
        counts.scanned, counts.rewrapped, counts.skipped_without_secrets
    );
}

#[tokio::test]
async fn an_interrupted_rotation_completes_when_run_again() {
    const FIRST_BATCH: usize = 12;
    let app = TestApp::spawn().await;
    let accounts = create_accounts(&app, ACCOUNT_COUNT).await;
    let old_arn = app.resource("SecretsKey").to_owned();
    let (new_arn, _) = new_key(&app).await;
    let before = by_key(scan_items(&app).await);

    // Stopped half-way, as a run cut off by a crash or a bounded batch would be.
    let first = KeyRotation {
        max_items: Some(FIRST_BATCH),
        ..rotation(&app, &new_arn)
    }
    .run(|_| {})
    .await
    .unwrap();
    assert!(first.stopped_early);
    assert_eq!(first.counts.rewrapped, FIRST_BATCH);
    assert!(first.counts.scanned < before.len());
    let keys = wrapping_keys(&app).await;
    assert_eq!(count_of(&keys, &new_arn), FIRST_BATCH);
    assert_eq!(count_of(&keys, &old_arn), ACCOUNT_COUNT - FIRST_BATCH);
    // Half-way, both halves read.
    assert_every_secret_reads_back(&app, &accounts).await;

    let second = rotation(&app, &new_arn).run(|_| {}).await.unwrap();
    assert!(!second.stopped_early);
    assert!(second.failed.is_empty(), "{:?}", second.failed);
    assert_eq!(second.counts.rewrapped, ACCOUNT_COUNT - FIRST_BATCH);
    assert_eq!(second.counts.already_on_target, FIRST_BATCH);

    let after = by_key(scan_items(&app).await);
    assert_eq!(
        after.keys().collect::<HashSet<_>>(),
        before.keys().collect::<HashSet<_>>(),
        "the rotation added or lost items"
    );
    for (key, item) in &after {
        if envelope_key(item).is_some() {
            assert_eq!(envelope_key(item), Some(new_arn.as_str()));
            // Re-wrapped exactly once: one version bump, whichever run did it.
            assert_eq!(version(item), version(&before[key]) + 1, "{key:?}");
        }
    }
    assert_every_secret_reads_back(&app, &accounts).await;
    eprintln!(
        "figures: {ACCOUNT_COUNT} data keys, {} re-wrapped before the stop, {} by the rerun, \
         each exactly once",
        first.counts.rewrapped, second.counts.rewrapped
    );
}

/// Sets a new secret through the API, retrying the 409 that a write racing the rotation may get
/// (as a client must); returns how many 409s it took.
async fn update_secret(app: &TestApp, account: &Account, secret: &str) -> usize {
    const ATTEMPTS: usize = 20;
    let body = account_body(&account.id, secret);
    for conflicts in 0..ATTEMPTS {
        let response = app.post(ACCOUNTS, account.user, &body).await;
        match response.status.as_u16() {
            200 => return conflicts,
            409 => assert_eq!(
                response.error_code(),
                "concurrent_update",
                "{}",
                response.text
            ),
            _ => panic!("unexpected answer to an update: {}", response.text),
        }
    }
    panic!("the update still conflicted after {ATTEMPTS} attempts");
}

#[tokio::test]
async fn rotation_keeps_concurrent_user_updates() {
    let app = TestApp::spawn().await;
    let mut accounts = create_accounts(&app, ACCOUNT_COUNT).await;
    let (new_arn, _) = new_key(&app).await;
    // The runbook's order: the API seals under the new key before the rotation starts.
    let rotated = sealing_under(&app, &new_arn).await;
    let updated: Vec<usize> = (0..ACCOUNT_COUNT).step_by(4).collect();

    let updates = futures::future::join_all(updated.iter().map(|&n| {
        let (rotated, account) = (&rotated, &accounts[n]);
        async move {
            let mut conflicts = 0;
            for round in 1..=2 {
                // Spread over the rotation's run rather than all at its start.
                tokio::time::sleep(Duration::from_millis(4 * n as u64)).await;
                conflicts += update_secret(rotated, account, &updated_secret(n, round)).await;
            }
            conflicts
        }
    }));
    let key_rotation = rotation(&app, &new_arn);
    let (report, conflicts) = tokio::join!(key_rotation.run(|_| {}), updates);
    let report = report.unwrap();
    let user_conflicts: usize = conflicts.iter().sum();

    assert!(report.failed.is_empty(), "{:?}", report.failed);
    // Each account either re-wrapped by the rotation or already sealed anew by its user.
    assert_eq!(
        report.counts.rewrapped + report.counts.already_on_target,
        ACCOUNT_COUNT
    );
    let keys = wrapping_keys(&app).await;
    assert_eq!(keys.len(), ACCOUNT_COUNT);
    assert_eq!(count_of(&keys, &new_arn), ACCOUNT_COUNT);
    // Nothing overwritten: every update's last value is what `/secrets` answers.
    for &n in &updated {
        accounts[n].secret = updated_secret(n, 2);
    }
    assert_every_secret_reads_back(&app, &accounts).await;
    // Not by chance: a second run finds everything done.
    let again = key_rotation.run(|_| {}).await.unwrap();
    assert_eq!(again.counts.rewrapped, 0);
    assert_eq!(again.counts.already_on_target, ACCOUNT_COUNT);
    eprintln!(
        "figures: {} accounts updated twice during a rotation of {ACCOUNT_COUNT}; re-wrapped {}, \
         already on the new key {}, rotation writes retried {}, user writes answered 409 and \
         retried {user_conflicts}; 0 updates lost",
        updated.len(),
        report.counts.rewrapped,
        report.counts.already_on_target,
        report.counts.retried_after_conflict
    );
}

#[tokio::test]
async fn a_missing_or_disabled_target_key_stops_the_rotation_before_any_change() {
    let app = TestApp::spawn().await;
    create_accounts(&app, 2).await;
    let before = by_key(scan_items(&app).await);

    let missing = format!("alias/no-such-key-{}", uuid::Uuid::new_v4().simple());
    let error = rotation(&app, &missing).run(|_| {}).await.unwrap_err();
    assert!(matches!(error, RotationError::TargetKey { .. }), "{error}");

    let (disabled_arn, disabled_id) = new_key(&app).await;
    app.kms()
        .disable_key()
        .key_id(&disabled_id)
        .send()
        .await
        .unwrap();
    let error = rotation(&app, &disabled_arn).run(|_| {}).await.unwrap_err();
    assert!(matches!(error, RotationError::TargetKey { .. }), "{error}");

    assert_eq!(by_key(scan_items(&app).await), before);
}
