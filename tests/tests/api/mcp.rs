//! The MCP server (`POST /api/user/mcp`): an agent's client initializes, lists this user's tools
//! and calls every one of them through the same services and rules as the HTTP routes; refusals
//! are tool results with the API's code, protocol mistakes JSON-RPC errors; users never see each
//! other; no answer holds a credential (the plaintext audit reads every answer).

use pipewise::config::vars;
use pipewise_tests::fake_social::{BUSINESS_IG_ID, FakeSocial};
use pipewise_tests::mcp_client::{MCP_PATH, McpClient, PROTOCOL_VERSION};
use pipewise_tests::{RawEmail, TestApp, unique_domain};
use reqwest::Method;
use serde_json::{Value, json};

const FIXED_TOOLS: [&str; 7] = [
    "list_targets",
    "add_target",
    "list_accounts",
    "test_account",
    "start_outreach",
    "get_run",
    "cancel_run",
];

/// Alice with a verified SES email account `mail`; the sender.
async fn app_with_mailbox() -> (TestApp, String, String) {
    let app = TestApp::spawn().await;
    let domain = unique_domain();
    let sender = app
        .verified_email_account("alice", "mail", &domain, None)
        .await;
    (app, sender, domain)
}

fn names(tools: &[Value]) -> Vec<&str> {
    tools
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn an_agent_initializes_lists_and_calls_every_tool() {
    let (app, sender, domain) = app_with_mailbox().await;
    let agent = McpClient::new(&app, "alice");

    let initialized = agent.initialize().await;
    assert_eq!(initialized["protocolVersion"], PROTOCOL_VERSION);
    assert!(initialized["capabilities"]["tools"].is_object());
    assert_eq!(initialized["serverInfo"]["name"], "pipewise-user-api");

    let tools = agent.tools().await;
    let mut expected: Vec<&str> = FIXED_TOOLS.to_vec();
    expected.push("send_email");
    assert_eq!(
        names(&tools),
        expected,
        "no X or Instagram account: no DM tools"
    );
    for tool in &tools {
        let name = &tool["name"];
        assert!(tool["title"].is_string(), "{name}");
        assert!(
            tool["description"].as_str().is_some_and(|d| d.len() > 20),
            "{name}"
        );
        assert_eq!(tool["inputSchema"]["type"], "object", "{name}");
        assert_eq!(tool["outputSchema"]["type"], "object", "{name}");
        for hint in [
            "readOnlyHint",
            "destructiveHint",
            "idempotentHint",
            "openWorldHint",
        ] {
            assert!(tool["annotations"][hint].is_boolean(), "{name} {hint}");
        }
    }
    let send_email = tools
        .iter()
        .find(|tool| tool["name"] == "send_email")
        .unwrap();
    assert_eq!(
        send_email["inputSchema"]["properties"]["account_id"]["enum"],
        json!(["mail"])
    );
    let get_run = tools.iter().find(|tool| tool["name"] == "get_run").unwrap();
    assert_eq!(get_run["annotations"]["readOnlyHint"], true);

    // The same tools as the HTTP route says the accounts back.
    let http_tools = app.get("/api/user/integrations/tools", "alice").await;
    assert_eq!(http_tools.body["tools"][0]["name"], "send_email");

    let ada = agent
        .call(
            "add_target",
            json!({"name": "Ada Lovelace", "email": format!("ada@{domain}")}),
        )
        .await;
    let ada_id = ada["id"].as_str().unwrap().to_owned();
    let page = agent.call("list_targets", json!({"limit": 10})).await;
    assert_eq!(page["targets"][0]["id"], ada_id.as_str());

    let accounts = agent.call("list_accounts", json!({})).await;
    assert_eq!(
        accounts,
        json!({"accounts": [{"account_id": "mail", "account_type": "email", "provider": null,
            "label": null, "connected": true, "status_reason": null, "tools": ["send_email"]}]}),
        "ids and statuses, no configuration"
    );
    let tested = agent
        .call("test_account", json!({"account_id": "mail"}))
        .await;
    assert_eq!(tested["connected"], true);

    let sent = agent
        .call(
            "send_email",
            json!({"account_id": "mail", "target_id": ada_id, "subject": "Hello {{first_name}}",
                "body": "A note from the agent.", "idempotency_key": "agent-send-1"}),
        )
        .await;
    assert_eq!(sent["status"], "queued");
    assert_eq!(sent["channel"], "email");
    let run_id = sent["run_id"].as_str().unwrap().to_owned();
    // The same key and arguments: the same communication, nothing sent twice.
    let again = agent
        .call(
            "send_email",
            json!({"account_id": "mail", "target_id": ada_id, "subject": "Hello {{first_name}}",
                "body": "A note from the agent.", "idempotency_key": "agent-send-1"}),
        )
        .await;
    assert_eq!(again["communication_id"], sent["communication_id"]);
    app.drain_queue().await;
    let emails = app.sent_emails(&sender).await;
    assert_eq!(emails.len(), 1, "sent once");
    assert_eq!(emails[0].0, format!("ada@{domain}"));
    assert_eq!(emails[0].1, "Hello Ada");
    let raw = app.sent_raw_emails(&sender).await;
    assert!(
        RawEmail::parse(&raw[0])
            .header("List-Unsubscribe")
            .is_some(),
        "the unsubscribe link an agent's mail carries too"
    );
    let run = agent.call("get_run", json!({"run_id": run_id})).await;
    assert_eq!(run["communications"][0]["status"], "sent");
    assert_eq!(
        run["communications"][0]["communication_id"],
        sent["communication_id"]
    );

    let grace = agent
        .call(
            "add_target",
            json!({"name": "Grace Hopper", "email": format!("grace@{domain}")}),
        )
        .await;
    let outreach = json!({"target_ids": [grace["id"]], "message": {"subject": "Hi", "body": "Hello {{name}}"},
        "idempotency_key": "agent-run-1"});
    let started = agent.call("start_outreach", outreach.clone()).await;
    assert_eq!(started["queued"], 1);
    let repeated = agent.call("start_outreach", outreach).await;
    assert_eq!(repeated["run_id"], started["run_id"], "idempotent");
    let cancelled = agent
        .call("cancel_run", json!({"run_id": started["run_id"]}))
        .await;
    assert_eq!(cancelled["cancel_requested"], true);
    app.drain_queue().await;
    assert_eq!(
        app.sent_emails(&sender).await.len(),
        1,
        "the cancelled run sent nothing"
    );
}

#[tokio::test]
async fn users_see_only_their_own_tools_targets_and_runs() {
    let (app, _sender, domain) = app_with_mailbox().await;
    let alice = McpClient::new(&app, "alice");
    let bob = McpClient::new(&app, "bob");
    let ada = alice
        .call(
            "add_target",
            json!({"name": "Ada", "email": format!("ada@{domain}")}),
        )
        .await;
    let sent = alice
        .call(
            "send_email",
            json!({"account_id": "mail", "target_id": ada["id"], "body": "Hi", "idempotency_key": "k1"}),
        )
        .await;

    assert_eq!(bob.tool_names().await, FIXED_TOOLS, "bob has no account");
    assert_eq!(
        bob.call("list_targets", json!({})).await["targets"],
        json!([])
    );
    assert_eq!(
        bob.call("list_accounts", json!({})).await["accounts"],
        json!([])
    );
    let error = bob
        .refused("get_run", json!({"run_id": sent["run_id"]}))
        .await;
    assert_eq!(error["code"], "not_found");
    let error = bob
        .refused("cancel_run", json!({"run_id": sent["run_id"]}))
        .await;
    assert_eq!(error["code"], "not_found");
    let error = bob
        .refused("test_account", json!({"account_id": "mail"}))
        .await;
    assert_eq!(error["code"], "not_found");
    // Alice's send tool is not bob's: for him it does not exist.
    let answer = bob
        .call_raw(
            "send_email",
            json!({"account_id": "mail", "target_id": ada["id"], "body": "Hi", "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert_eq!(answer["error"]["data"]["code"], "unknown_tool");
    // Bob's key "k1" is his own: it does not answer alice's send.
    let bob_target = bob
        .call(
            "add_target",
            json!({"name": "Bob's", "email": format!("b@{domain}")}),
        )
        .await;
    let error = bob
        .refused(
            "start_outreach",
            json!({"target_ids": [bob_target["id"]], "message": {"body": "Hi"}, "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!(error["code"], "nothing_deliverable", "{error}");
}

#[tokio::test]
async fn an_unsubscribed_address_is_refused_to_an_agent() {
    let (app, sender, domain) = app_with_mailbox().await;
    let agent = McpClient::new(&app, "alice");
    let ada = agent
        .call(
            "add_target",
            json!({"name": "Ada", "email": format!("ada@{domain}")}),
        )
        .await;
    let send = |key: &str| json!({"account_id": "mail", "target_id": ada["id"], "body": "Hi", "idempotency_key": key});
    agent.call("send_email", send("first")).await;
    app.drain_queue().await;
    let raw = app.sent_raw_emails(&sender).await;
    app.unsubscribe_from(&RawEmail::parse(&raw[0])).await;

    let error = agent.refused("send_email", send("second")).await;
    assert_eq!(error["code"], "nothing_deliverable", "{error}");
    assert!(
        error["details"][0]["problem"]
            .as_str()
            .is_some_and(|problem| problem.contains("unsubscribed")),
        "{error}"
    );
    app.drain_queue().await;
    assert_eq!(app.sent_emails(&sender).await.len(), 1, "nothing more sent");
}

#[tokio::test]
async fn protocol_mistakes_are_json_rpc_errors_and_refusals_are_tool_results() {
    let (app, _sender, _domain) = app_with_mailbox().await;
    let agent = McpClient::new(&app, "alice");

    let unknown = agent.call_raw("delete_everything", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    assert_eq!(unknown["error"]["data"]["code"], "unknown_tool");
    assert!(
        !unknown.to_string().contains("delete_everything"),
        "never echoed"
    );

    let missing = agent.call_raw("get_run", json!({})).await;
    assert_eq!(
        missing["error"]["data"]["code"], "invalid_arguments",
        "{missing}"
    );
    assert_eq!(missing["error"]["data"]["details"][0]["field"], "run_id");
    let wrong = agent
        .call_raw("list_targets", json!({"limit": "CANARY-4711"}))
        .await;
    assert_eq!(
        wrong["error"]["data"]["code"], "invalid_arguments",
        "{wrong}"
    );
    assert!(!wrong.to_string().contains("CANARY-4711"), "{wrong}");
    let no_key = agent
        .call_raw("start_outreach", json!({"message": {"body": "Hi"}}))
        .await;
    assert_eq!(
        no_key["error"]["data"]["details"][0]["field"],
        "idempotency_key"
    );

    // A value the service refuses is the tool's result, with the API's code and no echo.
    let refused = agent
        .refused(
            "add_target",
            json!({"name": "X", "email": "CANARY-4712-not-an-email"}),
        )
        .await;
    assert_eq!(refused["code"], "validation_failed", "{refused}");
    assert!(!refused.to_string().contains("CANARY-4712"), "{refused}");

    // Not JSON-RPC at all: the transport's 4xx, never a 5xx.
    let garbage = agent.post(&json!({"hello": "world"})).await;
    assert!(garbage.status.is_client_error(), "{}", garbage.text);
}

#[tokio::test]
async fn without_a_token_the_answer_points_at_where_to_sign_in() {
    let app = TestApp::spawn().await;
    let anonymous = app
        .send(
            app.request(Method::POST, MCP_PATH)
                .header("accept", "application/json, text/event-stream")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})),
        )
        .await;
    anonymous.assert_error(401, "unauthorized");
    let challenge = anonymous.headers["www-authenticate"].to_str().unwrap();
    let metadata_path = "/.well-known/oauth-protected-resource/api/user/mcp";
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"http://127.0.0.1:8001{metadata_path}\"")
    );
    let forged = app
        .send(
            app.request(Method::POST, MCP_PATH)
                .bearer_auth("not.a.token")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})),
        )
        .await;
    forged.assert_error(401, "unauthorized");
    assert!(
        forged.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("resource_metadata=")
    );

    let metadata = app.send(app.request(Method::GET, metadata_path)).await;
    metadata.assert_status(200);
    assert_eq!(
        metadata.body["resource"],
        "http://127.0.0.1:8001/api/user/mcp"
    );
    assert_eq!(
        metadata.body["authorization_servers"][0],
        app.environment[vars::JWT_ISSUER].as_str()
    );
    assert_eq!(metadata.body["bearer_methods_supported"], json!(["header"]));

    let stream = app
        .send(
            app.request(Method::GET, MCP_PATH)
                .bearer_auth(app.token("alice")),
        )
        .await;
    stream.assert_error(405, "event_stream_not_offered");
    assert_eq!(stream.headers["allow"], "POST");
}

