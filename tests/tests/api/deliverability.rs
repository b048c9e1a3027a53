//! Outreach email that inbox providers accept: RFC 8058 one-click unsubscribe (headers and a
//! visible link), the per-user suppression list, initiate skipping suppressed addresses, SES
//! feedback (delivery, bounces, complaints) through the real topic and queue, and the
//! per-sender daily cap.

use pipewise_tests::{RawEmail, TestApp};
use reqwest::Method;
use serde_json::json;

const INITIATE: &str = "/api/user/orchestrator/initiate-communications";

struct Mailing {
    app: TestApp,
    sender: String,
    ada: String,
    run_id: String,
}

/// Alice's verified email account and one target; one run sent.
async fn one_email_sent() -> Mailing {
    let app = TestApp::spawn().await;
    let domain = pipewise_tests::unique_domain();
    let sender = app
        .verified_email_account("alice", "mail", &domain, None)
        .await;
    let ada = format!("ada@{domain}");
    app.post(
        "/api/user/communication-targets",
        "alice",
        &json!({"name": "Ada", "email": ada}),
    )
    .await
    .assert_status(201);
    let started = app
        .post(
            INITIATE,
            "alice",
            &json!({"message": {"subject": "Hello", "body": "Hi {{first_name}}"}}),
        )
        .await;
    started.assert_status(202);
    app.drain_queue().await;
    let run_id = started.body["run_id"].as_str().unwrap().to_owned();
    Mailing {
        app,
        sender,
        ada,
        run_id,
    }
}

