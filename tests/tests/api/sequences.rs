//! Sequences (issue 24, items 1, 2 and 8): follow-ups go out their wait after the step before,
//! in the same thread, and stop for a person who replied or unsubscribed, checked right before
//! they go; the run shows each step. The worker's clock is moved instead of waiting.

use pipewise::clock::Clock;
use pipewise::communications::CommunicationsWorker;
use pipewise_tests::connect_flow::{app_with_providers, connected};
use pipewise_tests::fake_oauth::Provider;
use pipewise_tests::{RawEmail, TestApp, unique_domain};
use serde_json::{Value, json};

const TARGETS: &str = "/api/user/communication-targets";
const INITIATE: &str = "/api/user/orchestrator/initiate-communications";
const RUNS: &str = "/api/user/orchestrator/runs";
const THREE_DAYS: i64 = 3 * 86_400;

fn two_steps() -> Value {
    json!({"steps": [
        {"message": {"subject": "Hello {{first_name}}", "body": "First, {{name}}."}},
        {"message": {"body": "Following up, {{first_name}}."}, "wait": "P3D"},
    ]})
}

async fn add(app: &TestApp, name: &str, email: &str) -> String {
    let created = app
        .post(TARGETS, "alice", &json!({"name": name, "email": email}))
        .await;
    created.assert_status(201);
    created.body["id"].as_str().unwrap().to_owned()
}

async fn start(app: &TestApp, body: &Value) -> String {
    let started = app.post(INITIATE, "alice", body).await;
    started.assert_status(202);
    started.body["run_id"].as_str().unwrap().to_owned()
}

async fn run(app: &TestApp, run_id: &str) -> Value {
    let view = app.get(&format!("{RUNS}/{run_id}"), "alice").await;
    view.assert_status(200);
    view.body
}

/// Alice's stack with a verified SES sender (at most `daily_limit` a day when given), a worker
/// whose clock the test moves, and a domain for targets.
struct Outreach {
    app: TestApp,
    clock: Clock,
    worker: CommunicationsWorker,
    sender: String,
    domain: String,
}

async fn outreach(daily_limit: Option<u32>) -> Outreach {
    let app = TestApp::spawn().await;
    let clock = Clock::adjustable();
    let worker = app.worker_with_clock(clock.clone());
    let domain = unique_domain();
    let sender = app
        .verified_email_account("alice", "mail", &domain, daily_limit)
        .await;
    Outreach {
        app,
        clock,
        worker,
        sender,
        domain,
    }
}

/// Three days and a minute on, the release tick and the queue.
async fn after_the_wait(app: &TestApp, clock: &Clock, worker: &CommunicationsWorker) -> usize {
    clock.advance(THREE_DAYS + 60);
    worker.tick().await.expect("tick");
    app.drain_queue_with(worker).await
}

