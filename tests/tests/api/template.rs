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
    let count = functions.len();
    assert_eq!(count, 9);
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
    assert_eq!(binaries.len(), count, "unique binary names");
}

/// The gateway's JWT authorizer and the functions' own verification are configured from the
/// same template values, in both identity-provider modes; with the template's own user pool the
/// secrets scope is the resource server's, the agents' app client may request it and the
/// frontend's may not, and both clients' tokens are accepted.
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
            vec!["client-1", "client-2"],
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
            ("AgentsUserPoolClient", "client-2"),
            ("JwtIssuer", "https://tenant.example.auth0.com/"),
            ("JwtAudience", "api-a,api-b"),
            ("JwtTokenUse", "oidc_access"),
            ("JwtJwks", ""),
            ("ExternalSecretsScope", "integrations:secrets:read"),
            ("LogLevel", "info"),
            ("AlarmEmail", ""),
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
            let may_request = |client: &str| {
                resource(&template, "AWS::Cognito::UserPoolClient", client)["Properties"]
                    ["AllowedOAuthScopes"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|allowed| allowed.as_str() == Some(scope.as_str()))
            };
            assert!(
                may_request("AgentsUserPoolClient"),
                "the agents' app client may request the secrets scope"
            );
            assert!(
                !may_request("UserPoolClient"),
                "the frontend's app client may not request the secrets scope"
            );
            let clients = template.resources_of_type("AWS::Cognito::UserPoolClient");
            assert_eq!(
                clients
                    .iter()
                    .filter(|(name, _)| may_request(name))
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>(),
                ["AgentsUserPoolClient"],
                "exactly one app client holds the secrets scope"
            );
            let agents = &resource(
                &template,
                "AWS::Cognito::UserPoolClient",
                "AgentsUserPoolClient",
            )["Properties"];
            assert_eq!(agents["GenerateSecret"], true, "a confidential client");
        }
    }
}

/// Every route without an authorizer (health, the unsubscribe link) has a throttle of its own in
/// the HttpApi's `RouteSettings`, from its own parameters, below the stage's default; and every
/// entry names a route the template declares (a stale key fails the deployment).
#[test]
fn every_public_route_has_its_own_throttle() {
    let template = Template::project().unwrap();
    let api = &resource(&template, "AWS::Serverless::HttpApi", "HttpApi")["Properties"];
    let settings = api["RouteSettings"]
        .as_mapping()
        .expect("HttpApi has RouteSettings");
    let mut public = Vec::new();
    let mut declared = std::collections::BTreeSet::new();
    for (_, function) in template.resources_of_type("AWS::Serverless::Function") {
        let Some(events) = function["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for event in events.values().filter(|event| event["Type"] == "HttpApi") {
            let properties = &event["Properties"];
            let key = format!(
                "{} {}",
                properties["Method"].as_str().unwrap().to_ascii_uppercase(),
                properties["Path"].as_str().unwrap()
            );
            if properties["Auth"]["Authorizer"] == "NONE" {
                public.push(key.clone());
            }
            declared.insert(key);
        }
    }
    assert!(
        public.contains(&"GET /api/user/unsubscribe/{token}".to_owned())
            && public.contains(&"POST /api/user/unsubscribe/{token}".to_owned()),
        "{public:?}"
    );
    let parameter_default = |name: &str| {
        default_text(&template, name)
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("{name}'s default is not a number"))
    };
    let reference = |value: &Value| match value {
        Value::Tagged(tagged) if tagged.tag == "!Ref" => tagged.value.as_str().unwrap().to_owned(),
        other => panic!("a throttle is a parameter, not {other:?}"),
    };
    let default = &api["DefaultRouteSettings"];
    for route in &public {
        let own = settings
            .get(route.as_str())
            .unwrap_or_else(|| panic!("{route} has no RouteSettings entry of its own"));
        for limit in ["ThrottlingBurstLimit", "ThrottlingRateLimit"] {
            let parameter = reference(&own[limit]);
            let stage = reference(&default[limit]);
            assert_ne!(parameter, stage, "{route}: {limit} is the stage's default");
            assert!(
                parameter_default(&parameter) <= parameter_default(&stage),
                "{route}: {limit} above the stage's default"
            );
        }
    }
    for key in settings.keys() {
        let key = key.as_str().unwrap();
        assert!(
            declared.contains(key),
            "RouteSettings names {key}, which no event declares"
        );
    }
}

