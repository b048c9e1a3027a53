//! A fault-injecting proxy in front of the emulator: the service's own SDK clients reach it
//! through `endpoint_url` (the standard setting), it forwards every call unchanged and records
//! which AWS operation each one was, and on request it fails a chosen operation the way AWS
//! fails it: throttling, a 500, `ProvisionedThroughputExceeded`, a `TransactionConflict`, a
//! disabled KMS key, a dropped connection, an answer that never comes, or the whole endpoint
//! going down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// How a call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The service's throttling error (`ThrottlingException`; SES: 429 `TooManyRequests`).
    Throttling,
    /// HTTP 500 `InternalServerError`.
    ServerError,
    /// DynamoDB's `ProvisionedThroughputExceededException`.
    ThroughputExceeded,
    /// DynamoDB's `TransactionCanceledException` with reason `TransactionConflict`.
    TransactionConflict,
    /// KMS's `DisabledException`: the key was disabled.
    KeyDisabled,
    /// The request arrives and the connection closes without an answer.
    DroppedConnection,
    /// The request arrives and no answer comes for five seconds (past the client's timeout).
    Hang,
    /// From this call on, the endpoint refuses every connection (the emulator stopped).
    Down,
    /// The call reaches AWS and is applied, and its answer is lost (the connection closes):
    /// the SDK retries a call that already happened. Not in [`Fault::ALL`]; used by the tests
    /// of at-most-once claims.
    LostAnswer,
}

impl Fault {
    /// Every fault, in the order the matrix tries them.
    pub const ALL: [Fault; 8] = [
        Fault::Throttling,
        Fault::ServerError,
        Fault::ThroughputExceeded,
        Fault::TransactionConflict,
        Fault::KeyDisabled,
        Fault::DroppedConnection,
        Fault::Hang,
        Fault::Down,
    ];

    /// Whether AWS can answer `operation` (`service:Operation`) this way.
    pub fn applies_to(self, operation: &str) -> bool {
        match self {
            Fault::ThroughputExceeded => operation.starts_with("dynamodb:"),
            Fault::TransactionConflict => operation == "dynamodb:TransactWriteItems",
            Fault::KeyDisabled => matches!(
                operation,
                "kms:Decrypt" | "kms:Encrypt" | "kms:GenerateDataKey" | "kms:ReEncrypt"
            ),
            _ => true,
        }
    }
}

/// Which calls of the operation fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Only the chosen call (a blip the SDK's retry or ours should absorb).
    Once,
    /// The chosen call and every later one (an outage starting there).
    Always,
}

/// The cases for the `occurrence`-th call of `operation`: each fault AWS can answer it with,
/// as a blip where a blip differs from an outage (throttling, a 500, a conflict), and as an
/// outage. Slow faults (no answer at all) are tried on an operation's first call only: for
/// the service a hang ends as a dropped connection does, after its timeout.
pub fn cases_for(operation: &str, occurrence: usize) -> Vec<(Fault, Persistence)> {
    let mut cases = Vec::new();
    for fault in Fault::ALL
        .into_iter()
        .filter(|fault| fault.applies_to(operation))
    {
        if fault == Fault::Hang && occurrence > 1 {
            continue;
        }
        if matches!(
            fault,
            Fault::Throttling
                | Fault::ServerError
                | Fault::ThroughputExceeded
                | Fault::TransactionConflict
        ) {
            cases.push((fault, Persistence::Once));
        }
        cases.push((fault, Persistence::Always));
    }
    cases
}

