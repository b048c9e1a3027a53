//! The sample events in events/ (what API Gateway, `sam local` and SQS send) parse with the
//! runtime's own parser and get an answer their route documents from each function's own router,
//! so the documented `cargo lambda invoke --data-file events/...` commands are known to work.
//! Which API events there are, and which function answers each, is read from the files and
//! template.yaml, never listed here.

use std::collections::BTreeSet;
use std::path::PathBuf;

use pipewise::api::{HttpConfig, serve_routes};
use pipewise::config::ConfigSource;
use pipewise_local::app::LocalFunction;
use pipewise_local::template::{Template, TemplateRoute};
use pipewise_tests::TestApp;
use serde_json::Value;
use tower::ServiceExt;

/// The events that are not HTTP requests, each fed to its handler by a test below.
const WORKER_EVENTS: [&str; 3] = [
    "worker-sqs-batch",
    "worker-release-tick",
    "feedback-sqs-batch",
];

/// Error codes that blame the sample itself (its token, headers or body) rather than what the
/// events before it left behind: never the answer to a sample event.
const THE_SAMPLE_IS_WRONG: [&str; 9] = [
    "unauthorized",
    "insufficient_scope",
    "malformed_json",
    "bad_request",
    "validation_failed",
    "payload_too_large",
    "unsupported_media_type",
    "route_not_found",
    "method_not_allowed",
];

/// What each sample API event must be answered with, played in the test's order (an account is
/// created before it is read, targets named by a sample do not exist). Keyed by event file; the
/// test checks that it covers exactly the API events in `events/`.
const EXPECTED_STATUS: [(&str, u16); 35] = [
    ("health", 200),
    ("accounts-upsert", 201),
    ("accounts-list", 200),
    ("sam-local-accounts-list", 200),
    ("accounts-get", 200),
    ("accounts-secrets", 200),
    ("tools-list", 200),
    ("accounts-delete", 204),
    ("accounts-test", 200),
    ("connect-session-start", 201),
    ("connect-session-get", 404),
    ("oauth-callback", 400),
    ("targets-create", 201),
    ("targets-batch", 200),
    ("targets-import", 200),
    ("targets-list", 200),
    ("targets-update", 404),
    ("targets-delete", 404),
    ("orchestrator-initiate", 422),
    ("orchestrator-preview", 422),
    ("orchestrator-runs", 200),
    ("orchestrator-run", 404),
    ("orchestrator-cancel", 404),
    ("unsubscribe-page", 404),
    ("webhooks-create", 201),
    ("webhooks-list", 200),
    ("webhooks-test", 404),
    ("webhooks-deliveries", 404),
    ("webhooks-delete", 404),
    ("unsubscribe", 404),
    ("suppressions-list", 200),
    ("suppressions-lift", 404),
    ("mcp-tools-list", 200),
    ("mcp-stream", 405),
    ("mcp-resource-metadata", 200),
];

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn read_event(name: &str) -> String {
    std::fs::read_to_string(events_dir().join(format!("{name}.json")))
        .unwrap_or_else(|_| panic!("events/{name}.json"))
}

/// Every file name in events/, without `.json`.
fn event_files() -> BTreeSet<String> {
    std::fs::read_dir(events_dir())
        .unwrap()
        .map(|entry| {
            entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".json")
                .to_owned()
        })
        .collect()
}

/// A sample API Gateway event and the template route its `routeKey` names.
struct ApiEvent {
    name: String,
    text: String,
    json: Value,
    route: TemplateRoute,
}

/// Where an event runs in the story: function by function in template.yaml's order, and in each
/// function the writes first, then the reads, the deletes last (so the reads find what the writes
/// made); then by path and file name.
fn story_position(event: &ApiEvent, functions: &[String]) -> (usize, u8, String, String) {
    let function = functions
        .iter()
        .position(|function| *function == event.route.function)
        .unwrap_or(usize::MAX);
    let method = match event.route.method.as_str() {
        "POST" => 0,
        "PUT" => 1,
        "PATCH" => 2,
        "DELETE" => 4,
        _ => 3,
    };
    (
        function,
        method,
        event.route.path.clone(),
        event.name.clone(),
    )
}

