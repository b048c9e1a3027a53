//! Business metrics (issue 25, item 6): what the worker, the token refresh and the reply poller
//! count reaches CloudWatch as embedded metric format lines, one per event, with the dimensions
//! that say what was counted.

use pipewise_tests::fake_social::FakeSocial;
use pipewise_tests::{TestApp, unique_domain};
use serde_json::{Value, json};

const INITIATE: &str = "/api/user/orchestrator/initiate-communications";

fn counted(lines: &[Value], name: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|line| line[name] == 1)
        .cloned()
        .collect()
}

#[tokio::test]
async fn sends_failures_and_dead_grants_are_counted_as_embedded_metrics() {
    pipewise::metrics::start_recording();
    let app = TestApp::spawn().await;
    let domain = unique_domain();
    app.verified_email_account("alice", "mail", &domain, None)
        .await;
    app.post(
        "/api/user/communication-targets",
        "alice",
        &json!({"name": "Ada", "email": format!("ada@{domain}")}),
    )
    .await
    .assert_status(201);
    app.post(INITIATE, "alice", &json!({"message": {"body": "Hi"}}))
        .await
        .assert_status(202);
    app.drain_queue().await;
    let lines = pipewise::metrics::recorded();
    let sent = counted(&lines, "Sent");
    assert_eq!(sent.len(), 1, "{lines:?}");
    assert_eq!(sent[0]["Channel"], "email");
    assert_eq!(
        sent[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "PipeWise"
    );
    assert_eq!(
        sent[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0],
        json!({"Name": "Sent", "Unit": "Count"})
    );
    assert!(sent[0]["_aws"]["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);

    // An X grant revoked at X: the refresh finds out, the message fails.
    let (social, fake) = FakeSocial::with_app().await;
    fake.x_tokens("x-access-0", "x-refresh-0");
    social
        .post(
            "/api/user/integrations/accounts",
            "bob",
            &json!({"account_id": "x-main", "account_type": "social", "provider": "x",
                "expires_at": "2020-01-01T00:00:00Z",
                "configuration": {"access_token": "x-old", "refresh_token": "x-refresh-0"}}),
        )
        .await
        .assert_status(201);
    social
        .post(
            "/api/user/communication-targets",
            "bob",
            &json!({"name": "Grace", "twitter_username": "grace"}),
        )
        .await
        .assert_status(201);
    fake.revoke_x_grant();
    social
        .post(INITIATE, "bob", &json!({"message": {"body": "Hi"}}))
        .await
        .assert_status(202);
    social.drain_queue().await;
    let lines = pipewise::metrics::recorded();
    let reauth = counted(&lines, "ReauthRequired");
    assert_eq!(reauth.len(), 1, "{lines:?}");
    assert_eq!(reauth[0]["Provider"], "x");
    let failed = counted(&lines, "Failed");
    assert_eq!(failed.len(), 1, "{lines:?}");
    assert_eq!(
        (&failed[0]["Channel"], &failed[0]["Reason"]),
        (&json!("twitter"), &json!("reauth_required"))
    );
    assert!(
        lines
            .iter()
            .all(|line| !line.to_string().contains("x-refresh-0")),
        "no secret in a metric"
    );
}