/// Each call of a recorded sequence as `(operation, occurrence)`: the second `dynamodb:GetItem`
/// is `("dynamodb:GetItem", 2)`.
pub fn occurrences(calls: &[String]) -> Vec<(String, usize)> {
    let mut counts = std::collections::HashMap::new();
    calls
        .iter()
        .map(|call| {
            let count = counts.entry(call.clone()).or_insert(0);
            *count += 1;
            (call.clone(), *count)
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Rule {
    operation: String,
    /// The call of `operation` (1 = its first since the rule was set) that fails first.
    occurrence: usize,
    seen: usize,
    fault: Fault,
    persistence: Persistence,
    fired: usize,
}

#[derive(Default)]
struct State {
    calls: Vec<String>,
    /// The IAM actions each call needs (a transaction's per item), in order.
    actions: Vec<String>,
    /// Operations the emulator answered with a 2xx (e.g. emails SES accepted).
    accepted: Vec<String>,
    rule: Option<Rule>,
    down: bool,
    /// Added to every answer: a network as far away as AWS is from a Lambda function.
    latency: Duration,
}

/// A running proxy.
#[derive(Clone)]
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`, to use as the SDK's endpoint URL.
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (the emulator's URL) on a random local port.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let state = Arc::new(Mutex::new(State::default()));
        let proxy = Self {
            url,
            state: state.clone(),
        };
        let upstream = upstream.trim_end_matches('/').to_owned();
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("proxy client");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if state.lock().expect("proxy state").down {
                    drop(stream);
                    continue;
                }
                let (state, upstream, client) = (state.clone(), upstream.clone(), client.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        forward(request, state.clone(), upstream.clone(), client.clone())
                    });
                    // A service error closes the connection without an answer: that is the
                    // dropped-connection fault.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        proxy
    }

    /// Fails the `occurrence`-th call (1-based, counted from now) of `operation`
    /// (`service:Operation`, as [`FaultProxy::take_calls`] names them): that call only, or that
    /// one and every later one.
    pub fn inject(
        &self,
        operation: &str,
        occurrence: usize,
        fault: Fault,
        persistence: Persistence,
    ) {
        let mut state = self.state.lock().expect("proxy state");
        state.rule = Some(Rule {
            operation: operation.to_owned(),
            occurrence,
            seen: 0,
            fault,
            persistence,
            fired: 0,
        });
    }

    /// Removes the fault (and brings a downed endpoint back).
    pub fn heal(&self) {
        let mut state = self.state.lock().expect("proxy state");
        state.rule = None;
        state.down = false;
    }

    /// Delays every answer by `latency` (the benchmarks' model of AWS's round trip; calls in
    /// flight wait side by side, as they would over the network).
    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().expect("proxy state").latency = latency;
    }

    /// How many calls the fault has failed.
    pub fn fired(&self) -> usize {
        let state = self.state.lock().expect("proxy state");
        state.rule.as_ref().map_or(0, |rule| rule.fired)
    }

    /// How many calls of `operation` the emulator accepted (2xx) since the last call of this.
    pub fn take_accepted(&self, operation: &str) -> usize {
        let accepted = std::mem::take(&mut self.state.lock().expect("proxy state").accepted);
        accepted.iter().filter(|call| *call == operation).count()
    }

    /// The operations called since the last [`FaultProxy::take_calls`], in order.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().expect("proxy state").calls)
    }

    /// The IAM actions the calls since the last take needed, as a policy names them, each with
    /// the DynamoDB table (and index) it acted on: `dynamodb:Query@table/index/name`; see
    /// [`actions_of`].
    pub fn take_actions(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().expect("proxy state").actions)
    }
}

/// The IAM actions one call needs: SES v2's operations under `ses:`; SQS's batch operations as
/// their single ones (SQS authorizes `SendMessageBatch` by `sqs:SendMessage`); a DynamoDB call
/// per table it names (`@table`, `@table/index/name`), a `TransactWriteItems` as the action of
/// each of its items (IAM authorizes a transaction per item: `PutItem`, `UpdateItem`,
/// `DeleteItem`, `ConditionCheckItem`), a `BatchGetItem` or `BatchWriteItem` once per table.
pub fn actions_of(operation: &str, body: &[u8]) -> Vec<String> {
    if let Some(ses) = operation.strip_prefix("sesv2:") {
        return vec![format!("ses:{ses}")];
    }
    if let Some(sqs) = operation.strip_prefix("sqs:") {
        return vec![format!("sqs:{}", sqs.trim_end_matches("Batch"))];
    }
    if !operation.starts_with("dynamodb:") {
        return vec![operation.to_owned()];
    }
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let on = |action: &str, table: &str, index: Option<&str>| match index {
        Some(index) => format!("{action}@{table}/index/{index}"),
        None => format!("{action}@{table}"),
    };
    let mut actions: Vec<String> = match operation {
        "dynamodb:TransactWriteItems" => request["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let (kind, write) = item.as_object()?.iter().next()?;
                let action = match kind.as_str() {
                    "ConditionCheck" => "dynamodb:ConditionCheckItem".to_owned(),
                    other => format!("dynamodb:{other}Item"),
                };
                Some(on(&action, write["TableName"].as_str()?, None))
            })
            .collect(),
        "dynamodb:BatchGetItem" | "dynamodb:BatchWriteItem" => request["RequestItems"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(table, _)| on(operation, table, None))
            .collect(),
        _ => match request["TableName"].as_str() {
            Some(table) => vec![on(operation, table, request["IndexName"].as_str())],
            None => vec![operation.to_owned()],
        },
    };
    actions.sort();
    actions.dedup();
    actions
}

/// `service:Operation` of a request: from `X-Amz-Target` (DynamoDB, KMS, SQS, Secrets Manager,
/// Cognito) or from SES v2's REST paths.
pub fn operation_of(method: &str, path: &str, target: Option<&str>) -> String {
    if let Some(target) = target {
        let (prefix, operation) = target.split_once('.').unwrap_or(("", target));
        let service = match prefix {
            p if p.starts_with("DynamoDB") => "dynamodb",
            "TrentService" => "kms",
            "AmazonSQS" => "sqs",
            "secretsmanager" => "secretsmanager",
            p if p.starts_with("AWSCognitoIdentityProvider") => "cognito-idp",
            other => other,
        };
        return format!("{service}:{operation}");
    }
    let operation = match (method, path) {
        ("POST", "/v2/email/outbound-emails") => "SendEmail",
        ("GET", p) if p.starts_with("/v2/email/identities/") => "GetEmailIdentity",
        ("POST", "/v2/email/identities") => "CreateEmailIdentity",
        ("DELETE", p) if p.starts_with("/v2/email/identities/") => "DeleteEmailIdentity",
        _ => return format!("http:{method} {path}"),
    };
    format!("sesv2:{operation}")
}

async fn forward(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
    upstream: String,
    client: reqwest::Client,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok());
    let operation = operation_of(parts.method.as_str(), parts.uri.path(), target);
    let fault = {
        let mut state = state.lock().expect("proxy state");
        // Kept-alive connections of a downed endpoint fail too.
        if state.down {
            return Err(std::io::Error::other("down"));
        }
        state.calls.push(operation.clone());
        let actions = actions_of(&operation, &body);
        state.actions.extend(actions);
        let matched = state.rule.as_mut().is_some_and(|rule| {
            if rule.operation != operation {
                return false;
            }
            rule.seen += 1;
            match rule.persistence {
                Persistence::Once => rule.seen == rule.occurrence,
                Persistence::Always => rule.seen >= rule.occurrence,
            }
        });
        match &mut state.rule {
            Some(rule) if matched => {
                rule.fired += 1;
                let fault = rule.fault;
                if fault == Fault::Down {
                    state.down = true;
                }
                Some(fault)
            }
            _ => None,
        }
    };
    if let Some(fault) = fault.filter(|fault| *fault != Fault::LostAnswer) {
        return fail(fault, &operation, &body).await;
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |value| value.as_str());
    let mut forwarded = client.request(parts.method.clone(), format!("{upstream}{path_and_query}"));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            forwarded = forwarded.header(name, value);
        }
    }
    let answer = forwarded
        .body(body)
        .send()
        .await
        .map_err(std::io::Error::other)?;
    let latency = {
        let mut state = state.lock().expect("proxy state");
        if answer.status().is_success() {
            state.accepted.push(operation);
        }
        state.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if fault == Some(Fault::LostAnswer) {
        return Err(std::io::Error::other("the answer was lost"));
    }
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.map_err(std::io::Error::other)?;
    response
        .body(Full::new(bytes))
        .map_err(std::io::Error::other)
}

async fn fail(
    fault: Fault,
    operation: &str,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let json = |status: u16, code: &str, extra: serde_json::Value| {
        let mut body =
            serde_json::json!({"__type": code, "message": "injected by the fault proxy"});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amzn-errortype", code)
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(std::io::Error::other)
    };
    let none = serde_json::Value::Null;
    match fault {
        Fault::Throttling if operation.starts_with("sesv2:") => {
            json(429, "TooManyRequestsException", none)
        }
        Fault::Throttling => json(400, "ThrottlingException", none),
        Fault::ServerError => json(500, "InternalServerError", none),
        Fault::ThroughputExceeded => json(400, "ProvisionedThroughputExceededException", none),
        Fault::KeyDisabled => json(400, "DisabledException", none),
        Fault::TransactionConflict => {
            // One reason per item of the transaction, the first one conflicting.
            let items = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|request| request["TransactItems"].as_array().map(Vec::len))
                .unwrap_or(1);
            let reasons: Vec<serde_json::Value> = (0..items)
                .map(|position| {
                    if position == 0 {
                        serde_json::json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"})
                    } else {
                        serde_json::json!({"Code": "None"})
                    }
                })
                .collect();
            json(
                400,
                "TransactionCanceledException",
                serde_json::json!({"CancellationReasons": reasons}),
            )
        }
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Err(std::io::Error::other("hung"))
        }
        Fault::DroppedConnection | Fault::Down | Fault::LostAnswer => {
            Err(std::io::Error::other("dropped"))
        }
    }
}