/// Every file of events/ with a `routeKey` (an API Gateway v2 event), in story order. Each must
/// name a template route.
fn api_events(template: &Template) -> Vec<ApiEvent> {
    let routes = template.routes();
    let mut events: Vec<ApiEvent> = event_files()
        .into_iter()
        .filter_map(|name| {
            let text = read_event(&name);
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("events/{name}.json is not JSON: {e}"));
            let route_key = json["routeKey"].as_str()?.to_owned();
            let route = routes
                .iter()
                .find(|route| format!("{} {}", route.method, route.path) == route_key)
                .unwrap_or_else(|| {
                    panic!("events/{name}.json: {route_key} is not a template route")
                })
                .clone();
            Some(ApiEvent {
                name,
                text,
                json,
                route,
            })
        })
        .collect();
    let functions: Vec<String> = template
        .resources_of_type("AWS::Serverless::Function")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    events.sort_by_cached_key(|event| story_position(event, &functions));
    events
}

/// What the function's own OpenAPI description says of `status` on the event's route: `None`
/// when the status is not documented there, else the documented content types.
fn documented(event: &ApiEvent, status: u16) -> Option<Vec<String>> {
    let function = LocalFunction::named(&event.route.function)
        .unwrap_or_else(|| panic!("no HTTP function {}", event.route.function));
    let document = serde_json::to_value((function.openapi)()).unwrap();
    let answer = &document["paths"][&event.route.path][event.route.method.to_ascii_lowercase()]["responses"]
        [status.to_string()];
    answer.is_object().then(|| {
        answer["content"]
            .as_object()
            .map(|content| content.keys().cloned().collect())
            .unwrap_or_default()
    })
}

#[tokio::test]
async fn every_api_event_is_answered_by_its_own_function() {
    let app = TestApp::spawn().await;
    let source = ConfigSource::from_map(&app.environment);
    let http = HttpConfig::from_source(&source).unwrap();
    let events = api_events(&Template::project().unwrap());
    assert!(!events.is_empty(), "no API events in events/");
    let names: BTreeSet<&str> = events.iter().map(|event| event.name.as_str()).collect();
    let expected: BTreeSet<&str> = EXPECTED_STATUS.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names, expected,
        "EXPECTED_STATUS names exactly the API events"
    );
    for event in &events {
        let name = &event.name;
        let function = LocalFunction::named(&event.route.function)
            .unwrap_or_else(|| panic!("no HTTP function {}", event.route.function));
        let request = lambda_http::request::from_str(&event.text)
            .unwrap_or_else(|e| panic!("events/{name}.json: {e}"));
        let router = serve_routes((function.router)(&source, &app.sdk).unwrap(), &http);
        let response = router.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        // Without an x-request-id from the caller, the id is API Gateway's own.
        assert_eq!(
            response.headers()["x-request-id"],
            event.json["requestContext"]["requestId"].as_str().unwrap(),
            "events/{name}.json"
        );
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        let context = format!(
            "events/{name}.json via {}: {status} {body}",
            event.route.function
        );
        assert!(status < 500, "{context}");
        let expected = EXPECTED_STATUS
            .iter()
            .find(|(event_name, _)| event_name == name)
            .map(|(_, status)| *status)
            .unwrap_or_else(|| panic!("events/{name}.json has no expected status"));
        assert_eq!(status, expected, "{context}");
        let content = documented(event, status)
            .unwrap_or_else(|| panic!("{context}: {status} is not documented for this route"));
        if let Some(documented_type) = content.first() {
            assert!(
                content_type.starts_with(documented_type.as_str()),
                "{context}: answered {content_type}, documented {documented_type}"
            );
        }
        if status >= 400 && content_type.starts_with("application/json") {
            let error: Value = serde_json::from_str(&body).unwrap();
            let code = error["error"]["code"]
                .as_str()
                .unwrap_or_else(|| panic!("{context}: error shape"));
            assert!(!THE_SAMPLE_IS_WRONG.contains(&code), "{context}");
        }
    }
}

#[test]
fn every_template_route_has_a_sample_event_and_every_event_is_tested() {
    let template = Template::project().unwrap();
    let events = api_events(&template);
    let covered: BTreeSet<String> = events
        .iter()
        .map(|event| format!("{} {}", event.route.method, event.route.path))
        .collect();
    for route in template.routes() {
        let key = format!("{} {}", route.method, route.path);
        assert!(covered.contains(&key), "no events/*.json for {key}");
    }
    let tested: BTreeSet<String> = events
        .into_iter()
        .map(|event| event.name)
        .chain(WORKER_EVENTS.map(str::to_owned))
        .collect();
    assert_eq!(
        event_files(),
        tested,
        "every file in events/ is an API event (with a routeKey) or a worker event exercised here"
    );
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
