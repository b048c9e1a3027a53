//! One route inventory: every route of `template.yaml` is answered by the routers, and every
//! route the routers serve is declared in `template.yaml`.

use std::collections::BTreeSet;

use pipewise_local::template::Template;
use pipewise_tests::TestApp;
use reqwest::Method;

fn router_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for document in [
        accounts::openapi(),
        targets::openapi(),
        orchestrator::openapi(),
    ] {
        for (path, item) in &document.paths.paths {
            for method in [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PATCH", item.patch.is_some()),
                ("PUT", item.put.is_some()),
                ("DELETE", item.delete.is_some()),
            ]
            .into_iter()
            .filter(|(_, present)| *present)
            .map(|(method, _)| method)
            {
                routes.insert((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

fn template_routes() -> BTreeSet<(String, String)> {
    Template::project()
        .unwrap()
        .routes()
        .into_iter()
        .map(|route| (route.method, route.path))
        .collect()
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
    let routes = Template::project().unwrap().routes();
    assert!(!routes.is_empty());
    for route in routes {
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

#[test]
fn every_router_route_is_declared_in_the_template() {
    let template = template_routes();
    let routers = router_routes();
    let undeclared: Vec<_> = routers.difference(&template).collect();
    assert!(
        undeclared.is_empty(),
        "served by a router but missing from template.yaml: {undeclared:?}"
    );
    let unanswered: Vec<_> = template.difference(&routers).collect();
    assert!(
        unanswered.is_empty(),
        "declared in template.yaml but in no router: {unanswered:?}"
    );
}
