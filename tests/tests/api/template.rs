//! template.yaml's queue and worker settings agree with what the code relies on.

use pipewise::communications::worker::MAX_RECEIVES;
use pipewise_local::template::Template;
use serde_yaml::Value;

fn resource<'a>(template: &'a Template, kind: &str, name: &str) -> &'a Value {
    template
        .resources_of_type(kind)
        .into_iter()
        .find(|(logical, _)| logical == name)
        .map(|(_, resource)| resource)
        .unwrap_or_else(|| panic!("{name} is missing from template.yaml"))
}

#[test]
fn the_queue_redrives_after_the_receives_the_worker_expects() {
    let template = Template::project().unwrap();
    let queue = resource(&template, "AWS::SQS::Queue", "CommunicationsQueue");
    let properties = &queue["Properties"];
    assert_eq!(
        properties["RedrivePolicy"]["maxReceiveCount"].as_u64(),
        Some(u64::from(MAX_RECEIVES))
    );
    let worker = resource(
        &template,
        "AWS::Serverless::Function",
        "CommunicationsWorkerFunction",
    );
    let timeout = worker["Properties"]["Timeout"].as_u64().unwrap();
    let visibility = properties["VisibilityTimeout"].as_u64().unwrap();
    assert!(
        visibility >= 6 * timeout,
        "visibility {visibility}s < 6 x worker timeout {timeout}s"
    );
    assert!(
        pipewise::communications::worker::STUCK_SENDING_SECONDS > timeout as i64,
        "a live delivery must never look stuck"
    );
}

#[test]
fn the_worker_reports_partial_batch_failures() {
    let template = Template::project().unwrap();
    let worker = resource(
        &template,
        "AWS::Serverless::Function",
        "CommunicationsWorkerFunction",
    );
    let event = &worker["Properties"]["Events"]["Communications"];
    assert_eq!(event["Type"], "SQS");
    let types = event["Properties"]["FunctionResponseTypes"]
        .as_sequence()
        .unwrap();
    assert!(types.iter().any(|t| t == "ReportBatchItemFailures"));
}

#[test]
fn every_function_is_a_lean_arm64_rust_binary() {
    let template = Template::project().unwrap();
    let functions = template.resources_of_type("AWS::Serverless::Function");
    assert_eq!(functions.len(), 4);
    let mut binaries = std::collections::BTreeSet::new();
    for (name, function) in functions {
        assert_eq!(
            function["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{name}"
        );
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap()
            .to_owned();
        let code = function["Properties"]["CodeUri"].as_str().unwrap();
        assert_eq!(
            code,
            format!("functions/{binary}"),
            "{name}: CodeUri is the crate of its binary"
        );
        binaries.insert(binary);
    }
    assert_eq!(binaries.len(), 4, "unique binary names");
}
