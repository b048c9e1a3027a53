//! Faults that cost nothing: every route of the template, every AWS call each route makes, every
//! way AWS fails such a call. The cases are generated: a clean run of each route's scenario
//! through the fault proxy records the operations it calls, and each operation is then failed
//! with each fault that AWS can answer it with. A new route (no scenario here) fails the test;
//! a new AWS call in a route is covered on the next run without a change here.
//!
//! For each case: the answer is the clean answer or a 503 with `Retry-After` and the API's error
//! shape (never a 500, never the SDK's text); a failed request leaves the user's stored state as
//! it was (only initiate, and an MCP send tool that is one, may leave a run to be finished, by the
//! retry with its idempotency key); an MCP tool's answer is read as the HTTP answer of the same
//! outcome (its refusal's code, `service_unavailable` as a 503);
//! the same request once the fault is gone answers as the clean run did, and the user's stored
//! state is then the clean run's.

use std::collections::BTreeMap;

use pipewise_local::template::Template;
use pipewise_tests::fault_proxy::{Fault, FaultProxy, Persistence, cases_for, occurrences};
use pipewise_tests::mcp_client::{MCP_PATH, PROTOCOL_VERSION};
use pipewise_tests::{TestApp, TestResponse};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ACCOUNTS: &str = "/api/user/integrations/accounts";
const TARGETS: &str = "/api/user/communication-targets";
const RUNS: &str = "/api/user/orchestrator/runs";
const INITIATE: &str = "/api/user/orchestrator/initiate-communications";

/// One request of a scenario.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    /// The one-click form body of an unsubscribe POST.
    form: bool,
    /// A CSV body (the targets import).
    csv: Option<&'static str>,
    scope: Option<&'static str>,
    idempotency_key: Option<String>,
    public: bool,
    /// A JSON-RPC message to the MCP endpoint: its answer is read as the tool's outcome.
    mcp: bool,
    /// What the clean run answers when that is not a success (the MCP endpoint's GET: 405).
    clean_status: Option<u16>,
}

impl Call {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            body: None,
            form: false,
            csv: None,
            scope: None,
            idempotency_key: None,
            public: false,
            mcp: false,
            clean_status: None,
        }
    }

    /// A `tools/call` of the MCP endpoint.
    fn mcp_tool(name: &str, arguments: Value) -> Self {
        let mut call = Self::new(Method::POST, MCP_PATH).json(json!({"jsonrpc": "2.0", "id": 1,
            "method": "tools/call", "params": {"name": name, "arguments": arguments}}));
        call.mcp = true;
        call
    }

    fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

pub(crate) async fn send(app: &TestApp, user: &str, call: &Call) -> TestResponse {
    let mut request = app.request(call.method.clone(), &call.path);
    if !call.public {
        request = request.bearer_auth(match call.scope {
            Some(scope) => app.token_with_scope(user, scope),
            None => app.token(user),
        });
    }
    if let Some(key) = &call.idempotency_key {
        request = request.header("idempotency-key", key);
    }
    if let Some(body) = &call.body {
        request = request.json(body);
    }
    if call.form {
        request = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click");
    }
    if let Some(csv) = call.csv {
        request = request.header("content-type", "text/csv").body(csv);
    }
    if call.mcp {
        request = request
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL_VERSION);
        return tool_outcome(app.send(request).await);
    }
    app.send(request).await
}