fn unsubscribe_url(raw: &str) -> String {
    let email = RawEmail::parse(raw);
    let header = email.header("List-Unsubscribe").expect("List-Unsubscribe");
    header
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

async fn post_one_click(app: &TestApp, url: &str) -> pipewise_tests::TestResponse {
    let path = url.trim_start_matches("http://127.0.0.1:8001");
    app.send(
        app.request(Method::POST, path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click"),
    )
    .await
}

#[tokio::test]
async fn every_outreach_email_carries_one_click_unsubscribe() {
    let mailing = one_email_sent().await;
    let raw = mailing.app.sent_raw_emails(&mailing.sender).await;
    assert_eq!(raw.len(), 1);
    let email = RawEmail::parse(&raw[0]);
    let url = unsubscribe_url(&raw[0]);
    assert!(
        url.starts_with("http://127.0.0.1:8001/api/user/unsubscribe/"),
        "{url}"
    );
    assert_eq!(
        email.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(
        email.body().contains(&url),
        "the link is visible in the body too"
    );
}

#[tokio::test]
async fn one_click_unsubscribes_and_the_next_run_skips_the_address() {
    let mailing = one_email_sent().await;
    let app = &mailing.app;
    let url = unsubscribe_url(&mailing.app.sent_raw_emails(&mailing.sender).await[0]);
    let path = url.trim_start_matches("http://127.0.0.1:8001");
    // Opening the link (a person, or a mail scanner) only shows the button.
    let page = app.send(app.request(Method::GET, path)).await;
    page.assert_status(200);
    assert!(page.text.contains("<form method=\"post\""));
    let listed = app.get("/api/user/suppressions", "alice").await;
    assert_eq!(
        listed.body["suppressions"],
        json!([]),
        "GET never unsubscribes"
    );
    // The mail provider's one-click POST; twice is the same as once.
    post_one_click(app, &url).await.assert_status(200);
    post_one_click(app, &url).await.assert_status(200);
    let listed = app.get("/api/user/suppressions", "alice").await;
    let suppressed = listed.body["suppressions"].as_array().unwrap();
    assert_eq!(suppressed.len(), 1);
    assert_eq!(suppressed[0]["address"], mailing.ada.as_str());
    assert_eq!(suppressed[0]["reason"], "unsubscribed");
    // The next run leaves the address out, saying why.
    let next = app
        .post(INITIATE, "alice", &json!({"message": {"body": "Again"}}))
        .await;
    next.assert_error(422, "nothing_deliverable");
    assert_eq!(next.body["error"]["details"][0]["problem"], "unsubscribed");
    // The unsubscribe is the recipient's: the sender cannot lift it, nor can another user
    // (who cannot even see it).
    app.delete(&format!("/api/user/suppressions/{}", mailing.ada), "alice")
        .await
        .assert_error(409, "suppression_owned_by_recipient");
    app.delete(
        &format!("/api/user/suppressions/{}", mailing.ada),
        "mallory",
    )
    .await
    .assert_error(404, "not_found");
    // The recipient's own page now offers to undo it, and undoing makes the address
    // reachable again.
    let page = app.send(app.request(Method::GET, path)).await;
    assert!(
        page.text.contains("name=\"action\" value=\"resubscribe\""),
        "{}",
        page.text
    );
    let undone = app
        .send(
            app.request(Method::POST, path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("action=resubscribe"),
        )
        .await;
    undone.assert_status(200);
    assert_eq!(suppressions(app).await, json!([]));
    app.post(INITIATE, "alice", &json!({"message": {"body": "Again"}}))
        .await
        .assert_status(202);
    // A tampered token undoes nothing.
    let tampered = format!("{}x", path.trim_end_matches('/'));
    post_one_click(app, &url).await.assert_status(200);
    app.send(
        app.request(Method::POST, &tampered)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("action=resubscribe"),
    )
    .await
    .assert_status(404);
    assert_eq!(suppressions(app).await[0]["reason"], "unsubscribed");
}

#[tokio::test]
async fn tampered_and_foreign_tokens_are_404_pages_and_change_nothing() {
    let mailing = one_email_sent().await;
    let app = &mailing.app;
    let url = unsubscribe_url(&mailing.app.sent_raw_emails(&mailing.sender).await[0]);
    let token = url.rsplit('/').next().unwrap().to_owned();
    let (payload, mac) = token.split_once('.').unwrap();
    let mut flipped = mac.as_bytes().to_vec();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let cases = [
        format!("{payload}.{}", String::from_utf8(flipped).unwrap()),
        // Any change of the payload (here its first character) breaks the MAC.
        format!(
            "{}{}.{mac}",
            if payload.starts_with('X') { "Y" } else { "X" },
            &payload[1..]
        ),
        "not-a-token".to_owned(),
        format!("{payload}."),
        String::new() + "x.y",
    ];
    for case in &cases {
        let path = format!("/api/user/unsubscribe/{case}");
        let page = app.send(app.request(Method::GET, &path)).await;
        assert_eq!(page.status, 404, "{case}");
        let posted = post_one_click(app, &path).await;
        assert_eq!(posted.status, 404, "{case}");
    }
    // A token of another stack (another signing key) is foreign here.
    let other = TestApp::spawn().await;
    let foreign = other
        .send(other.request(Method::GET, &format!("/api/user/unsubscribe/{token}")))
        .await;
    assert_eq!(foreign.status, 404);
    let listed = app.get("/api/user/suppressions", "alice").await;
    assert_eq!(listed.body["suppressions"], json!([]));
}

#[tokio::test]
async fn twenty_five_concurrent_runs_meet_the_per_minute_quota() {
    let mailing = one_email_sent().await;
    let app = &mailing.app;
    let attempts = (0..25).map(|i| async move {
        app.send(
            app.request(Method::POST, INITIATE)
                .bearer_auth(app.token("alice"))
                .header("idempotency-key", format!("quota-{i}"))
                .json(&json!({"message": {"body": "Hi"}})),
        )
        .await
    });
    let answers = futures::future::join_all(attempts).await;
    let accepted = answers.iter().filter(|a| a.status == 202).count();
    let limited: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    // One run was started before; a minute boundary may fall inside the burst (two windows).
    assert!(
        accepted <= 19,
        "at most 10 runs per minute: {accepted} accepted"
    );
    assert_eq!(accepted + limited.len(), 25, "every other answer is 429");
    for answer in limited {
        answer.assert_error(429, "run_quota_exceeded");
        let retry_after: u32 = answer.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after));
    }
}

#[tokio::test]
async fn an_unsubscribe_after_the_run_was_queued_stops_its_email() {
    let mailing = one_email_sent().await;
    let app = &mailing.app;
    let url = unsubscribe_url(&app.sent_raw_emails(&mailing.sender).await[0]);
    let queued = app
        .post(INITIATE, "alice", &json!({"message": {"body": "Second"}}))
        .await;
    queued.assert_status(202);
    // The person unsubscribes from the first email before the second goes out.
    post_one_click(app, &url).await.assert_status(200);
    app.drain_queue().await;
    assert_eq!(
        app.sent_raw_emails(&mailing.sender).await.len(),
        1,
        "nothing more was sent"
    );
    let run = app
        .get(
            &format!(
                "/api/user/orchestrator/runs/{}",
                queued.body["run_id"].as_str().unwrap()
            ),
            "alice",
        )
        .await;
    assert_eq!(run.body["communications"][0]["reason"], "suppressed");
}

/// An SES event as a configuration set's event destination publishes it (the documented
/// shape: `eventType`, `mail`, and the event's own object).
fn ses_event(
    kind: &str,
    message_id: &str,
    recipient: &str,
    detail: serde_json::Value,
) -> serde_json::Value {
    let mut event = json!({
        "eventType": kind,
        "mail": {
            "timestamp": "2026-11-26T04:00:00.000Z",
            "source": "sales@example.com",
            "sendingAccountId": "123456789012",
            "messageId": message_id,
            "destination": [recipient],
            "headersTruncated": false,
            "tags": {"ses:configuration-set": ["outreach"]}
        }
    });
    let field = match kind {
        "Bounce" => "bounce",
        "Complaint" => "complaint",
        "Delivery" => "delivery",
        _ => "reject",
    };
    event[field] = detail;
    event
}

fn bounce(kind: &str, sub_kind: &str, recipient: &str) -> serde_json::Value {
    json!({
        "bounceType": kind,
        "bounceSubType": sub_kind,
        "bouncedRecipients": [{"emailAddress": recipient, "action": "failed", "status": "5.1.1"}],
        "timestamp": "2026-11-26T04:00:01.000Z",
        "feedbackId": "0100feedback-000000"
    })
}

async fn run_of(app: &TestApp, run_id: &str) -> serde_json::Value {
    let run = app
        .get(&format!("/api/user/orchestrator/runs/{run_id}"), "alice")
        .await;
    run.assert_status(200);
    run.body
}

async fn suppressions(app: &TestApp) -> serde_json::Value {
    app.get("/api/user/suppressions", "alice").await.body["suppressions"].clone()
}

#[tokio::test]
async fn a_hard_bounce_marks_the_email_bounced_and_suppresses_the_address() {
    let mailing = one_email_sent().await;
    let app = &mailing.app;
    let ids = app.sent_message_ids(&mailing.sender).await;
    assert_eq!(ids.len(), 1);
    // SES answers in any case of the address; the suppression is kept lower-case.
    let shouted = mailing.ada.to_uppercase();
    app.publish_ses_event(&ses_event(
        "Bounce",
        &ids[0],
        &shouted,
        bounce("Permanent", "General", &shouted),
    ))
    .await;
    // An event about an email this service never sent is acknowledged and changes nothing.
    app.publish_ses_event(&ses_event(
        "Bounce",
        "not-ours",
        "x@example.com",
        bounce("Permanent", "General", "x@example.com"),
    ))
    .await;
    assert_eq!(app.drain_feedback().await, 2);
    let run = run_of(app, &mailing.run_id).await;
    assert_eq!(run["communications"][0]["status"], "bounced");
    assert_eq!(run["counts"]["sent"], 1);
    assert_eq!(run["counts"]["bounced"], 1);
    let listed = suppressions(app).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["address"], mailing.ada);
    assert_eq!(listed[0]["reason"], "bounced");
    // The next run leaves the address out. A bounce is the mailbox's answer, not the
    // person's choice: the user may lift it (e.g. the address was fixed), and the recipient's
    // link does not (only an unsubscribe is undone there).
    let next = app
        .post(INITIATE, "alice", &json!({"message": {"body": "Again"}}))
        .await;
    next.assert_error(422, "nothing_deliverable");
    assert_eq!(next.body["error"]["details"][0]["problem"], "bounced");
    app.delete(&format!("/api/user/suppressions/{}", mailing.ada), "alice")
        .await
        .assert_status(204);
    assert_eq!(suppressions(app).await, json!([]));
    app.post(INITIATE, "alice", &json!({"message": {"body": "Again"}}))
        .await
        .assert_status(202);
}

#[tokio::test]
async fn complaints_and_deliveries_count_once_however_often_they_arrive() {
    let mailing = one_email_sent().await;
    let app = &mailing.app;
    let id = app.sent_message_ids(&mailing.sender).await.remove(0);
    let delivery = ses_event(
        "Delivery",
        &id,
        &mailing.ada,
        json!({"timestamp": "2026-11-26T04:00:02.000Z", "processingTimeMillis": 1200,
               "recipients": [mailing.ada], "smtpResponse": "250 2.6.0 Message received"}),
    );
    let complaint = ses_event(
        "Complaint",
        &id,
        &mailing.ada,
        json!({"complainedRecipients": [{"emailAddress": mailing.ada}],
               "timestamp": "2026-11-26T05:00:00.000Z", "feedbackId": "0100complaint-000000",
               "complaintFeedbackType": "abuse"}),
    );
    // SNS delivers at least once: every event twice, the complaint before its delivery.
    for event in [&complaint, &delivery, &complaint, &delivery] {
        app.publish_ses_event(event).await;
    }
    assert_eq!(app.drain_feedback().await, 4);
    let run = run_of(app, &mailing.run_id).await;
    assert_eq!(run["communications"][0]["status"], "complained");
    assert_eq!(run["counts"]["delivered"], 1);
    assert_eq!(run["counts"]["complained"], 1);
    assert_eq!(run["counts"]["sent"], 1);
    let listed = suppressions(app).await;
    assert_eq!(listed[0]["reason"], "complained");
    app.delete(&format!("/api/user/suppressions/{}", mailing.ada), "alice")
        .await
        .assert_error(409, "suppression_owned_by_recipient");
    // Nor does the recipient's link undo a complaint (it came through the mailbox provider).
    let url = unsubscribe_url(&app.sent_raw_emails(&mailing.sender).await[0]);
    app.send(
        app.request(
            Method::POST,
            url.trim_start_matches("http://127.0.0.1:8001"),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body("action=resubscribe"),
    )
    .await
    .assert_status(200);
    assert_eq!(suppressions(app).await[0]["reason"], "complained");
}

#[tokio::test]
async fn a_transient_bounce_suppresses_nothing() {
    let mailing = one_email_sent().await;
    let app = &mailing.app;
    let id = app.sent_message_ids(&mailing.sender).await.remove(0);
    app.publish_ses_event(&ses_event(
        "Bounce",
        &id,
        &mailing.ada,
        bounce("Transient", "MailboxFull", &mailing.ada),
    ))
    .await;
    assert_eq!(app.drain_feedback().await, 1);
    let run = run_of(app, &mailing.run_id).await;
    assert_eq!(run["communications"][0]["status"], "sent");
    assert_eq!(run["counts"]["bounced"], 0);
    assert_eq!(suppressions(app).await, json!([]));
    app.post(INITIATE, "alice", &json!({"message": {"body": "Again"}}))
        .await
        .assert_status(202);
}

#[tokio::test]
async fn an_address_on_the_ses_account_suppression_list_is_suppressed_for_the_user() {
    // SES does not send to an address on the account's suppression list: it reports a
    // permanent bounce of subtype `OnAccountSuppressionList` instead.
    let mailing = one_email_sent().await;
    let app = &mailing.app;
    let id = app.sent_message_ids(&mailing.sender).await.remove(0);
    let mut on_list = bounce("Permanent", "OnAccountSuppressionList", &mailing.ada);
    on_list["bouncedRecipients"] = json!([{"emailAddress": mailing.ada}]);
    app.publish_ses_event(&ses_event("Bounce", &id, &mailing.ada, on_list))
        .await;
    app.drain_feedback().await;
    assert_eq!(suppressions(app).await[0]["reason"], "bounced");
    let run = run_of(app, &mailing.run_id).await;
    assert_eq!(run["communications"][0]["status"], "bounced");
}

/// A run from a sender whose daily cap is `cap`, to `targets` targets: `(app, sender, run_id)`.
async fn capped_run(cap: u32, targets: usize) -> (TestApp, String, String) {
    let app = TestApp::spawn().await;
    let domain = pipewise_tests::unique_domain();
    let sender = app
        .verified_email_account("alice", "mail", &domain, Some(cap))
        .await;
    for i in 0..targets {
        app.post(
            "/api/user/communication-targets",
            "alice",
            &json!({"name": format!("Person {i}"), "email": format!("p{i}@{domain}")}),
        )
        .await
        .assert_status(201);
    }
    let started = app
        .post(INITIATE, "alice", &json!({"message": {"body": "Hi"}}))
        .await;
    started.assert_status(202);
    let run_id = started.body["run_id"].as_str().unwrap().to_owned();
    (app, sender, run_id)
}

#[tokio::test]
async fn a_sender_over_its_daily_cap_sends_the_rest_the_next_day() {
    let (app, sender, run_id) = capped_run(3, 5).await;
    let clock = pipewise::clock::Clock::adjustable();
    let worker = app.worker_with_clock(clock.clone());
    app.drain_queue_with(&worker).await;
    assert_eq!(app.sent_raw_emails(&sender).await.len(), 3, "three today");
    let run = run_of(&app, &run_id).await;
    assert_eq!(run["status"], "running");
    assert_eq!(run["counts"]["sent"], 3);
    assert_eq!(run["counts"]["pending"], 2);
    assert_eq!(run["counts"]["scheduled"], 2);
    let scheduled: Vec<_> = run["communications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "scheduled")
        .collect();
    assert_eq!(scheduled.len(), 2);
    for communication in &scheduled {
        let at = communication["scheduled_for"].as_str().unwrap();
        assert!(at.ends_with("T00:00:00Z"), "the next UTC midnight: {at}");
    }
    // Nothing is released before the day turns.
    assert_eq!(worker.release_scheduled().await.unwrap(), 0);
    app.drain_queue_with(&worker).await;
    assert_eq!(app.sent_raw_emails(&sender).await.len(), 3);
    // The next day: the release tick puts them back on the queue and they go out.
    clock.advance(pipewise::clock::DAY_SECONDS);
    let tick = communications_worker::handle_worker_event(
        &worker,
        serde_json::from_value(
            json!({"detail-type": "Scheduled Event", "source": "pipewise.release-scheduled"}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(&tick).unwrap(),
        json!({"released": 2, "requeued": 0, "settled_unknown": 0, "out_of_time": false})
    );
    app.drain_queue_with(&worker).await;
    assert_eq!(
        app.sent_raw_emails(&sender).await.len(),
        5,
        "the other two the next day"
    );
    let run = run_of(&app, &run_id).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["counts"]["sent"], 5);
    assert_eq!(run["counts"]["scheduled"], 0);
    // A second tick releases nothing again.
    assert_eq!(worker.release_scheduled().await.unwrap(), 0);
}

#[tokio::test]
async fn ticks_that_overlap_release_the_same_mail_and_it_goes_once() {
    let (app, sender, run_id) = capped_run(3, 6).await;
    let clock = pipewise::clock::Clock::adjustable();
    let worker = app.worker_with_clock(clock.clone());
    app.drain_queue_with(&worker).await;
    assert_eq!(app.sent_raw_emails(&sender).await.len(), 3, "three today");
    clock.advance(pipewise::clock::DAY_SECONDS);
    // A slow tick still running when the next minute's starts: both find the same three due
    // (they stay `scheduled` until a worker claims them) and both enqueue them.
    let (first, second) = futures::join!(worker.tick(), worker.tick());
    assert_eq!(first.unwrap().released + second.unwrap().released, 6);
    app.drain_queue_with(&worker).await;
    assert_eq!(
        app.sent_raw_emails(&sender).await.len(),
        6,
        "each of the three went once"
    );
    let run = run_of(&app, &run_id).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["counts"]["sent"], 6);
}

#[tokio::test]
async fn cancelling_a_run_ends_its_scheduled_communications_at_once() {
    let (app, sender, run_id) = capped_run(1, 3).await;
    let clock = pipewise::clock::Clock::adjustable();
    let worker = app.worker_with_clock(clock.clone());
    app.drain_queue_with(&worker).await;
    assert_eq!(run_of(&app, &run_id).await["counts"]["scheduled"], 2);
    app.post(
        &format!("/api/user/orchestrator/runs/{run_id}/cancel"),
        "alice",
        &json!({}),
    )
    .await
    .assert_status(200);
    let run = run_of(&app, &run_id).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["counts"]["cancelled"], 2);
    assert_eq!(run["counts"]["scheduled"], 0);
    assert_eq!(run["counts"]["pending"], 0);
    // The next day nothing is released and nothing more is sent.
    clock.advance(pipewise::clock::DAY_SECONDS);
    assert_eq!(worker.release_scheduled().await.unwrap(), 0);
    assert_eq!(app.sent_raw_emails(&sender).await.len(), 1);
}

#[tokio::test]
async fn a_daily_cap_must_be_a_sane_number() {
    let app = TestApp::spawn().await;
    let sender = format!(
        "sales@t{}.example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    for bad in [json!(0), json!(10_001), json!("50")] {
        let answer = app
            .post(
                "/api/user/integrations/accounts",
                "alice",
                &json!({"account_id": "mail", "account_type": "email",
                        "configuration": {"from_address": sender, "daily_send_limit": bad}}),
            )
            .await;
        answer.assert_error(422, "validation_failed");
        assert_eq!(
            answer.body["error"]["details"][0]["field"],
            "configuration.daily_send_limit"
        );
    }
}

async fn subscribe(app: &TestApp, url: &str) {
    app.post(
        "/api/user/webhooks",
        "alice",
        &json!({"url": url, "events": ["communication.unsubscribed",
            "communication.complained", "communication.bounced"]}),
    )
    .await
    .assert_status(201);
}

/// The user's webhook hears of a recipient's unsubscribe, complaint and bounce, once each,
/// however often SNS delivers the event.
#[tokio::test]
async fn recipients_answers_reach_the_users_webhook_once_each() {
    use pipewise_tests::webhook_receiver::WebhookReceiver;
    let receiver = WebhookReceiver::start().await;

    // Ada unsubscribes through the link, then reports the email as spam (twice, as SNS may).
    let first = one_email_sent().await;
    subscribe(&first.app, &receiver.url).await;
    let raw = first.app.sent_raw_emails(&first.sender).await;
    first.app.unsubscribe_from(&RawEmail::parse(&raw[0])).await;
    let id = first.app.sent_message_ids(&first.sender).await[0].clone();
    let complaint = ses_event(
        "Complaint",
        &id,
        &first.ada,
        json!({"complainedRecipients": [{"emailAddress": first.ada}],
               "timestamp": "2026-11-26T05:00:00.000Z", "feedbackId": "0100complaint-000001",
               "complaintFeedbackType": "abuse"}),
    );
    first.app.publish_ses_event(&complaint).await;
    first.app.publish_ses_event(&complaint).await;
    first.app.drain_feedback().await;
    first.app.drain_webhooks().await;

    // Another sender's mail to Ada bounces for good (twice).
    let second = one_email_sent().await;
    subscribe(&second.app, &receiver.url).await;
    let id = second.app.sent_message_ids(&second.sender).await[0].clone();
    let hard = ses_event(
        "Bounce",
        &id,
        &second.ada,
        bounce("Permanent", "General", &second.ada),
    );
    second.app.publish_ses_event(&hard).await;
    second.app.publish_ses_event(&hard).await;
    second.app.drain_feedback().await;
    second.app.drain_webhooks().await;

    let mut types: Vec<String> = receiver
        .received()
        .iter()
        .map(|delivery| delivery.event_type())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "communication.bounced",
            "communication.complained",
            "communication.unsubscribed"
        ]
    );
    for delivery in receiver.received() {
        let data = &delivery.json()["data"];
        match delivery.event_type().as_str() {
            // An unsubscribe is the person's, not one email's: it names the target.
            "communication.unsubscribed" => {
                assert!(data["target_id"].is_string(), "{data}");
                assert_eq!(data["status"], "unsubscribed");
            }
            "communication.complained" => {
                assert_eq!(data["run_id"], first.run_id.as_str(), "{data}");
            }
            _ => assert_eq!(data["run_id"], second.run_id.as_str(), "{data}"),
        }
        assert_eq!(data["channel"], "email");
        let body = String::from_utf8_lossy(&delivery.body).to_string();
        assert!(!body.contains("ada@"), "no address in an event: {body}");
    }
}
