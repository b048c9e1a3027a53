//! AWS calls per operation, counted at the wire: the SDK's requests pass through the recording
//! proxy the fault tests use (tests/src/fault_proxy.rs), which names each `service:Operation`,
//! retries included — what AWS bills. Each count has a budget; one past it fails the run.

use std::collections::BTreeMap;

use http::Method;
use pipewise_tests::TestApp;
use pipewise_tests::fault_proxy::FaultProxy;
use serde_json::{Value, json};

use crate::fixture::{Api, outreach_message};

/// The most AWS calls each route may make (every service, retries included), as counted when
/// the worker's batch reads landed (2026-12): a change that adds a call fails `make bench`.
/// docs/benchmarks.md, "AWS calls", explains each; raise one only with the reason written there.
const ROUTE_BUDGETS: &[(&str, f64)] = &[
    ("POST /api/user/integrations/accounts (email, new)", 5.0),
    (
        "POST /api/user/integrations/accounts (with a secret, new)",
        4.0,
    ),
    // Connects a pending sender SES verified meanwhile (at most 3 checked per list).
    ("GET /api/user/integrations/accounts", 6.0),
    ("GET /api/user/integrations/accounts/{account_id}", 1.0),
    (
        "GET /api/user/integrations/accounts/{account_id}/secrets",
        2.0,
    ),
    ("GET /api/user/integrations/tools", 1.0),
    ("POST /api/user/communication-targets", 1.0),
    ("GET /api/user/communication-targets", 1.0),
    ("PATCH /api/user/communication-targets/{target_id}", 2.0),
    ("DELETE /api/user/communication-targets/{target_id}", 2.0),
    (
        "POST /api/user/communication-targets/batch (10 targets)",
        10.0,
    ),
    (
        "POST /api/user/orchestrator/initiate-communications (10 emails)",
        9.0,
    ),
    ("GET /api/user/orchestrator/runs/{run_id}", 2.0),
    ("GET /api/user/orchestrator/runs", 1.0),
    ("DELETE /api/user/integrations/accounts/{account_id}", 2.0),
];

/// Per email sent (initiate and worker): at most this many DynamoDB calls, and no KMS call
/// (an SES sender has no secret; the unsubscribe key is read once per process).
const DYNAMODB_PER_EMAIL_BUDGET: f64 = 4.0;
const KMS_PER_EMAIL_BUDGET: f64 = 0.0;
/// Per email: SQS sends (`SendMessage` and `SendMessageBatch`, the queue's and the webhook
/// events'), ten per call: 0.2 (the initiate's enqueue, the batch's events), 1.1 when each event
/// was its own `SendMessage`.
const SQS_SENDS_PER_EMAIL_BUDGET: f64 = 0.3;

/// What went past its budget, in words; empty when every count is within.
pub fn over_budget(counted: &Value) -> Vec<String> {
    let mut over = Vec::new();
    let total = |calls: &Value, prefix: &str| -> f64 {
        calls
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(call, _)| call.starts_with(prefix))
            .filter_map(|(_, count)| count.as_f64())
            .sum()
    };
    for route in counted["routes"].as_array().into_iter().flatten() {
        let name = route["route"].as_str().unwrap_or_default();
        let calls = total(&route["calls"], "");
        match ROUTE_BUDGETS.iter().find(|(budget, _)| *budget == name) {
            Some((_, budget)) if calls > *budget => {
                over.push(format!("{name}: {calls} calls, budget {budget}"));
            }
            Some(_) => {}
            None => over.push(format!("{name}: no budget (add one to calls.rs)")),
        }
    }
    let per_email = &counted["per_communication"]["calls"];
    for (service, budget) in [
        ("dynamodb:", DYNAMODB_PER_EMAIL_BUDGET),
        ("kms:", KMS_PER_EMAIL_BUDGET),
        ("sqs:SendMessage", SQS_SENDS_PER_EMAIL_BUDGET),
    ] {
        let calls = total(per_email, service);
        // Counts over 10 emails: a tenth is the resolution.
        if calls > budget + 1e-9 {
            over.push(format!("{service} per email: {calls:.1}, budget {budget}"));
        }
    }
    over
}