#[tokio::test]
async fn a_dm_tool_goes_away_when_its_account_needs_reconnecting() {
    let (app, fake) = FakeSocial::with_app().await;
    // An expired token whose grant X has revoked: the first send finds out.
    fake.x_tokens("x-access-0", "x-refresh-0");
    app.post(
        "/api/user/integrations/accounts",
        "alice",
        &json!({"account_id": "x-main", "account_type": "social", "provider": "x",
            "label": "Ada on X", "expires_at": "2020-01-01T00:00:00Z",
            "configuration": {"access_token": "x-access-expired", "refresh_token": "x-refresh-0"}}),
    )
    .await
    .assert_status(201);
    let agent = McpClient::new(&app, "alice");
    let tools = agent.tools().await;
    let dm = tools
        .iter()
        .find(|tool| tool["name"] == "send_x_dm")
        .expect("send_x_dm");
    assert!(
        dm["description"]
            .as_str()
            .unwrap()
            .contains("`x-main` (Ada on X)")
    );
    assert!(!names(&tools).contains(&"send_email"));

    let grace = agent
        .call(
            "add_target",
            json!({"name": "Grace", "twitter_username": "grace"}),
        )
        .await;
    fake.revoke_x_grant();
    let sent = agent
        .call(
            "send_x_dm",
            json!({"account_id": "x-main", "target_id": grace["id"], "text": "Hi {{first_name}}",
                "idempotency_key": "dm-1"}),
        )
        .await;
    assert_eq!(sent["channel"], "twitter");
    app.drain_queue().await;
    let run = agent
        .call("get_run", json!({"run_id": sent["run_id"]}))
        .await;
    assert_eq!(run["communications"][0]["reason"], "reauth_required");

    assert_eq!(
        agent.tool_names().await,
        FIXED_TOOLS,
        "no DM tool for a dead grant"
    );
    let accounts = agent.call("list_accounts", json!({})).await;
    assert_eq!(accounts["accounts"][0]["status_reason"], "reauth_required");
    assert_eq!(accounts["accounts"][0]["tools"], json!([]));
}