#[tokio::test]
async fn a_follow_up_goes_out_after_its_wait_as_a_reply_and_each_step_is_counted() {
    let Outreach {
        app,
        clock,
        worker,
        sender,
        domain,
    } = outreach(None).await;
    add(&app, "Ada Lovelace", &format!("ada@{domain}")).await;
    let run_id = start(&app, &two_steps()).await;
    app.drain_queue_with(&worker).await;

    let view = run(&app, &run_id).await;
    let communications = view["communications"].as_array().unwrap();
    assert_eq!(communications.len(), 2, "{view}");
    assert_eq!(
        (&communications[0]["step"], &communications[0]["status"]),
        (&json!(1), &json!("sent"))
    );
    assert_eq!(
        (&communications[1]["step"], &communications[1]["status"]),
        (&json!(2), &json!("scheduled"))
    );
    let due = time::OffsetDateTime::parse(
        communications[1]["scheduled_for"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    assert!(
        (due - clock.epoch_seconds() - THREE_DAYS).abs() < 60,
        "three days on"
    );
    assert_eq!(view["status"], "running", "the follow-up is still to come");
    assert_eq!(view["counts"]["total"], 2);
    assert_eq!(view["counts"]["pending"], 1);
    assert_eq!(view["steps"][1]["by_status"], json!({"scheduled": 1}));

    // Not before its time.
    assert_eq!(worker.tick().await.unwrap().released, 0);
    assert_eq!(after_the_wait(&app, &clock, &worker).await, 1);
    let emails = app.sent_emails(&sender).await;
    assert_eq!(emails.len(), 2);
    let follow_up = emails
        .iter()
        .find(|(_, subject, _)| subject.starts_with("Re:"))
        .expect("the follow-up");
    assert_eq!(follow_up.1, "Re: Hello Ada", "it answers the first message");
    assert!(
        follow_up.2.starts_with("Following up, Ada."),
        "{}",
        follow_up.2
    );

    let view = run(&app, &run_id).await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["counts"]["sent"], 2);
    assert_eq!(view["steps"][0]["by_status"], json!({"sent": 1}));
    assert_eq!(view["steps"][1]["by_status"], json!({"sent": 1}));
}

#[tokio::test]
async fn a_reply_or_an_unsubscribe_cancels_the_follow_up_already_scheduled() {
    let Outreach {
        app,
        clock,
        worker,
        sender,
        domain,
    } = outreach(None).await;
    let ada = add(&app, "Ada Lovelace", &format!("ada@{domain}")).await;
    add(&app, "Grace Hopper", &format!("grace@{domain}")).await;
    add(&app, "Mary Somerville", &format!("mary@{domain}")).await;
    let run_id = start(&app, &two_steps()).await;
    app.drain_queue_with(&worker).await;
    assert_eq!(app.sent_emails(&sender).await.len(), 3);

    // Ada answers (in any run: what the reply poller records on the target).
    let targets = pipewise::targets::TargetStore::new(app.dynamodb(), app.resource("TargetsTable"));
    let alice = pipewise::ids::UserId::from_verified_sub("alice".into());
    assert!(
        targets
            .record_reply(
                &alice,
                &pipewise::ids::TargetId::parse(&ada).expect("a target id"),
                &pipewise::clock::Clock::system().now_rfc3339()
            )
            .await
            .unwrap()
    );
    // Grace unsubscribes with her first email's one-click link.
    let raw = app.sent_raw_emails(&sender).await;
    let to_grace = raw
        .iter()
        .map(|raw| RawEmail::parse(raw))
        .find(|email| {
            email
                .header("To")
                .is_some_and(|to| to.starts_with("grace@"))
        })
        .unwrap();
    app.unsubscribe_from(&to_grace).await;

    after_the_wait(&app, &clock, &worker).await;
    let emails = app.sent_emails(&sender).await;
    assert_eq!(emails.len(), 4, "only Mary is followed up");
    assert!(
        emails
            .iter()
            .any(|(to, subject, _)| to.starts_with("mary@") && subject.starts_with("Re:"))
    );
    let view = run(&app, &run_id).await;
    assert_eq!(
        view["steps"][1]["cancelled_by_reason"],
        json!({"replied": 1, "unsubscribed": 1}),
        "{view}"
    );
    assert_eq!(
        view["steps"][1]["by_status"],
        json!({"cancelled": 2, "sent": 1})
    );
    assert_eq!(view["status"], "completed");
}

#[tokio::test]
async fn a_mailbox_follow_up_joins_the_first_messages_thread() {
    let (app, fake) = app_with_providers().await;
    let clock = Clock::adjustable();
    let worker = app.worker_with_clock(clock.clone());
    connected(&app, "alice", Provider::Google).await;
    add(&app, "Grace Hopper", "grace@client.example").await;
    start(&app, &two_steps()).await;
    app.drain_queue_with(&worker).await;
    after_the_wait(&app, &clock, &worker).await;
    let sent = fake.sent_mail();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let (first, second) = (&sent[0], &sent[1]);
    assert_eq!(second.subject, "Re: Hello Grace");
    assert_eq!(
        second.in_reply_to.as_deref(),
        Some(first.message_id.as_str())
    );
    assert_eq!(
        second.references.as_deref(),
        Some(first.message_id.as_str())
    );
    assert_eq!(second.thread_id, first.thread_id, "the same Gmail thread");
}

#[tokio::test]
async fn steps_are_checked_before_anything_is_stored() {
    let app = TestApp::spawn().await;
    let domain = unique_domain();
    app.verified_email_account("alice", "mail", &domain, None)
        .await;
    add(&app, "Ada", &format!("ada@{domain}")).await;
    let first = json!({"message": {"body": "Hi"}});
    let refusals = [
        (
            json!({"message": {"body": "Hi"}, "steps": [first]}),
            "steps",
        ),
        (
            json!({"steps": [first, {"message": {"body": "Again"}, "wait": "P31D"}]}),
            "steps[1].wait",
        ),
        (
            json!({"steps": [first, {"message": {"body": "Again"}, "wait": "PT30S"}]}),
            "steps[1].wait",
        ),
        (
            json!({"steps": [first, {"message": {"body": "Again"}}]}),
            "steps[1].wait",
        ),
        (
            json!({"steps": [{"message": {"body": "Hi"}, "wait": "P1D"}]}),
            "steps[0].wait",
        ),
        (json!({"steps": vec![first.clone(); 6]}), "steps"),
        (
            json!({"steps": [first, {"message": {"body": "{{role}}"}, "wait": "P1D"}]}),
            "",
        ),
    ];
    for (body, field) in refusals {
        let refused = app.post(INITIATE, "alice", &body).await;
        refused.assert_status(422);
        if field.is_empty() {
            assert_eq!(
                refused.error_code(),
                "template_value_missing",
                "a follow-up's hole too"
            );
        } else {
            assert_eq!(
                refused.body["error"]["details"][0]["field"], field,
                "{body}"
            );
        }
    }
    assert_eq!(app.get(RUNS, "alice").await.body["runs"], json!([]));
}

#[tokio::test]
async fn a_send_outside_the_window_waits_for_its_next_opening() {
    let Outreach {
        app,
        clock,
        worker,
        sender,
        domain,
    } = outreach(None).await;
    add(&app, "Ada Lovelace", &format!("ada@{domain}")).await;
    // Open all of tomorrow (UTC), and only then.
    let now = clock.epoch_seconds();
    let tomorrow = time::OffsetDateTime::from_unix_timestamp(now + 86_400)
        .unwrap()
        .date();
    let day = tomorrow.weekday().to_string()[..3].to_ascii_lowercase();
    let opening = tomorrow.midnight().assume_utc().unix_timestamp();
    let run_id = start(
        &app,
        &json!({"message": {"subject": "Hi", "body": "Hello"},
            "schedule": {"timezone": "UTC", "days": [day], "start": "00:00", "end": "23:59"}}),
    )
    .await;
    app.drain_queue_with(&worker).await;
    assert!(
        app.sent_emails(&sender).await.is_empty(),
        "not outside the window"
    );
    let view = run(&app, &run_id).await;
    let waiting = &view["communications"][0];
    assert_eq!(waiting["status"], "scheduled", "{view}");
    assert_eq!(
        time::OffsetDateTime::parse(
            waiting["scheduled_for"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .unwrap()
        .unix_timestamp(),
        opening
    );
    clock.advance(opening - now + 60);
    worker.tick().await.unwrap();
    app.drain_queue_with(&worker).await;
    assert_eq!(
        app.sent_emails(&sender).await.len(),
        1,
        "sent once it opened"
    );
    assert_eq!(run(&app, &run_id).await["status"], "completed");

    let refused = app
        .post(
            INITIATE,
            "alice",
            &json!({"message": {"body": "Hi"},
                "schedule": {"timezone": "Mars/CANARY", "start": "17:00", "end": "09:00"}}),
        )
        .await;
    refused.assert_error(422, "validation_failed");
    assert!(!refused.text.contains("CANARY"));
}

#[tokio::test]
async fn a_daily_cap_counts_the_days_of_the_schedules_zone() {
    let Outreach {
        app,
        worker,
        sender,
        domain,
        ..
    } = outreach(Some(1)).await;
    add(&app, "Ada Lovelace", &format!("ada@{domain}")).await;
    add(&app, "Grace Hopper", &format!("grace@{domain}")).await;
    // UTC+14: its days end ten hours before UTC's begin.
    let zone = "Pacific/Kiritimati";
    let run_id = start(
        &app,
        &json!({"message": {"subject": "Hi", "body": "Hello"},
            "schedule": {"timezone": zone, "start": "00:00", "end": "23:59"}}),
    )
    .await;
    app.drain_queue_with(&worker).await;
    assert_eq!(app.sent_emails(&sender).await.len(), 1, "one a day");
    let view = run(&app, &run_id).await;
    let waiting = view["communications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "scheduled")
        .expect("the second waits")
        .clone();
    let until = time::OffsetDateTime::parse(
        waiting["scheduled_for"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let local = until.to_offset(time::UtcOffset::from_hms(14, 0, 0).unwrap());
    assert_eq!(
        (local.hour(), local.minute()),
        (0, 0),
        "the zone's next midnight, not UTC's: {until}"
    );
}

#[tokio::test]
async fn the_largest_run_reads_back_whole_well_inside_lambdas_response_limit() {
    use pipewise::communications::model::{
        Accepted, CommunicationStatus, MessageTemplate, SkippedSummary,
    };
    use pipewise::communications::sequence::FollowUp;
    use pipewise::communications::store::{CommunicationItem, RunItem, RunStore};
    use pipewise::communications::template::RecipientSnapshot;
    use pipewise::ids::{AccountId, RunId, UserId};

    let app = TestApp::spawn().await;
    let user = UserId::from_verified_sub("alice".into());
    let run_id = RunId::new();
    // The contract's largest run: 1,000 pairs, 5 steps, every follow-up waiting.
    let message = MessageTemplate {
        subject: Some("Hello {{name}}".into()),
        body: "Hi {{first_name}}, a few words about what we do.".into(),
    };
    let mut run = RunItem::new(
        &user,
        &run_id,
        5_000,
        SkippedSummary::default(),
        message.clone(),
        pipewise::clock::Clock::system().now_rfc3339(),
    );
    run.follow_ups = (0..4)
        .map(|_| FollowUp {
            message: message.clone(),
            wait_seconds: 3 * 86_400,
        })
        .collect();
    let store = RunStore::new(app.dynamodb(), app.resource("RunsTable"));
    assert!(store.create_run(&run).await.expect("the run"));
    let later = pipewise::clock::Clock::system().epoch_seconds() + 3 * 86_400;
    let mut items = Vec::with_capacity(5_000);
    for index in 0..1_000u32 {
        let first = CommunicationItem {
            user_id: user.clone(),
            sk: CommunicationItem::sort_key(&run_id, index),
            run_id,
            index,
            step: 1,
            references: Vec::new(),
            target_id: pipewise::ids::TargetId::new(),
            channel: pipewise::channel::Channel::Email,
            account_id: AccountId::parse("mail").expect("an account id"),
            recipient: RecipientSnapshot {
                name: format!("Person Number {index}"),
                email: Some(format!("person.number.{index}@client.example")),
                twitter_username: None,
                instagram_username: None,
                timezone: Some("Europe/Paris".into()),
                custom_fields: [("company".to_owned(), "Example Industries".to_owned())].into(),
            },
            status: CommunicationStatus::Sent,
            reason: None,
            attempts: 1,
            sending_since: None,
            scheduled_for: None,
            scheduled_day: None,
            in_flight_day: None,
            provider_message_id: Some(format!("0100018c-{index:08}")),
            thread_id: None,
            internet_message_id: None,
            replied_at: None,
            feedback: Vec::new(),
            updated_at: pipewise::clock::Clock::system().now_rfc3339(),
        };
        let mut step = first.clone();
        items.push(first);
        for _ in 2..=5 {
            step = step.follow_up(
                &Accepted::default(),
                later,
                pipewise::clock::Clock::system().now_rfc3339(),
            );
            items.push(step.clone());
        }
    }
    store
        .put_new_communications(&items)
        .await
        .expect("the communications");

    let view = app
        .get(&format!("/api/user/orchestrator/runs/{run_id}"), "alice")
        .await;
    view.assert_status(200);
    assert_eq!(
        view.body["communications"]
            .as_array()
            .expect("communications")
            .len(),
        5_000
    );
    let steps = view.body["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 5);
    assert_eq!(steps[0]["by_status"]["sent"], 1_000);
    assert_eq!(steps[4]["by_status"]["scheduled"], 1_000);
    // Lambda answers at most 6 MB; the largest run's whole view stays under a third of it,
    // so no paging of communications is needed (docs/architecture.md).
    let bytes = view.text.len();
    assert!(bytes < 2 * 1024 * 1024, "{bytes} bytes");
}