/// An MCP answer as the HTTP answer of the same outcome, so the matrix judges both alike: a
/// tool's refusal or a JSON-RPC error carries the API's code, and a dependency's failure is
/// `service_unavailable` (503) there; the transport's own statuses stay.
fn tool_outcome(mut answer: TestResponse) -> TestResponse {
    if answer.status != 200 {
        return answer;
    }
    let code = if answer.body["result"]["isError"] == true {
        answer.body["result"]["structuredContent"]["error"]["code"].clone()
    } else if answer.body["error"].is_object() {
        answer.body["error"]["data"]["code"].clone()
    } else {
        return answer;
    };
    answer.status = match code.as_str() {
        Some("service_unavailable") => StatusCode::SERVICE_UNAVAILABLE,
        Some("idempotency_key_in_progress" | "idempotency_key_reused") => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    answer.body = json!({"error": {"code": code}});
    answer
}

const SESSIONS: &str = "/api/user/integrations/connect-sessions";

fn connect_session() -> Value {
    json!({"provider": "x", "return_url": "http://localhost:3000/settings"})
}

fn social_account(id: &str) -> Value {
    json!({"account_id": id, "account_type": "social", "provider": "twitter",
           "configuration": {"handle": "pipewise", "access_token": format!("canary-fault-{id}")}})
}

const WEBHOOKS: &str = "/api/user/webhooks";

/// An endpoint on loopback (the stack's dev parameters admit it); nothing listens there, and
/// no scenario delivers.
fn webhook_body() -> Value {
    json!({"url": "http://127.0.0.1:9/hook", "events": ["communication.sent"]})
}

async fn webhook_endpoint(app: &TestApp, user: &str) -> String {
    let created = app.post(WEBHOOKS, user, &webhook_body()).await;
    created.assert_status(201);
    created.body["id"].as_str().unwrap().to_owned()
}

/// A verified sender of its own domain, an email account on it and one target; returns the
/// target's address.
async fn mailing_setup(app: &TestApp, user: &str) -> (String, String) {
    let domain = format!("{user}.example.com");
    let sender = format!("sales@{domain}");
    app.post(
        ACCOUNTS,
        user,
        &json!({"account_id": "mail", "account_type": "email",
                                      "configuration": {"from_address": sender}}),
    )
    .await
    .assert_status(201);
    app.sender_verified(user, "mail").await;
    let ada = format!("ada@{domain}");
    app.post(TARGETS, user, &json!({"name": "Ada", "email": ada}))
        .await
        .assert_status(201);
    (sender, ada)
}

async fn started_run(app: &TestApp, user: &str) -> String {
    mailing_setup(app, user).await;
    let started = app
        .post(
            INITIATE,
            user,
            &json!({"message": {"body": "Hi {{first_name}}"}}),
        )
        .await;
    started.assert_status(202);
    started.body["run_id"].as_str().unwrap().to_owned()
}

/// The path of the unsubscribe link an email to the user's one target carries, made with the
/// stack's own signing key (sending the email would only cost time here).
async fn unsubscribe_path(app: &TestApp, user: &str) -> String {
    let (_, ada) = mailing_setup(app, user).await;
    let targets = app.get(TARGETS, user).await;
    let target_id = targets.body["targets"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tokens = pipewise::communications::unsubscribe::UnsubscribeTokens::from_source(
        &pipewise::config::ConfigSource::from_map(&app.environment),
        &app.sdk,
    );
    let token = tokens
        .token(&pipewise::communications::unsubscribe::Unsubscription {
            user_id: pipewise::auth::UserId::from_verified_sub(user.to_owned()),
            target_id,
            address: ada,
        })
        .await
        .expect("the signing key");
    format!("/api/user/unsubscribe/{token}")
}

/// Prepares `user`'s state for `route` on the direct app and returns the call to make. Every
/// route of the template needs an arm here.
pub(crate) async fn scenario(route: &str, app: &TestApp, user: &str) -> Call {
    match route {
        "GET /api/user/health" => Call::new(Method::GET, "/api/user/health"),
        "GET /api/user/integrations/accounts" => {
            app.post(ACCOUNTS, user, &social_account("x-main"))
                .await
                .assert_status(201);
            Call::new(Method::GET, ACCOUNTS)
        }
        "POST /api/user/integrations/accounts" => {
            Call::new(Method::POST, ACCOUNTS).json(social_account("x-main"))
        }
        "GET /api/user/integrations/accounts/{account_id}" => {
            app.post(ACCOUNTS, user, &social_account("x-main"))
                .await
                .assert_status(201);
            Call::new(Method::GET, format!("{ACCOUNTS}/x-main"))
        }
        "DELETE /api/user/integrations/accounts/{account_id}" => {
            app.post(ACCOUNTS, user, &social_account("x-main"))
                .await
                .assert_status(201);
            Call::new(Method::DELETE, format!("{ACCOUNTS}/x-main"))
        }
        "GET /api/user/integrations/accounts/{account_id}/secrets" => {
            app.post(ACCOUNTS, user, &social_account("x-main"))
                .await
                .assert_status(201);
            let mut call = Call::new(Method::GET, format!("{ACCOUNTS}/x-main/secrets"));
            call.scope = Some("integrations:secrets:read");
            call
        }
        "GET /api/user/integrations/tools" => {
            app.post(ACCOUNTS, user, &social_account("x-main"))
                .await
                .assert_status(201);
            Call::new(Method::GET, "/api/user/integrations/tools")
        }
        "GET /api/user/communication-targets" => {
            app.post(
                TARGETS,
                user,
                &json!({"name": "Ada", "email": "ada@example.com"}),
            )
            .await
            .assert_status(201);
            Call::new(Method::GET, TARGETS)
        }
        "POST /api/user/communication-targets" => Call::new(Method::POST, TARGETS)
            .json(json!({"name": "Ada", "email": "ada@example.com", "twitter_username": "ada"})),
        "POST /api/user/communication-targets/batch" => {
            Call::new(Method::POST, format!("{TARGETS}/batch")).json(json!({"targets": [
                {"name": "Ada", "email": "ada@example.com"},
                {"name": "Grace", "email": "grace@example.com"},
            ]}))
        }
        "POST /api/user/communication-targets/import" => {
            let mut call = Call::new(Method::POST, format!("{TARGETS}/import"));
            call.csv = Some(
                "name,email,company\nAda,ada@example.com,Engines\nGrace,grace@example.com,\nAnon,,\n",
            );
            call
        }
        "PATCH /api/user/communication-targets/{target_id}" => {
            let created = app
                .post(
                    TARGETS,
                    user,
                    &json!({"name": "Ada", "email": "ada@example.com"}),
                )
                .await;
            let id = created.body["id"].as_str().unwrap();
            Call::new(Method::PATCH, format!("{TARGETS}/{id}"))
                .json(json!({"email": "lovelace@example.com"}))
        }
        "DELETE /api/user/communication-targets/{target_id}" => {
            let created = app
                .post(
                    TARGETS,
                    user,
                    &json!({"name": "Ada", "email": "ada@example.com"}),
                )
                .await;
            let id = created.body["id"].as_str().unwrap();
            Call::new(Method::DELETE, format!("{TARGETS}/{id}"))
        }
        "GET /api/user/unsubscribe/{token}" => {
            let mut call = Call::new(Method::GET, unsubscribe_path(app, user).await);
            call.public = true;
            call
        }
        "POST /api/user/unsubscribe/{token}" => {
            let mut call = Call::new(Method::POST, unsubscribe_path(app, user).await);
            call.public = true;
            call.form = true;
            call
        }
        "GET /api/user/suppressions" => {
            let path = unsubscribe_path(app, user).await;
            let mut one_click = Call::new(Method::POST, path);
            (one_click.public, one_click.form) = (true, true);
            send(app, user, &one_click).await.assert_status(200);
            Call::new(Method::GET, "/api/user/suppressions")
        }
        "DELETE /api/user/suppressions/{address}" => {
            // A bounce: the one suppression the user may lift (an unsubscribe is the
            // recipient's).
            let address = format!("ada@{user}.example.com");
            app.dynamodb()
                .put_item()
                .table_name(app.resource("TargetsTable"))
                .item(
                    "user_id",
                    aws_sdk_dynamodb::types::AttributeValue::S(user.to_owned()),
                )
                .item(
                    "sk",
                    aws_sdk_dynamodb::types::AttributeValue::S(format!("S#{address}")),
                )
                .item(
                    "address",
                    aws_sdk_dynamodb::types::AttributeValue::S(address),
                )
                .item(
                    "reason",
                    aws_sdk_dynamodb::types::AttributeValue::S("bounced".into()),
                )
                .item(
                    "suppressed_at",
                    aws_sdk_dynamodb::types::AttributeValue::S("2026-12-01T00:00:00Z".into()),
                )
                .send()
                .await
                .expect("a bounce");
            Call::new(
                Method::DELETE,
                format!("/api/user/suppressions/ada@{user}.example.com"),
            )
        }
        "POST /api/user/orchestrator/initiate-communications" => {
            mailing_setup(app, user).await;
            let mut call = Call::new(Method::POST, INITIATE)
                .json(json!({"message": {"subject": "Hi", "body": "Hi {{first_name}}"}}));
            call.idempotency_key = Some(format!("{user}-run"));
            call
        }
        "POST /api/user/orchestrator/preview" => {
            mailing_setup(app, user).await;
            Call::new(Method::POST, "/api/user/orchestrator/preview")
                .json(json!({"message": {"subject": "Hi", "body": "Hi {{first_name}}"}}))
        }
        "GET /api/user/orchestrator/runs" => {
            started_run(app, user).await;
            Call::new(Method::GET, RUNS)
        }
        "GET /api/user/orchestrator/runs/{run_id}" => {
            let run_id = started_run(app, user).await;
            Call::new(Method::GET, format!("{RUNS}/{run_id}"))
        }
        "POST /api/user/orchestrator/runs/{run_id}/cancel" => {
            let run_id = started_run(app, user).await;
            Call::new(Method::POST, format!("{RUNS}/{run_id}/cancel"))
        }
        "POST /api/user/integrations/accounts/{account_id}/test" => {
            mailing_setup(app, user).await;
            Call::new(Method::POST, format!("{ACCOUNTS}/mail/test")).json(json!({}))
        }
        "POST /api/user/integrations/connect-sessions" => {
            Call::new(Method::POST, SESSIONS).json(connect_session())
        }
        "GET /api/user/integrations/connect-sessions/{session_id}" => {
            let started = app.post(SESSIONS, user, &connect_session()).await;
            started.assert_status(201);
            let id = started.body["session_id"].as_str().unwrap();
            Call::new(Method::GET, format!("{SESSIONS}/{id}"))
        }
        "GET /api/user/integrations/oauth/callback" => {
            // The user refused at the provider: the whole callback runs, and no provider (which
            // this stack cannot reach) is asked anything.
            let started = app.post(SESSIONS, user, &connect_session()).await;
            started.assert_status(201);
            let authorize = url::Url::parse(started.body["authorize_url"].as_str().unwrap())
                .expect("authorize URL");
            let state = authorize
                .query_pairs()
                .find(|(name, _)| name == "state")
                .map(|(_, value)| value.into_owned())
                .expect("a state");
            let mut call = Call::new(
                Method::GET,
                format!("/api/user/integrations/oauth/callback?error=access_denied&state={state}"),
            );
            call.public = true;
            call
        }
        "POST /api/user/mcp" => {
            mailing_setup(app, user).await;
            let targets = app.get(TARGETS, user).await;
            let target_id = targets.body["targets"][0]["id"].clone();
            let key = format!("{user}-mcp");
            let mut call = Call::mcp_tool(
                "send_email",
                json!({"account_id": "mail", "target_id": target_id, "body": "Hi {{first_name}}",
                    "idempotency_key": key}),
            );
            // Where a lapsed lock is looked for (the header itself means nothing to MCP).
            call.idempotency_key = Some(key);
            call
        }
        "GET /api/user/mcp" => {
            let mut call = Call::new(Method::GET, MCP_PATH);
            call.clean_status = Some(405);
            call
        }
        "GET /.well-known/oauth-protected-resource/api/user/mcp" => {
            let mut call = Call::new(
                Method::GET,
                "/.well-known/oauth-protected-resource/api/user/mcp",
            );
            call.public = true;
            call
        }
        "GET /api/user/webhooks" => {
            webhook_endpoint(app, user).await;
            Call::new(Method::GET, WEBHOOKS)
        }
        "POST /api/user/webhooks" => Call::new(Method::POST, WEBHOOKS).json(webhook_body()),
        "DELETE /api/user/webhooks/{webhook_id}" => {
            let id = webhook_endpoint(app, user).await;
            Call::new(Method::DELETE, format!("{WEBHOOKS}/{id}"))
        }
        "POST /api/user/webhooks/{webhook_id}/test" => {
            let id = webhook_endpoint(app, user).await;
            Call::new(Method::POST, format!("{WEBHOOKS}/{id}/test")).json(json!({}))
        }
        "GET /api/user/webhooks/{webhook_id}/deliveries" => {
            let id = webhook_endpoint(app, user).await;
            Call::new(Method::GET, format!("{WEBHOOKS}/{id}/deliveries"))
        }
        other => panic!("no fault scenario for {other}: add one to tests/tests/api/faults.rs"),
    }
}

/// The user's stored items, as kinds (`Table:sort-key prefix`) and how many of each: what a
/// partial write or a doubled one changes.
async fn stored_state(app: &TestApp, user: &str) -> BTreeMap<String, usize> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut kinds = BTreeMap::new();
    for (table, sort_key) in [
        ("AccountsTable", "account_id"),
        ("TargetsTable", "sk"),
        ("RunsTable", "sk"),
        ("WebhooksTable", "sk"),
    ] {
        let mut pages = app
            .dynamodb()
            .query()
            .table_name(app.resource(table))
            .key_condition_expression("user_id = :user")
            .expression_attribute_values(":user", AttributeValue::S(user.to_owned()))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for item in page.expect("query").items.unwrap_or_default() {
                let key = item
                    .get(sort_key)
                    .and_then(|value| value.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                let kind = key
                    .split('#')
                    .find(|part| !part.is_empty())
                    .filter(|_| key.contains('#'))
                    .unwrap_or("item")
                    .to_owned();
                *kinds.entry(format!("{table}:{kind}")).or_insert(0) += 1;
            }
        }
    }
    // The run quota keeps one item per wall-clock minute: a faulted request and its retry
    // (a hang lasts seconds) may fall either side of a minute's turn and leave two where the
    // clean run left one. How many windows exist says when the requests came, not what they
    // did, so only whether there is one is compared.
    if let Some(windows) = kinds.get_mut("RunsTable:runs-per-minute") {
        *windows = 1;
    }
    kinds
}

/// Stands in for waiting out `Retry-After` (60 s at most): the lock of an idempotency key whose
/// request failed without releasing it lapses now.
async fn lapse_idempotency_lock(app: &TestApp, user: &str, key: &str) {
    use aws_sdk_dynamodb::types::AttributeValue;
    app.dynamodb()
        .update_item()
        .table_name(app.resource("RunsTable"))
        .key("user_id", AttributeValue::S(user.to_owned()))
        .key("sk", AttributeValue::S(format!("I#{key}")))
        .update_expression("SET locked_until = :past")
        .expression_attribute_values(":past", AttributeValue::N("1".into()))
        .send()
        .await
        .expect("lapse the lock");
}

/// Cases run on one stack before the next gets fresh tables: the emulator copies a table whole
/// for each transaction, so a table that grows with every case slows every later one.
const CASES_PER_STACK: usize = 12;

/// What the matrix tried, for the figures in docs/reliability.md.
#[derive(Debug, Default)]
struct Tally {
    routes: usize,
    operations: usize,
    cases: usize,
    answered_503: usize,
    absorbed: usize,
}

/// Runs every case of the routes this shard owns (the matrix is split so the test runner can
/// run shards side by side).
async fn run_shard(shard: usize, shards: usize) -> Tally {
    let mut direct = TestApp::spawn().await;
    let emulator = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let proxy = FaultProxy::start(&emulator).await;
    let through_proxy = direct.sdk_through(&proxy.url);
    let impatient = direct.sdk_through_impatient(&proxy.url);
    let routes = Template::project().unwrap().routes();
    let mut tally = Tally::default();
    let mut users = 0usize;
    let mut next_user = |label: &str| {
        users += 1;
        format!("f{shard}-{users}-{label}")
    };
    for route in routes.iter().skip(shard).step_by(shards) {
        let key = format!("{} {}", route.method, route.path);
        tally.routes += 1;
        // The clean run: its answer, its state, and the AWS operations it calls; then the same
        // request again (what a retry after a fault the service absorbed gets).
        let user = next_user("clean");
        let call = scenario(&key, &direct, &user).await;
        // A fresh instance per run, as after a cold start: what it caches (the unsubscribe
        // key, JWKS) is fetched inside the request, so those calls are in the matrix too.
        let proxied = direct.serve_through(through_proxy.clone()).await;
        proxy.take_calls();
        let clean = send(&proxied, &user, &call).await;
        let operations = proxy.take_calls();
        assert!(
            clean.status.as_u16() < 400 || Some(clean.status.as_u16()) == call.clean_status,
            "{key}: the clean run answered {}: {}",
            clean.status,
            clean.text
        );
        let clean_state = stored_state(&direct, &user).await;
        let repeat = send(&proxied, &user, &call).await;
        let repeat_state = stored_state(&direct, &user).await;
        let calls = occurrences(&operations);
        tally.operations += calls.len();
        for (operation, occurrence) in &calls {
            for (fault, persistence) in cases_for(operation, *occurrence) {
                let case = format!("{key} / {operation} #{occurrence} / {fault:?} {persistence:?}");
                tally.cases += 1;
                if tally.cases % CASES_PER_STACK == 0 {
                    direct = TestApp::spawn().await;
                }
                let started = std::time::Instant::now();
                let user = next_user("case");
                let call = scenario(&key, &direct, &user).await;
                let prepared = started.elapsed();
                let before = stored_state(&direct, &user).await;
                // A hang is met with short timeouts (the faulted request only); the retry is
                // another instance with the service's own, as a retry may well be.
                let sdk = if fault == Fault::Hang {
                    &impatient
                } else {
                    &through_proxy
                };
                let proxied = direct.serve_through(sdk.clone()).await;
                proxy.inject(operation, *occurrence, fault, persistence);
                let faulted = send(&proxied, &user, &call).await;
                let fired = proxy.fired();
                proxy.heal();
                assert!(fired > 0, "{case}: the fault never fired");
                if faulted.status == clean.status {
                    tally.absorbed += 1;
                } else {
                    tally.answered_503 += 1;
                    assert_eq!(faulted.status, 503, "{case}: {}", faulted.text);
                    // A tool's result has no headers: its code says to retry.
                    assert!(
                        call.mcp || faulted.headers.contains_key("retry-after"),
                        "{case}: no Retry-After"
                    );
                    assert!(
                        !faulted.text.contains("injected") && !faulted.text.contains("Exception"),
                        "{case}: the dependency's text reached the caller: {}",
                        faulted.text
                    );
                    if !call.public {
                        assert_eq!(faulted.error_code(), "service_unavailable", "{case}");
                    }
                    // Initiate (and a send tool, which is one) may leave a run for the retry
                    // with its idempotency key to finish.
                    if key != "POST /api/user/orchestrator/initiate-communications"
                        && key != "POST /api/user/mcp"
                    {
                        assert_eq!(
                            stored_state(&direct, &user).await,
                            before,
                            "{case}: a failed request changed stored state"
                        );
                    }
                }
                // Once the fault is gone, the same request: as the clean run's first request
                // when the faulted one failed, as its repeat when the service absorbed it.
                let (expected, expected_state) = if faulted.status == clean.status {
                    (repeat.status, &repeat_state)
                } else {
                    (clean.status, &clean_state)
                };
                let proxied = direct.serve_through(through_proxy.clone()).await;
                let mut retried = send(&proxied, &user, &call).await;
                if retried.status == 409 && retried.error_code() == "idempotency_key_in_progress" {
                    // The failed request could not even release its key (every write
                    // failed): the retry is told when the lock lapses.
                    assert!(
                        call.mcp || retried.headers.contains_key("retry-after"),
                        "{case}"
                    );
                    let key = call.idempotency_key.as_deref().unwrap();
                    lapse_idempotency_lock(&direct, &user, key).await;
                    retried = send(&proxied, &user, &call).await;
                }
                assert_eq!(
                    retried.status, expected,
                    "{case}: the retry: {}",
                    retried.text
                );
                assert_eq!(
                    &stored_state(&direct, &user).await,
                    expected_state,
                    "{case}: after the retry the state is not the clean run's"
                );
                if std::env::var_os("FAULTS_TIMING").is_some() {
                    eprintln!(
                        "{:>6} ms (setup {:>5} ms) {case}",
                        started.elapsed().as_millis(),
                        prepared.as_millis()
                    );
                }
            }
        }
    }
    tally
}

macro_rules! shards {
    ($($name:ident = $shard:expr),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let tally = run_shard($shard, 4).await;
            eprintln!("fault matrix shard {}: {tally:?}", $shard);
            assert!(tally.cases > 0);
        }
    )*};
}