#[tokio::test]
async fn an_agent_replies_on_instagram_only_inside_an_open_conversation() {
    let (app, fake) = FakeSocial::with_app().await;
    app.post(
        "/api/user/integrations/accounts",
        "alice",
        &json!({"account_id": "ig", "account_type": "social", "provider": "instagram",
            "label": "Shop", "configuration": {"access_token": "ig-token", "ig_user_id": BUSINESS_IG_ID}}),
    )
    .await
    .assert_status(201);
    // One person wrote two hours ago; another last wrote three days ago (window closed).
    fake.instagram_conversation("recent.fan", "igsid-recent", 2 * 3600);
    fake.instagram_conversation("old.fan", "igsid-old", 3 * 24 * 3600);
    let agent = McpClient::new(&app, "alice");
    let tools = agent.tools().await;
    let reply = tools
        .iter()
        .find(|tool| tool["name"] == "send_instagram_reply")
        .expect("send_instagram_reply");
    assert_eq!(
        reply["inputSchema"]["properties"]["account_id"]["enum"],
        json!(["ig"])
    );
    assert!(!names(&tools).contains(&"send_x_dm"));

    let mut sent = Vec::new();
    for (handle, key) in [("recent.fan", "ig-1"), ("old.fan", "ig-2")] {
        let target = agent
            .call(
                "add_target",
                json!({"name": handle, "instagram_username": handle}),
            )
            .await;
        let answer = agent
            .call(
                "send_instagram_reply",
                json!({"account_id": "ig", "target_id": target["id"], "text": "Thanks!",
                    "idempotency_key": key}),
            )
            .await;
        assert_eq!(answer["channel"], "instagram");
        sent.push(answer);
    }
    app.drain_queue().await;
    let delivered = fake.sent();
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(
        (delivered[0].platform, delivered[0].recipient.as_str()),
        ("instagram", "igsid-recent")
    );
    assert_eq!(delivered[0].text, "Thanks!");
    let open = agent
        .call("get_run", json!({"run_id": sent[0]["run_id"]}))
        .await;
    assert_eq!(open["communications"][0]["status"], "sent");
    let closed = agent
        .call("get_run", json!({"run_id": sent[1]["run_id"]}))
        .await;
    assert_eq!(closed["communications"][0]["status"], "failed");
    assert_eq!(
        closed["communications"][0]["reason"],
        "instagram_window_closed"
    );
}