fn tally(calls: Vec<String>) -> BTreeMap<String, f64> {
    let mut counted = BTreeMap::new();
    for call in calls {
        *counted.entry(call).or_insert(0.0) += 1.0;
    }
    counted
}

/// Requests through the proxied routers, each with the calls it made.
struct Counter<'a> {
    api: &'a Api,
    proxy: &'a FaultProxy,
    routes: Vec<Value>,
}

impl Counter<'_> {
    async fn step(
        &mut self,
        name: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let answer = self.api.expect(method, path, body.as_ref(), status).await;
        let calls = tally(self.proxy.take_calls());
        eprintln!("calls {name}: {calls:?}");
        self.routes.push(json!({"route": name, "calls": calls}));
        answer
    }
}

/// The calls of each route, and those of one email communication (initiate and worker).
pub async fn count(app: &TestApp) -> Value {
    let upstream = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let proxy = FaultProxy::start(&upstream).await;
    let sdk = app.sdk_through(&proxy.url);
    let user = "bench-calls";
    let api = Api::new(app, &sdk, user);
    let domain = crate::fixture::unique_domain();
    let sender = format!("sales@{domain}");
    proxy.take_calls();

    let mut counter = Counter {
        api: &api,
        proxy: &proxy,
        routes: Vec::new(),
    };
    counter
        .step(
            "POST /api/user/integrations/accounts (email, new)",
            Method::POST,
            "/api/user/integrations/accounts",
            Some(json!({"account_id": "gmail", "account_type": "email",
            "configuration": {"from_address": sender, "daily_send_limit": 1000}})),
            201,
        )
        .await;
    counter
        .step(
            "POST /api/user/integrations/accounts (with a secret, new)",
            Method::POST,
            "/api/user/integrations/accounts",
            Some(
                json!({"account_id": "hubspot", "account_type": "crm", "provider": "hubspot",
            "configuration": {"portal": "eu1", "api_key": "pat-eu1-0c5b2f4e-bench-only-key"}}),
            ),
            201,
        )
        .await;
    for (name, path) in [
        (
            "GET /api/user/integrations/accounts",
            "/api/user/integrations/accounts",
        ),
        (
            "GET /api/user/integrations/accounts/{account_id}",
            "/api/user/integrations/accounts/hubspot",
        ),
        (
            "GET /api/user/integrations/accounts/{account_id}/secrets",
            "/api/user/integrations/accounts/hubspot/secrets",
        ),
        (
            "GET /api/user/integrations/tools",
            "/api/user/integrations/tools",
        ),
    ] {
        counter.step(name, Method::GET, path, None, 200).await;
    }
    let created = counter
        .step(
            "POST /api/user/communication-targets",
            Method::POST,
            "/api/user/communication-targets",
            Some(json!({"name": "Ada Lovelace", "email": format!("ada@{domain}")})),
            201,
        )
        .await;
    let target = format!(
        "/api/user/communication-targets/{}",
        created["id"].as_str().unwrap_or_default()
    );
    counter
        .step(
            "GET /api/user/communication-targets",
            Method::GET,
            "/api/user/communication-targets",
            None,
            200,
        )
        .await;
    counter
        .step(
            "PATCH /api/user/communication-targets/{target_id}",
            Method::PATCH,
            &target,
            Some(json!({"notes": "met at the fair"})),
            200,
        )
        .await;
    counter
        .step(
            "DELETE /api/user/communication-targets/{target_id}",
            Method::DELETE,
            &target,
            None,
            204,
        )
        .await;
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"name": format!("Person{i} Surname"), "email": format!("p{i}@{domain}")}))
        .collect();
    counter
        .step(
            "POST /api/user/communication-targets/batch (10 targets)",
            Method::POST,
            "/api/user/communication-targets/batch",
            Some(json!({"targets": batch})),
            200,
        )
        .await;
    let run = counter
        .step(
            "POST /api/user/orchestrator/initiate-communications (10 emails)",
            Method::POST,
            "/api/user/orchestrator/initiate-communications",
            Some(outreach_message()),
            202,
        )
        .await;
    let initiate_calls = counter
        .routes
        .last()
        .map(|route| route["calls"].clone())
        .unwrap_or_default();
    // The worker through the proxy; the queue polled directly (Lambda's event source mapping
    // receives and deletes, not the function).
    let worker = app.worker_on(&sdk);
    let sqs = app.sqs();
    let queue = app.queue_url("CommunicationsQueue");
    let mut handled = 0;
    loop {
        let report = pipewise_local::queue_poller::poll_once(&sqs, &queue, &worker, 0)
            .await
            .expect("poll");
        handled += report.received;
        if report.received == 0 {
            break;
        }
    }
    assert_eq!(handled, 10, "the run's ten messages");
    let worker_calls = tally(proxy.take_calls());
    let run_path = format!(
        "/api/user/orchestrator/runs/{}",
        run["run_id"].as_str().unwrap_or_default()
    );
    let view = counter
        .step(
            "GET /api/user/orchestrator/runs/{run_id}",
            Method::GET,
            &run_path,
            None,
            200,
        )
        .await;
    assert_eq!(view["counts"]["sent"], 10, "every email sent: {view}");
    counter
        .step(
            "GET /api/user/orchestrator/runs",
            Method::GET,
            "/api/user/orchestrator/runs",
            None,
            200,
        )
        .await;
    counter
        .step(
            "DELETE /api/user/integrations/accounts/{account_id}",
            Method::DELETE,
            "/api/user/integrations/accounts/hubspot",
            None,
            204,
        )
        .await;

    let mut per_communication: BTreeMap<String, f64> = BTreeMap::new();
    for (call, count) in initiate_calls.as_object().into_iter().flatten() {
        *per_communication.entry(call.clone()).or_insert(0.0) +=
            count.as_f64().unwrap_or(0.0) / 10.0;
    }
    for (call, count) in &worker_calls {
        *per_communication.entry(call.clone()).or_insert(0.0) += count / 10.0;
    }
    let mut counted = json!({
        "routes": counter.routes,
        "worker_calls_for_10": worker_calls,
        "per_communication": {"channel": "email", "communications": 10, "calls": per_communication},
        "budgets": {
            "routes": ROUTE_BUDGETS.iter().map(|(route, budget)| json!({"route": route, "calls": budget})).collect::<Vec<_>>(),
            "dynamodb_per_email": DYNAMODB_PER_EMAIL_BUDGET,
            "kms_per_email": KMS_PER_EMAIL_BUDGET,
            "sqs_sends_per_email": SQS_SENDS_PER_EMAIL_BUDGET,
        },
    });
    counted["over_budget"] = json!(over_budget(&counted));
    counted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_past_its_budget_or_without_one_is_reported() {
        let within = json!({
            "routes": [{"route": "GET /api/user/integrations/tools", "calls": {"dynamodb:Query": 1.0}}],
            "per_communication": {"calls": {"dynamodb:UpdateItem": 1.5, "dynamodb:TransactWriteItems": 1.0}},
        });
        assert!(over_budget(&within).is_empty());
        let over = json!({
            "routes": [
                {"route": "GET /api/user/integrations/tools", "calls": {"dynamodb:Query": 2.0}},
                {"route": "GET /api/user/something-new", "calls": {}},
            ],
            "per_communication": {"calls": {"dynamodb:GetItem": 5.0, "kms:Decrypt": 0.1}},
        });
        let found = over_budget(&over);
        assert_eq!(found.len(), 4, "{found:?}");
    }
}