shards!(
    fault_matrix_shard_0 = 0,
    fault_matrix_shard_1 = 1,
    fault_matrix_shard_2 = 2,
    fault_matrix_shard_3 = 3,
);

/// The queue message of `user`'s one communication, taken off the queue (the test delivers it
/// to the worker itself, as often as SQS would).
async fn take_message(app: &TestApp, user: &str) -> String {
    let sqs = app.sqs();
    let url = app.queue_url("CommunicationsQueue");
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    let mut body = None;
    for message in received {
        sqs.delete_message()
            .queue_url(&url)
            .receipt_handle(message.receipt_handle().unwrap())
            .send()
            .await
            .expect("delete");
        if message.body().is_some_and(|text| text.contains(user)) {
            body = message.body;
        }
    }
    body.unwrap_or_else(|| panic!("no message for {user}"))
}

fn sqs_event(body: &str, receives: u32) -> aws_lambda_events::sqs::SqsEvent {
    let mut record = aws_lambda_events::sqs::SqsMessage::default();
    record.message_id = Some(format!("m-{receives}"));
    record.body = Some(body.to_owned());
    record
        .attributes
        .insert("ApproximateReceiveCount".into(), receives.to_string());
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    event.records.push(record);
    event
}

/// The worker against every fault of every AWS call it makes for one email: transient faults
/// end in one email sent; any fault ends in `sent` with exactly one email or in `failed` with a
/// reason and at most one email (an outcome SES may have carried out is never sent again), with
/// the run's counters equal to the outcome, within the receives SQS allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_survives_every_fault_of_every_call() {
    let mut direct = TestApp::spawn().await;
    let emulator = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let proxy = FaultProxy::start(&emulator).await;
    let through_proxy = direct.sdk_through(&proxy.url);
    let max_receives = pipewise::communications::worker::MAX_RECEIVES;

    let (mut users, mut cases, mut sent, mut failed) = (0, 0, 0, 0);
    let mut next_user = || {
        users += 1;
        format!("w{users}")
    };
    let user = next_user();
    started_run(&direct, &user).await;
    let body = take_message(&direct, &user).await;
    let worker = direct.worker_on(&through_proxy);
    proxy.take_calls();
    let clean = communications_worker::handle_batch(&worker, sqs_event(&body, 1)).await;
    assert!(clean.batch_item_failures.is_empty());
    let calls = occurrences(&proxy.take_calls());
    assert!(
        calls
            .iter()
            .any(|(operation, _)| operation == "sesv2:SendEmail"),
        "{calls:?}"
    );

    for (operation, occurrence) in &calls {
        for (fault, persistence) in cases_for(operation, *occurrence) {
            cases += 1;
            if cases % CASES_PER_STACK == 0 {
                direct = TestApp::spawn().await;
            }
            let started = std::time::Instant::now();
            let case = format!("worker / {operation} #{occurrence} / {fault:?} {persistence:?}");
            let user = next_user();
            let run_id = started_run(&direct, &user).await;
            let body = take_message(&direct, &user).await;
            // A fresh instance (what it caches is fetched inside the delivery); short
            // timeouts for a hang.
            let worker = if fault == Fault::Hang {
                direct.worker_on(&direct.sdk_through_impatient(&proxy.url))
            } else {
                direct.worker_on(&through_proxy)
            };
            proxy.inject(operation, *occurrence, fault, persistence);
            let mut receives = 1;
            let mut answer =
                communications_worker::handle_batch(&worker, sqs_event(&body, receives)).await;
            assert!(proxy.fired() > 0, "{case}: the fault never fired");
            proxy.heal();
            let worker = direct.worker_on(&through_proxy);
            // SQS delivers a reported message again, up to its maxReceiveCount.
            while !answer.batch_item_failures.is_empty() {
                receives += 1;
                assert!(
                    receives <= max_receives,
                    "{case}: still failing after {max_receives} receives"
                );
                answer =
                    communications_worker::handle_batch(&worker, sqs_event(&body, receives)).await;
            }
            let run = direct.get(&format!("{RUNS}/{run_id}"), &user).await;
            let status = run.body["communications"][0]["status"]
                .as_str()
                .unwrap()
                .to_owned();
            let emails = direct
                .sent_raw_emails(&format!("sales@{user}.example.com"))
                .await
                .len();
            assert_eq!(run.body["counts"]["pending"], 0, "{case}");
            match status.as_str() {
                "sent" => {
                    sent += 1;
                    assert_eq!(emails, 1, "{case}: sent once");
                    assert_eq!(run.body["counts"]["sent"], 1, "{case}");
                }
                "failed" => {
                    failed += 1;
                    assert!(emails <= 1, "{case}: {emails} emails");
                    assert!(
                        run.body["communications"][0]["reason"].is_string(),
                        "{case}"
                    );
                    assert_eq!(run.body["counts"]["failed"], 1, "{case}");
                    assert_ne!(
                        persistence,
                        Persistence::Once,
                        "{case}: a blip must not fail a communication"
                    );
                }
                other => panic!("{case}: ended {other}"),
            }
            if std::env::var_os("FAULTS_TIMING").is_some() {
                eprintln!("{:>6} ms {case}", started.elapsed().as_millis());
            }
        }
    }
    eprintln!(
        "worker fault matrix: {} calls, {cases} cases, {sent} sent once, {failed} recorded as failed, 0 sent twice",
        calls.len()
    );
}