/// Each function writes to a log group the stack creates, `/aws/lambda/<function>`, kept for
/// `LogRetentionDays` (30 by default), so no log line is kept forever.
#[test]
fn every_function_has_a_log_group_with_a_retention() {
    let template = Template::project().unwrap();
    assert_eq!(default_text(&template, "LogRetentionDays"), "30");
    let groups = template.resources_of_type("AWS::Logs::LogGroup");
    let functions = template.resources_of_type("AWS::Serverless::Function");
    assert_eq!(groups.len(), functions.len(), "one log group per function");
    for (function, _) in functions {
        let group = groups
            .iter()
            .map(|(_, group)| &group["Properties"])
            .find(|properties| match &properties["LogGroupName"] {
                Value::Tagged(tagged) if tagged.tag == "!Sub" => {
                    tagged.value.as_str() == Some(&format!("/aws/lambda/${{{function}}}"))
                }
                _ => false,
            })
            .unwrap_or_else(|| panic!("{function} has no log group /aws/lambda/${{{function}}}"));
        match &group["RetentionInDays"] {
            Value::Tagged(tagged) if tagged.tag == "!Ref" => {
                assert_eq!(
                    tagged.value.as_str(),
                    Some("LogRetentionDays"),
                    "{function}"
                )
            }
            other => panic!("{function}: RetentionInDays is {other:?}"),
        }
    }
}

/// A parameter's default value, as text.
fn default_text(template: &Template, name: &str) -> String {
    match template.parameter_defaults().remove(name) {
        Some(pipewise_local::template::Resolved::Text(text)) => text,
        other => panic!("parameter {name} has no single default: {other:?}"),
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

/// The operator hears of what breaks: a message in any dead-letter queue, any function's errors
/// or throttles, SES's bounce or complaint rate at the level where AWS reviews an account; every
/// alarm notifies the alarm topic.
#[test]
fn every_dead_letter_queue_and_function_has_an_alarm_that_notifies_the_operator() {
    let template = Template::project().unwrap();
    let alarms = template.resources_of_type("AWS::CloudWatch::Alarm");
    let text = |value: &Value| serde_yaml::to_string(value).unwrap();
    let watching = |metric: &str, target: &str| {
        alarms
            .iter()
            .filter(|(_, alarm)| {
                let dimensions = text(&alarm["Properties"]["Dimensions"]);
                alarm["Properties"]["MetricName"] == metric
                    && (dimensions.contains(&format!("{target}\n"))
                        || dimensions.contains(&format!("{target}.QueueName")))
            })
            .count()
    };
    let dead_letter_queues: Vec<String> = template
        .resources_of_type("AWS::SQS::Queue")
        .iter()
        .filter_map(|(_, queue)| queue["Properties"]["RedrivePolicy"].get("deadLetterTargetArn"))
        .map(|arn| {
            text(arn)
                .split_whitespace()
                .last()
                .unwrap()
                .trim_end_matches(".Arn")
                .to_owned()
        })
        .collect();
    assert_eq!(dead_letter_queues.len(), 3, "{dead_letter_queues:?}");
    for queue in &dead_letter_queues {
        assert_eq!(
            watching("ApproximateNumberOfMessagesVisible", queue),
            1,
            "{queue} has no depth alarm"
        );
    }
    for (function, _) in template.resources_of_type("AWS::Serverless::Function") {
        assert_eq!(watching("Errors", &function), 1, "{function}: errors");
        assert_eq!(watching("Throttles", &function), 1, "{function}: throttles");
    }
    let threshold = |metric: &str| {
        alarms
            .iter()
            .find(|(_, alarm)| alarm["Properties"]["MetricName"] == metric)
            .and_then(|(_, alarm)| alarm["Properties"]["Threshold"].as_f64())
    };
    assert_eq!(threshold("Reputation.BounceRate"), Some(0.05));
    assert_eq!(threshold("Reputation.ComplaintRate"), Some(0.001));
    // A webhook event given up on, or one SQS refused, is an alarm at its first occurrence.
    for metric in ["WebhookFailed", "WebhookEventDropped"] {
        let watched = alarms.iter().any(|(_, alarm)| {
            let queries = text(&alarm["Properties"]["Metrics"]);
            queries.contains(&format!("MetricName: {metric}\n"))
                && queries.contains("Namespace: PipeWise")
                && alarm["Properties"]["Threshold"].as_f64() == Some(0.0)
                && alarm["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"
        });
        assert!(watched, "no alarm on {metric}");
    }
    for (name, alarm) in &alarms {
        assert!(
            text(&alarm["Properties"]["AlarmActions"]).contains("AlarmTopic"),
            "{name} notifies nobody"
        );
    }
}
