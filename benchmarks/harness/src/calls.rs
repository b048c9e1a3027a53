//! AWS calls per operation, counted at the wire: the SDK's requests pass through the recording
//! proxy the fault tests use (tests/src/fault_proxy.rs), which names each `service:Operation`,
//! retries included — what AWS bills.

use std::collections::BTreeMap;

use http::Method;
use pipewise_tests::TestApp;
use pipewise_tests::fault_proxy::FaultProxy;
use serde_json::{Value, json};

use crate::fixture::{Api, outreach_message};

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
    json!({
        "routes": counter.routes,
        "worker_calls_for_10": worker_calls,
        "per_communication": {"channel": "email", "communications": 10, "calls": per_communication},
    })
}
