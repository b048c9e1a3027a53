//! What the request log may say: the route template (`/api/user/unsubscribe/{token}`), never
//! the path it was filled with. Paths carry unsubscribe tokens (base64 of the user, the target
//! and the address) and suppressed addresses; query strings carry anything.

use pipewise_tests::log_capture::LogCapture;
use pipewise_tests::{RawEmail, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

/// The `request finished` lines: `(method, route, status)` from each line's request span.
fn finished_requests(log: &str) -> Vec<(String, String, u64)> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "request finished")
        .map(|line| {
            (
                line["span"]["method"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                line["span"]["route"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                line["fields"]["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn request_logs_name_route_templates_never_tokens_or_addresses() {
    let logs = LogCapture::install();
    let app = TestApp::spawn().await;
    let domain = pipewise_tests::unique_domain();
    let sender = app
        .verified_email_account("alice", "mail", &domain, None)
        .await;
    let address = format!("ada.lovelace@{domain}");
    app.post(
        "/api/user/communication-targets",
        "alice",
        &json!({"name": "Ada", "email": address}),
    )
    .await
    .assert_status(201);
    app.post(
        "/api/user/orchestrator/initiate-communications",
        "alice",
        &json!({"message": {"subject": "Hello", "body": "Hi {{first_name}}"}}),
    )
    .await
    .assert_status(202);
    app.drain_queue().await;
    let raw = app.sent_raw_emails(&sender).await;
    assert_eq!(raw.len(), 1, "one email sent");
    let link = RawEmail::parse(&raw[0])
        .header("List-Unsubscribe")
        .expect("List-Unsubscribe");
    let token = link
        .trim_start_matches('<')
        .trim_end_matches('>')
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let (payload, mac) = token.split_once('.').expect("payload.mac");
    let unsubscribe = format!("/api/user/unsubscribe/{token}");

    // The public page and the one-click POST, each with the real token in the path.
    app.send(app.request(Method::GET, &unsubscribe))
        .await
        .assert_status(200);
    app.send(
        app.request(Method::POST, &unsubscribe)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click"),
    )
    .await
    .assert_status(200);
    // A query string is not logged either.
    app.send(app.request(Method::GET, &format!("{unsubscribe}?email={address}")))
        .await
        .assert_status(200);
    // The suppression routes: the address in the path of the lift.
    let listed = app.get("/api/user/suppressions", "alice").await;
    listed.assert_status(200);
    assert_eq!(listed.body["suppressions"][0]["address"], address.as_str());
    app.delete(&format!("/api/user/suppressions/{address}"), "alice")
        .await
        .assert_error(409, "suppression_owned_by_recipient");
    // A path no route matches, holding both.
    app.send(app.request(Method::GET, &format!("{unsubscribe}/{address}")))
        .await
        .assert_status(404);

    let log = logs.text();
    let encoded_address = address.replace('@', "%40");
    for line in log.lines() {
        for (what, secret) in [
            ("the unsubscribe token", token.as_str()),
            ("the token's payload", payload),
            ("the token's MAC", mac),
            ("the suppressed address", address.as_str()),
            (
                "the suppressed address, URL-encoded",
                encoded_address.as_str(),
            ),
        ] {
            assert!(!line.contains(secret), "{what} reached the log: {line}");
        }
        assert!(
            !line.contains("\"path\""),
            "a raw path field reached the log: {line}"
        );
    }
    let finished = finished_requests(&log);
    for (method, route, status) in [
        ("GET", "/api/user/unsubscribe/{token}", 200),
        ("POST", "/api/user/unsubscribe/{token}", 200),
        ("GET", "/api/user/suppressions", 200),
        ("DELETE", "/api/user/suppressions/{address}", 409),
        ("GET", "unmatched", 404),
    ] {
        assert!(
            finished
                .iter()
                .any(|(m, r, s)| m == method && r == route && *s == status),
            "no `request finished` line for {method} {route} ({status}): {finished:?}"
        );
    }
    // Every request line names a template or says it matched none.
    assert!(
        finished
            .iter()
            .all(|(_, route, _)| route == "unmatched" || route.starts_with("/api/user/")),
        "{finished:?}"
    );
}
