//! The per-user counters and email guards under concurrent churn. DynamoDB keeps each write and
//! transaction atomic; with an emulator that does too (tools/emulator), any drift found here is a
//! bug of ours.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;
use pipewise_tests::TestApp;
use serde_json::{Value, json};

const TARGETS: &str = "/api/user/communication-targets";
const ACCOUNTS: &str = "/api/user/integrations/accounts";
const TASKS: u64 = 12;
const OPERATIONS_PER_TASK: u64 = 20;
/// Few emails and account ids, so that tasks collide on them all the time.
const EMAILS: u64 = 6;
const ACCOUNT_IDS: u64 = 5;
const USERS: [&str; 2] = ["alice", "bob"];

/// A small deterministic generator (xorshift64*): each task's sequence is the same every run,
/// only the interleaving differs.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
    }
}

fn email(n: u64) -> String {
    format!("person{n}@example.com")
}

/// Active target ids of `user`, as the API lists them.
async fn active_ids(app: &TestApp, user: &str) -> Vec<String> {
    let listed = app.get(&format!("{TARGETS}?limit=100"), user).await;
    listed.body["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|target| target["id"].as_str().map(str::to_owned))
        .collect()
}

/// One task's operations; returns the statuses it saw, for the figures.
async fn churn(app: &TestApp, task: u64) -> Vec<(&'static str, u16)> {
    let mut sequence = Sequence(0x9E37_79B9_7F4A_7C15 ^ (task + 1).wrapping_mul(0x1000_0001));
    let mut seen = Vec::new();
    for _ in 0..OPERATIONS_PER_TASK {
        let user = USERS[sequence.next(USERS.len() as u64) as usize];
        let step = sequence.next(7);
        let outcome = match step {
            0 | 1 => {
                let body =
                    json!({"name": format!("T{task}"), "email": email(sequence.next(EMAILS))});
                ("create", app.post(TARGETS, user, &body).await.status)
            }
            2 => {
                let ids = active_ids(app, user).await;
                let Some(id) = ids.get(sequence.next(ids.len().max(1) as u64) as usize) else {
                    continue;
                };
                (
                    "delete",
                    app.delete(&format!("{TARGETS}/{id}"), user).await.status,
                )
            }
            3 => {
                let ids = active_ids(app, user).await;
                let Some(id) = ids.get(sequence.next(ids.len().max(1) as u64) as usize) else {
                    continue;
                };
                let body = if sequence.next(4) == 0 {
                    json!({"email": null})
                } else {
                    json!({"email": email(sequence.next(EMAILS))})
                };
                (
                    "patch",
                    app.patch(&format!("{TARGETS}/{id}"), user, &body)
                        .await
                        .status,
                )
            }
            4 => {
                let items: Vec<Value> = (0..3)
                    .map(|i| json!({"name": format!("B{task}-{i}"), "email": email(sequence.next(EMAILS))}))
                    .collect();
                let body = json!({"targets": items});
                (
                    "batch",
                    app.post(&format!("{TARGETS}/batch"), user, &body)
                        .await
                        .status,
                )
            }
            5 => {
                let body = json!({
                    "account_id": format!("acct-{}", sequence.next(ACCOUNT_IDS)),
                    "account_type": "crm",
                    "configuration": {"api_key": format!("k-{task}")},
                });
                (
                    "account upsert",
                    app.post(ACCOUNTS, user, &body).await.status,
                )
            }
            _ => {
                let id = format!("acct-{}", sequence.next(ACCOUNT_IDS));
                (
                    "account delete",
                    app.delete(&format!("{ACCOUNTS}/{id}"), user).await.status,
                )
            }
        };
        seen.push((outcome.0, outcome.1.as_u16()));
    }
    seen
}

type Item = HashMap<String, AttributeValue>;

async fn partition(app: &TestApp, table: &str, user: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = app
            .dynamodb()
            .query()
            .table_name(app.resource(table))
            .key_condition_expression("user_id = :u")
            .expression_attribute_values(":u", AttributeValue::S(user.into()))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("query the partition");
        items.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn number(item: &Item, name: &str) -> i64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Asserts every invariant of one user's targets partition; returns the active count.
fn check_targets(user: &str, items: &[Item]) -> usize {
    let sk = |item: &Item| text(item, "sk").unwrap_or_default().to_owned();
    let active: HashMap<String, &Item> = items
        .iter()
        .filter(|item| sk(item).starts_with("T#"))
        .map(|item| (sk(item)[2..].to_owned(), item))
        .collect();
    let counter = items
        .iter()
        .find(|item| sk(item) == "#count")
        .map_or(0, |item| number(item, "active_count"));
    assert_eq!(
        counter,
        active.len() as i64,
        "{user}: the stored active-target counter differs from a fresh count"
    );
    let guards: Vec<&Item> = items
        .iter()
        .filter(|item| sk(item).starts_with("E#"))
        .collect();
    let mut guarded = HashSet::new();
    for guard in &guards {
        let email = &sk(guard)[2..];
        let target_id = text(guard, "target_id").unwrap_or_default();
        let target = active
            .get(target_id)
            .unwrap_or_else(|| panic!("{user}: the guard of {email} points at no active target"));
        assert_eq!(
            text(target, "email"),
            Some(email),
            "{user}: the guard of {email} points at a target with another email"
        );
        guarded.insert(target_id.to_owned());
    }
    for (id, target) in &active {
        if text(target, "email").is_some() {
            assert!(
                guarded.contains(id),
                "{user}: active target {id} has an email but no guard"
            );
        }
    }
    active.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_churn_keeps_counters_and_email_guards_equal_to_the_items() {
    let app = TestApp::spawn().await;
    let tasks = (0..TASKS).map(|task| churn(&app, task));
    let outcomes: Vec<(&str, u16)> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        outcomes.len() >= 200,
        "only {} operations ran; the test needs at least 200",
        outcomes.len()
    );
    let server_errors: Vec<_> = outcomes
        .iter()
        .filter(|(_, status)| *status >= 500)
        .collect();
    assert!(server_errors.is_empty(), "server errors: {server_errors:?}");
    for kind in [
        "create",
        "delete",
        "patch",
        "batch",
        "account upsert",
        "account delete",
    ] {
        assert!(
            outcomes
                .iter()
                .any(|(k, status)| *k == kind && *status < 300),
            "no {kind} succeeded, so the churn did not exercise it: {outcomes:?}"
        );
    }
    assert!(
        outcomes.iter().any(|(_, status)| *status == 409),
        "no conflict happened, so the churn did not race: {outcomes:?}"
    );
    for user in USERS {
        let targets = partition(&app, "TargetsTable", user).await;
        let active = check_targets(user, &targets);
        assert_eq!(
            active,
            active_ids(&app, user).await.len(),
            "{user}: the API lists other targets"
        );

        let accounts = partition(&app, "AccountsTable", user).await;
        let stored = accounts
            .iter()
            .filter(|item| text(item, "account_id") != Some("#quota"))
            .count();
        let counter = accounts
            .iter()
            .find(|item| text(item, "account_id") == Some("#quota"))
            .map_or(0, |item| number(item, "account_count"));
        assert_eq!(
            counter, stored as i64,
            "{user}: the stored account counter differs from a fresh count"
        );
        eprintln!(
            "figures: {user}: {active} active targets, {} target items, {stored} accounts",
            targets.len()
        );
    }
    eprintln!("figures: {} operations from {TASKS} tasks", outcomes.len());
}
