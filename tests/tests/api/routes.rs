//! One route inventory, three views: the events of template.yaml, the routers (each function's
//! own route declarations, which are also what it serves), and the committed docs/openapi.json.
//! Every route must be in all three, and every template route must be answered.

use std::collections::{BTreeMap, BTreeSet};

use pipewise_local::app::HTTP_FUNCTIONS;
use pipewise_local::openapi::{COMMITTED_PATH, api_document_json};
use pipewise_local::template::Template;
use pipewise_tests::TestApp;
use reqwest::Method;
use serde_json::Value;

type Route = (String, String);

const METHODS: [&str; 5] = ["get", "post", "patch", "put", "delete"];

fn routes_of_document(document: &Value) -> BTreeSet<Route> {
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            if item.get(method).is_some() {
                routes.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// The routes one function declares (and serves), from its own OpenAPI description.
fn function_routes(openapi: fn() -> utoipa::openapi::OpenApi) -> BTreeSet<Route> {
    routes_of_document(&serde_json::to_value(openapi()).unwrap())
}

fn router_routes() -> BTreeSet<Route> {
    HTTP_FUNCTIONS
        .iter()
        .flat_map(|function| function_routes(function.openapi))
        .collect()
}

/// The template's routes of every function, or of one (`Some(logical id)`).
fn template_routes_of(function: Option<&str>) -> BTreeSet<Route> {
    Template::project()
        .unwrap()
        .routes()
        .into_iter()
        .filter(|route| function.is_none_or(|function| route.function == function))
        .map(|route| (route.method, route.path))
        .collect()
}

fn template_routes() -> BTreeSet<Route> {
    template_routes_of(None)
}

fn committed_document() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(COMMITTED_PATH);
    std::fs::read_to_string(&path).unwrap_or_default()
}

fn committed_routes() -> BTreeSet<Route> {
    routes_of_document(&serde_json::from_str(&committed_document()).unwrap_or(Value::Null))
}

/// For each route missing from some view, which views lack it.
fn missing(views: &[(&str, BTreeSet<Route>)]) -> BTreeMap<Route, Vec<String>> {
    let all: BTreeSet<&Route> = views.iter().flat_map(|(_, routes)| routes).collect();
    let mut missing = BTreeMap::new();
    for route in all {
        let lacking: Vec<String> = views
            .iter()
            .filter(|(_, routes)| !routes.contains(route))
            .map(|(name, _)| (*name).to_owned())
            .collect();
        if !lacking.is_empty() {
            missing.insert(route.clone(), lacking);
        }
    }
    missing
}

#[test]
fn template_routers_and_openapi_declare_the_same_routes() {
    let views = [
        ("template.yaml", template_routes()),
        ("the routers", router_routes()),
        ("docs/openapi.json", committed_routes()),
    ];
    let missing = missing(&views);
    let report: Vec<String> = missing
        .iter()
        .map(|((method, path), lacking)| {
            format!("{method} {path} is missing from {}", lacking.join(" and "))
        })
        .collect();
    assert!(
        report.is_empty(),
        "route inventory differs:\n{}",
        report.join("\n")
    );
    assert!(!views[0].1.is_empty(), "template.yaml declares no routes");
}

/// Each Lambda serves only its own router: a route template.yaml gives one function must be
/// declared by that function's routes, and a function declares no route the template gives
/// another (the merged local app could not tell).
#[test]
fn each_function_declares_exactly_the_routes_template_yaml_gives_it() {
    let template_functions: BTreeSet<String> = Template::project()
        .unwrap()
        .routes()
        .into_iter()
        .map(|route| route.function)
        .collect();
    let mut report = Vec::new();
    for function in &template_functions {
        if !HTTP_FUNCTIONS.iter().any(|f| f.logical_id == function) {
            report.push(format!(
                "{function} has HttpApi events in template.yaml but is not in HTTP_FUNCTIONS"
            ));
        }
    }
    for function in HTTP_FUNCTIONS {
        let template = format!("template.yaml's {}", function.logical_id);
        let router = format!("{}'s routes", function.logical_id);
        let missing = missing(&[
            (
                template.as_str(),
                template_routes_of(Some(function.logical_id)),
            ),
            (router.as_str(), function_routes(function.openapi)),
        ]);
        report.extend(missing.iter().map(|((method, path), lacking)| {
            format!("{method} {path} is missing from {}", lacking.join(" and "))
        }));
    }
    assert!(
        report.is_empty(),
        "functions and template.yaml differ:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_inventory_check_names_the_route_and_the_place() {
    let mut template = template_routes();
    template.insert(("GET".into(), "/api/user/only-in-template".into()));
    let missing = missing(&[
        ("template.yaml", template),
        ("the routers", router_routes()),
    ]);
    assert_eq!(
        missing.get(&("GET".to_owned(), "/api/user/only-in-template".to_owned())),
        Some(&vec!["the routers".to_owned()])
    );
}

#[test]
fn the_committed_openapi_document_is_current() {
    assert!(
        committed_document() == api_document_json(),
        "docs/openapi.json is stale: run `make openapi` and commit it"
    );
}

/// A concrete path for a route, each `{param}` filled with a plausible id.
fn sample_path(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{account_id}" => "acc-1".to_owned(),
            s if s.starts_with('{') => uuid::Uuid::now_v7().to_string(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_template_route_is_answered_by_a_router() {
    let app = TestApp::spawn().await;
    for route in Template::project().unwrap().routes() {
        let path = sample_path(&route.path);
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let response = app
            .send(
                app.request(method, &path)
                    .header("content-type", "application/json")
                    .body("{}"),
            )
            .await;
        assert!(
            !["route_not_found", "method_not_allowed"].contains(&response.error_code()),
            "{} {} (function {}) is declared in template.yaml but no router answers it: {}",
            route.method,
            route.path,
            route.function,
            response.text
        );
    }
}

#[tokio::test]
async fn the_local_stack_serves_the_openapi_document() {
    let app = TestApp::spawn().await;
    let response = app
        .send(app.request(Method::GET, "/api/user/openapi.json"))
        .await;
    response.assert_status(200);
    assert_eq!(response.text, committed_document());
}
