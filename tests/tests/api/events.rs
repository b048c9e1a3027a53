//! The sample events in events/ (what API Gateway, `sam local` and SQS send) parse with the
//! runtime's own parser and get the right answer from each function's own router, so the
//! documented `cargo lambda invoke --data-file events/...` commands are known to work.

use std::collections::BTreeSet;
use std::path::PathBuf;

use pipewise::api::{HttpConfig, serve_routes};
use pipewise::config::ConfigSource;
use pipewise_local::template::Template;
use pipewise_tests::TestApp;
use tower::ServiceExt;

/// Each API event, in the order they run, with the status its function must answer.
const API_EVENTS: [(&str, u16); 21] = [
    ("health", 200),
    ("accounts-upsert", 201),
    ("accounts-list", 200),
    ("sam-local-accounts-list", 200),
    ("accounts-get", 200),
    ("accounts-secrets", 200),
    ("tools-list", 200),
    ("accounts-delete", 204),
    ("targets-create", 201),
    ("targets-batch", 200),
    ("targets-list", 200),
    ("targets-update", 404),
    ("targets-delete", 404),
    // The email account was deleted above: nothing can be delivered.
    ("orchestrator-initiate", 422),
    ("orchestrator-runs", 200),
    ("orchestrator-run", 404),
    ("orchestrator-cancel", 404),
    // A link that is not ours: the public page says so (HTML, for people).
    ("unsubscribe-page", 404),
    ("unsubscribe", 404),
    ("suppressions-list", 200),
    ("suppressions-lift", 404),
];

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn read_event(name: &str) -> String {
    std::fs::read_to_string(events_dir().join(format!("{name}.json")))
        .unwrap_or_else(|_| panic!("events/{name}.json"))
}

fn function_router(
    function: &str,
    source: &ConfigSource<'_>,
    sdk: &aws_config::SdkConfig,
) -> axum::Router {
    let routes = match function {
        "AccountsFunction" => accounts::router(accounts::state_from_config(source, sdk).unwrap()),
        "TargetsFunction" => targets::router(targets::state_from_config(source, sdk).unwrap()),
        "OrchestratorFunction" => {
            orchestrator::router(orchestrator::state_from_config(source, sdk).unwrap())
        }
        other => panic!("no HTTP function {other}"),
    };
    serve_routes(routes, &HttpConfig::from_source(source).unwrap())
}

#[tokio::test]
async fn every_api_event_is_answered_by_its_own_function() {
    let app = TestApp::spawn().await;
    let source = ConfigSource::from_map(&app.environment);
    let routes = Template::project().unwrap().routes();
    for (name, expected) in API_EVENTS {
        let text = read_event(name);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let route_key = json["routeKey"].as_str().unwrap();
        let route = routes
            .iter()
            .find(|route| format!("{} {}", route.method, route.path) == route_key)
            .unwrap_or_else(|| panic!("events/{name}.json: {route_key} is not a template route"));
        let request = lambda_http::request::from_str(&text)
            .unwrap_or_else(|e| panic!("events/{name}.json: {e}"));
        let response = function_router(&route.function, &source, &app.sdk)
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status().as_u16();
        // Without an x-request-id from the caller, the id is API Gateway's own.
        assert_eq!(
            response.headers()["x-request-id"],
            json["requestContext"]["requestId"].as_str().unwrap(),
            "events/{name}.json"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(
            status,
            expected,
            "events/{name}.json via {}: {}",
            route.function,
            String::from_utf8_lossy(&body)
        );
        if status >= 400 && !name.starts_with("unsubscribe") {
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(
                error["error"]["code"].is_string(),
                "events/{name}.json: error shape"
            );
        }
    }
}

#[test]
fn every_template_route_has_a_sample_event_and_every_event_is_tested() {
    let mut covered = BTreeSet::new();
    for (name, _) in API_EVENTS {
        let json: serde_json::Value = serde_json::from_str(&read_event(name)).unwrap();
        covered.insert(json["routeKey"].as_str().unwrap().to_owned());
    }
    for route in Template::project().unwrap().routes() {
        let key = format!("{} {}", route.method, route.path);
        assert!(covered.contains(&key), "no events/*.json for {key}");
    }
    let files: BTreeSet<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|entry| {
            entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".json")
                .to_owned()
        })
        .collect();
    let tested: BTreeSet<String> = API_EVENTS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .chain(
            [
                "worker-sqs-batch",
                "worker-release-tick",
                "feedback-sqs-batch",
            ]
            .map(str::to_owned),
        )
        .collect();
    assert_eq!(files, tested, "every file in events/ is exercised here");
}

#[tokio::test]
async fn the_sample_sqs_batch_reports_only_its_poison_message() {
    let app = TestApp::spawn().await;
    let event: aws_lambda_events::sqs::SqsEvent = serde_json::from_str(
        &std::fs::read_to_string(events_dir().join("worker-sqs-batch.json")).unwrap(),
    )
    .unwrap();
    let response = communications_worker::handle_batch(&app.worker(), event).await;
    let failed: Vec<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(failed, ["6f1c2a3b-0000-4000-8000-000000000002"]);
}

#[tokio::test]
async fn the_sample_release_tick_and_feedback_batch_are_handled() {
    let app = TestApp::spawn().await;
    let read = |name: &str| std::fs::read_to_string(events_dir().join(name)).unwrap();
    // The schedule's input is a tick; an SQS batch is never mistaken for one.
    let tick: communications_worker::WorkerEvent =
        serde_json::from_str(&read("worker-release-tick.json")).unwrap();
    let answer = communications_worker::handle_worker_event(&app.worker(), tick)
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(answer).unwrap(),
        serde_json::json!({"released": 0, "requeued": 0, "settled_unknown": 0, "out_of_time": false})
    );
    let batch: communications_worker::WorkerEvent =
        serde_json::from_str(&read("worker-sqs-batch.json")).unwrap();
    assert!(matches!(
        batch,
        communications_worker::WorkerEvent::Queue(_)
    ));
    // A bounce of a message this stack never sent is acknowledged; the poison one retried.
    let feedback: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_str(&read("feedback-sqs-batch.json")).unwrap();
    let response = communications_worker::handle_batch(&app.feedback(), feedback).await;
    let failed: Vec<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(failed, ["7a2d3c4e-0000-4000-8000-000000000002"]);
}
