//! Scale: how the background paths grow with volume, each counted at the wire (the recording
//! proxy) and timed on a fresh stack per size:
//!
//! - the release tick over N due scheduled communications (time and calls per item);
//! - a CSV import of N rows (time and calls per row);
//! - a sequence of T targets × 3 steps (per step: time and calls per email, the release tick's
//!   share included);
//! - the reply poller over M connected Gmail mailboxes holding K new messages (calls per mailbox
//!   per poll).
//!
//! Absolute times are the emulator's (it serves one call at a time and copies a table per
//! transaction); calls per item and the shape of each curve are what carry over to AWS.

use std::collections::BTreeMap;
use std::time::Instant;

use http::Method;
use pipewise::clock::Clock;
use pipewise::communications::CommunicationsWorker;
use pipewise_tests::TestApp;
use pipewise_tests::connect_flow::{app_with_providers, connected};
use pipewise_tests::fake_mailbox::Inbound;
use pipewise_tests::fake_oauth::{GoogleUser, Provider};
use pipewise_tests::fault_proxy::FaultProxy;
use serde_json::{Value, json};

use crate::fixture::{Api, email_account, seed_targets, unique_domain};

const USER: &str = "bench-scale";

fn tally(calls: &[String]) -> BTreeMap<String, usize> {
    let mut counted = BTreeMap::new();
    for call in calls {
        *counted.entry(call.clone()).or_default() += 1;
    }
    counted
}

/// One measured size: time, calls, calls per item, by operation.
fn row(size: usize, seconds: f64, calls: &[String]) -> Value {
    let aws: Vec<String> = calls
        .iter()
        .filter(|call| !call.starts_with("sqs:ReceiveMessage") && !call.starts_with("sqs:Delete"))
        .cloned()
        .collect();
    let dynamodb = aws
        .iter()
        .filter(|call| call.starts_with("dynamodb:"))
        .count();
    json!({
        "size": size,
        "seconds": seconds,
        "per_item_ms": seconds * 1_000.0 / size.max(1) as f64,
        "calls": aws.len(),
        "calls_per_item": aws.len() as f64 / size.max(1) as f64,
        "dynamodb_per_item": dynamodb as f64 / size.max(1) as f64,
        "by_operation": tally(&aws),
    })
}

async fn proxy() -> FaultProxy {
    let emulator = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    FaultProxy::start(&emulator).await
}

/// The release tick over `n` due scheduled communications, for each `n`.
pub async fn release(sizes: &[usize]) -> Vec<Value> {
    let mut rows = Vec::new();
    for &n in sizes {
        let app = TestApp::spawn().await;
        let now = pipewise::clock::Clock::system().epoch_seconds();
        let run_id = pipewise::ids::RunId::new();
        let items = (0..n as u32)
            .map(|index| {
                pipewise_tests::due_scheduled_communication(USER, &run_id, index, now - 60)
            })
            .collect();
        app.put_items("RunsTable", items).await;
        let proxy = proxy().await;
        let worker = app
            .worker_on(&app.sdk_through(&proxy.url))
            .with_tick_budget(std::time::Duration::from_secs(3_600));
        // An idle tick's calls (it reads the release and in-flight indexes of the last days
        // every minute) are not the items'.
        let started = Instant::now();
        let report = worker.tick().await.expect("tick");
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(report.released, n, "{report:?}");
        let mut calls = proxy.take_calls();
        without_an_idle_tick(&mut calls, &proxy).await;
        let figure = row(n, seconds, &calls);
        eprintln!("scale release {figure}");
        rows.push(figure);
    }
    rows
}

/// Takes an idle tick's calls out of `calls`: the tick reads the release and in-flight indexes
/// of the last days every minute whether anything is due or not, which is not the items' cost.
async fn without_an_idle_tick(calls: &mut Vec<String>, proxy: &FaultProxy) {
    let idle = TestApp::spawn().await;
    let idle_worker = idle.worker_on(&idle.sdk_through(&proxy.url));
    proxy.take_calls();
    idle_worker.tick().await.expect("idle tick");
    for call in proxy.take_calls() {
        if let Some(position) = calls.iter().position(|made| *made == call) {
            calls.remove(position);
        }
    }
}

