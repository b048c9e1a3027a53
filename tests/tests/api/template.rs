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
    let feedback = resource(
        &template,
        "AWS::Serverless::Function",
        "CommunicationsFeedbackFunction",
    );
    for event in [
        &worker["Properties"]["Events"]["Communications"],
        &feedback["Properties"]["Events"]["EmailFeedback"],
    ] {
        assert_eq!(event["Type"], "SQS");
        let types = event["Properties"]["FunctionResponseTypes"]
            .as_sequence()
            .unwrap();
        assert!(types.iter().any(|t| t == "ReportBatchItemFailures"));
    }
    // SES events reach the feedback queue as SES's own JSON (raw delivery), and a message
    // that keeps failing ends in its dead-letter queue.
    let subscription = resource(
        &template,
        "AWS::SNS::Subscription",
        "EmailEventsSubscription",
    );
    assert_eq!(subscription["Properties"]["RawMessageDelivery"], true);
    let queue = resource(&template, "AWS::SQS::Queue", "EmailFeedbackQueue");
    assert_eq!(
        queue["Properties"]["RedrivePolicy"]["maxReceiveCount"].as_u64(),
        Some(5)
    );
    let destination = resource(
        &template,
        "AWS::SES::ConfigurationSetEventDestination",
        "OutreachEventDestination",
    );
    let kinds: Vec<&str> = destination["Properties"]["EventDestination"]["MatchingEventTypes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|kind| kind.as_str())
        .collect();
    assert_eq!(kinds, ["delivery", "bounce", "complaint", "reject"]);
}

#[test]
fn every_function_is_a_lean_arm64_rust_binary() {
    let template = Template::project().unwrap();
    let functions = template.resources_of_type("AWS::Serverless::Function");
    assert_eq!(functions.len(), 6);
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
        // The crate's main binary (named after the crate) or one of its `src/bin/` binaries.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let is_main = code == format!("functions/{binary}");
        let is_extra = root
            .join(code)
            .join(format!("src/bin/{binary}.rs"))
            .is_file();
        assert!(
            code.starts_with("functions/") && (is_main || is_extra),
            "{name}: CodeUri {code} is the crate of its binary {binary}"
        );
        binaries.insert(binary);
    }
    assert_eq!(binaries.len(), 6, "unique binary names");
}

/// The gateway's JWT authorizer and the functions' own verification are configured from the
/// same template values, in both identity-provider modes; with the template's own user pool the
/// secrets scope is the resource server's, and the app client may request it.
#[test]
fn the_gateway_and_the_functions_accept_the_same_tokens() {
    use pipewise_local::template::{Bindings, Resolved, resolve};
    let template = Template::project().unwrap();
    let api = resource(&template, "AWS::Serverless::HttpApi", "HttpApi");
    let jwt = &api["Properties"]["Auth"]["Authorizers"]["UserJwt"]["JwtConfiguration"];
    for (mode, issuer, audiences) in [
        (
            "cognito",
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool",
            vec!["client-1"],
        ),
        (
            "external",
            "https://tenant.example.auth0.com/",
            vec!["api-a", "api-b"],
        ),
    ] {
        let mut bindings = Bindings::default();
        for (name, value) in [
            ("IdentityProvider", mode),
            ("AWS::Region", "eu-west-1"),
            ("UserPool", "eu-west-1_Pool"),
            ("UserPoolClient", "client-1"),
            ("JwtIssuer", "https://tenant.example.auth0.com/"),
            ("JwtAudience", "api-a,api-b"),
            ("JwtTokenUse", "oidc_access"),
            ("JwtJwks", ""),
            ("ExternalSecretsScope", "integrations:secrets:read"),
            ("LogLevel", "info"),
        ] {
            bindings.bind_ref(name, Resolved::Text(value.to_owned()));
        }
        bindings.bind_ref(
            "CorsAllowedOrigins",
            Resolved::List(vec!["https://app.example".into()]),
        );
        bindings.evaluate_conditions(&template).unwrap();
        let gateway_issuer = resolve(&jwt["issuer"], &bindings).unwrap();
        let gateway_audiences = match resolve(&jwt["audience"], &bindings).unwrap() {
            Resolved::List(items) => items,
            Resolved::Text(text) => vec![text],
        };
        let globals = &template_globals()["Function"]["Environment"]["Variables"];
        let text = |name: &str| match resolve(&globals[name], &bindings).unwrap() {
            Resolved::Text(text) => text,
            Resolved::List(items) => items.join(","),
        };
        assert_eq!(gateway_issuer, Resolved::Text(issuer.to_owned()), "{mode}");
        assert_eq!(text("JWT_ISSUER"), issuer, "{mode}");
        assert_eq!(gateway_audiences, audiences, "{mode}");
        assert_eq!(
            text("JWT_AUDIENCE").split(',').collect::<Vec<_>>(),
            audiences,
            "{mode}"
        );
        if mode == "cognito" {
            assert_eq!(text("JWT_TOKEN_USE"), "cognito_access");
            let server = resource(
                &template,
                "AWS::Cognito::UserPoolResourceServer",
                "UserPoolResourceServer",
            );
            let scope = format!(
                "{}/{}",
                server["Properties"]["Identifier"].as_str().unwrap(),
                server["Properties"]["Scopes"][0]["ScopeName"]
                    .as_str()
                    .unwrap()
            );
            assert_eq!(text("SECRETS_SCOPE"), scope);
            let client = resource(&template, "AWS::Cognito::UserPoolClient", "UserPoolClient");
            assert!(
                client["Properties"]["AllowedOAuthScopes"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|allowed| allowed.as_str() == Some(scope.as_str())),
                "the app client may request the secrets scope"
            );
        }
    }
}

fn template_globals() -> Value {
    let document: Value = serde_yaml::from_str(pipewise_local::template::TEMPLATE_YAML).unwrap();
    document["Globals"].clone()
}

/// A busy emulator can answer a create after the SDK's attempt timeout; the SDK retries and is
/// told the resource already exists. The names are the stack's own, so creating the stack takes
/// that as the resource standing instead of failing (seen once in CI, on the configuration set).
#[tokio::test]
async fn a_stack_whose_creates_were_retried_still_comes_up() {
    let sdk = pipewise_tests::emulator_sdk().await;
    let name = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    // What the first, unanswered attempts left behind.
    aws_sdk_sesv2::Client::new(&sdk)
        .create_configuration_set()
        .configuration_set_name(format!("{name}-outreach"))
        .send()
        .await
        .expect("a configuration set");
    let earlier_secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(format!("{name}-UnsubscribeSigningSecret"))
        .secret_string("from-the-first-attempt")
        .send()
        .await
        .expect("a secret")
        .arn
        .expect("its ARN");
    let kms = aws_sdk_kms::Client::new(&sdk);
    let key = kms
        .create_key()
        .send()
        .await
        .expect("a key")
        .key_metadata
        .expect("its metadata")
        .key_id;
    kms.create_alias()
        .alias_name(format!("alias/{name}-account-secrets"))
        .target_key_id(key)
        .send()
        .await
        .expect("an alias");

    let stack = pipewise_local::stack::LocalStack::create(
        &sdk,
        &name,
        &pipewise_local::dev_auth::dev_parameters(),
    )
    .await
    .expect("the stack comes up");
    assert_eq!(stack.physical["UnsubscribeSigningSecret"], earlier_secret);
    assert_eq!(
        stack.physical["OutreachConfigurationSet"],
        format!("{name}-outreach")
    );
}