/// A CSV import of `n` rows, for each `n`.
pub async fn import(sizes: &[usize]) -> Vec<Value> {
    let mut rows = Vec::new();
    for &n in sizes {
        let app = TestApp::spawn().await;
        let proxy = proxy().await;
        let api = Api::new(&app, &app.sdk_through(&proxy.url), USER);
        let domain = unique_domain();
        let mut csv = String::from("name,email,company\n");
        for i in 0..n {
            csv.push_str(&format!("Person {i},p{i}@{domain},Company {i}\n"));
        }
        proxy.take_calls();
        let started = Instant::now();
        let (status, answer) = api
            .call_with(
                Method::POST,
                "/api/user/communication-targets/import",
                Some(("text/csv; charset=utf-8", csv.into_bytes())),
            )
            .await;
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["created"], n, "{}", answer["created"]);
        let figure = row(n, seconds, &proxy.take_calls());
        eprintln!("scale import {figure}");
        rows.push(figure);
    }
    rows
}

/// A sequence of `targets` people × 3 steps (a day apart): per step, the initiate or the release
/// tick, then the worker draining the queue.
pub async fn sequence(targets: usize) -> Vec<Value> {
    let direct = TestApp::spawn().await;
    let proxy = proxy().await;
    let app = direct.serve_through(direct.sdk_through(&proxy.url)).await;
    let clock = Clock::adjustable();
    let worker = app.worker_with_clock(clock.clone());
    let api = Api::new(&app, &app.sdk, USER);
    let domain = unique_domain();
    email_account(&api, &domain, 10_000).await;
    seed_targets(&direct, USER, targets, &domain).await;
    let body = json!({"steps": [
        {"message": {"subject": "Hello {{first_name}}", "body": "First, {{name}}."}},
        {"message": {"body": "Following up, {{first_name}}."}, "wait": "P1D"},
        {"message": {"body": "Last note, {{first_name}}."}, "wait": "P1D"},
    ]});
    let mut steps = Vec::new();
    for step in 1..=3 {
        proxy.take_calls();
        let started = Instant::now();
        if step == 1 {
            api.expect(
                Method::POST,
                "/api/user/orchestrator/initiate-communications",
                Some(&body),
                202,
            )
            .await;
        } else {
            clock.advance(86_400 + 60);
            let report = worker.tick().await.expect("tick");
            assert_eq!(report.released, targets, "{report:?}");
        }
        let drained = drain(&app, &worker).await;
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(drained, targets, "step {step}");
        let mut calls = proxy.take_calls();
        if step > 1 {
            without_an_idle_tick(&mut calls, &proxy).await;
        }
        let mut figure = row(targets, seconds, &calls);
        figure["step"] = json!(step);
        eprintln!("scale sequence {figure}");
        steps.push(figure);
    }
    steps
}

async fn drain(app: &TestApp, worker: &CommunicationsWorker) -> usize {
    let sqs = app.sqs();
    let queue = app.queue_url("CommunicationsQueue");
    let mut handled = 0;
    loop {
        let report = pipewise_local::queue_poller::poll_once(&sqs, &queue, worker, 0)
            .await
            .expect("poll");
        if report.received == 0 {
            return handled;
        }
        handled += report.received;
    }
}

/// The reply poller over `mailboxes` connected Gmail mailboxes holding `messages` new ones
/// (answers to messages we never sent, so each is looked up and none matches).
pub async fn poller(mailboxes: usize, messages: usize) -> Value {
    let (app, fake) = app_with_providers().await;
    for i in 0..mailboxes {
        fake.signs_in(GoogleUser {
            email: format!("owner{i}@example.com"),
        });
        connected(&app, &format!("owner{i}"), Provider::Google).await;
    }
    let proxy = proxy().await;
    let worker = app.worker_on(&app.sdk_through(&proxy.url));
    // The first read of each mailbox sets its cursor.
    worker.poll_replies().await.expect("first poll");
    for j in 0..messages {
        fake.deliver(Inbound {
            mailbox: format!("owner{}@example.com", j % mailboxes.max(1)),
            from: format!("Someone {j} <someone{j}@client.example>"),
            subject: "Re: Hello".into(),
            in_reply_to: Some(format!("<elsewhere.{j}@client.example>")),
            references: Some(format!("<elsewhere.{j}@client.example>")),
            body: "Thanks.".into(),
            ..Inbound::default()
        });
    }
    proxy.take_calls();
    let started = Instant::now();
    let report = worker.poll_replies().await.expect("poll");
    let seconds = started.elapsed().as_secs_f64();
    let mut figure = row(mailboxes, seconds, &proxy.take_calls());
    figure["messages"] = json!(messages);
    figure["report"] = json!(format!("{report:?}"));
    eprintln!("scale poller {figure}");
    figure
}
