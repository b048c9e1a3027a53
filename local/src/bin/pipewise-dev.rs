//! `make dev`: starts the AWS emulator, creates its resources from template.yaml, and serves
//! every function on 127.0.0.1:8001 until Ctrl-C or SIGTERM, which also stops the emulator.
//!
//! Usage: `pipewise-dev [--emulator PATH] [--listen ADDR] [--stack NAME] [--idp cognito]` with
//! `AWS_ENDPOINT_URL` (and dummy credentials and a region) in the environment, as the Makefile
//! sets them. With `--emulator` it starts moto at `AWS_ENDPOINT_URL` and stops it on exit; without,
//! it uses the emulator already there (the contract tests share `make test`'s emulator).

use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::Duration;

use communications_worker::MessageHandler;
use pipewise::config::ConfigSource;
use pipewise_local::app::{api_router, local_environment};
use pipewise_local::dev_auth::{cognito_parameters, dev_parameters};
use pipewise_local::queue_poller::poll_once;
use pipewise_local::stack::LocalStack;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

const DEFAULT_LISTEN: &str = "127.0.0.1:8001";
const DEFAULT_STACK: &str = "pipewise-dev";
/// The pollers' long-poll wait: under the SDK's attempt timeout (5 s), or every empty poll ended
/// as a timeout error (logged, then a 2 s pause) instead of an empty answer.
const POLL_WAIT_SECONDS: i32 = 4;
/// How often the schedules run under `make dev`.
const RUN_SCHEDULES_EVERY: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    pipewise::telemetry::init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pipewise-dev: {error}");
            ExitCode::FAILURE
        }
    }
}

struct Options {
    emulator: Option<String>,
    listen: String,
    stack: String,
    /// `cognito`: the template's own user pool in the emulator; otherwise development HS256.
    idp: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        emulator: None,
        listen: DEFAULT_LISTEN.to_owned(),
        stack: DEFAULT_STACK.to_owned(),
        idp: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--emulator" => options.emulator = Some(value),
            "--listen" => options.listen = value,
            "--stack" => options.stack = value,
            "--idp" => options.idp = Some(value).filter(|idp| !idp.is_empty()),
            _ => {
                return Err(format!(
                    "unknown option {flag}; see the header of pipewise-dev.rs"
                ));
            }
        }
    }
    Ok(options)
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let options = options()?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").map_err(|_| "AWS_ENDPOINT_URL is not set")?;
    let emulator_address = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let Some(moto_server) = &options.emulator else {
        return serve(&options, &emulator_address, &endpoint).await;
    };
    let (host, port) = emulator_address
        .split_once(':')
        .ok_or("AWS_ENDPOINT_URL needs host:port")?;
    let mut command = std::process::Command::new(moto_server);
    command.args(["-H", host, "-p", port]);
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: prctl is async-signal-safe; it asks the kernel to stop the emulator if we die.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut emulator = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()?;
    let result = serve(&options, &emulator_address, &endpoint).await;
    let _ = emulator.start_kill();
    let _ = emulator.wait().await;
    eprintln!("pipewise-dev: stopped (emulator stopped too)");
    result
}

/// The URL of one of the template's queues in the local stack.
fn queue_of(stack: &LocalStack, logical_id: &str) -> Result<String, String> {
    stack
        .physical
        .get(logical_id)
        .cloned()
        .ok_or_else(|| format!("template.yaml has no {logical_id}"))
}

/// What an EventBridge schedule does for one job: runs it every `period`, logging a failure.
fn spawn_every<Job, Run, Failure>(period: Duration, what: &'static str, job: Job)
where
    Job: Fn() -> Run + Send + 'static,
    Run: Future<Output = Result<(), Failure>> + Send,
    Failure: std::fmt::Display,
{
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            if let Err(error) = job().await {
                eprintln!("pipewise-dev: {what} failed: {error}");
            }
        }
    });
}

/// What Lambda's event source mapping does for one queue: receive, run the handler, delete
/// what it finished; a failed poll is logged and retried after a pause.
fn spawn_poller<H: MessageHandler + Send + Sync + 'static>(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    handler: H,
    name: &'static str,
) {
    tokio::spawn(async move {
        loop {
            if let Err(error) = poll_once(&sqs, &queue_url, &handler, POLL_WAIT_SECONDS).await {
                eprintln!("pipewise-dev: {name} queue poll failed: {error}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    });
}

async fn serve(
    options: &Options,
    emulator_address: &str,
    endpoint: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    wait_for(emulator_address).await?;
    let sdk = pipewise::aws::sdk_config().await;
    let parameters = match options.idp.as_deref() {
        None | Some("dev") => dev_parameters(),
        Some("cognito") => cognito_parameters(),
        Some(other) => {
            return Err(format!("unknown IDP {other}: use cognito or leave it out").into());
        }
    };
    let stack = LocalStack::create(&sdk, &options.stack, &parameters).await?;
    let mut environment = local_environment(&stack);
    // Any of the template's variables set in make dev's own environment wins (e.g.
    // `X_API_BASE_URL=http://127.0.0.1:9100 make dev` points the worker at a local stand-in).
    for (name, value) in environment.iter_mut() {
        if let Ok(overridden) = std::env::var(name) {
            eprintln!("pipewise-dev: {name} from the environment");
            *value = overridden;
        }
    }
    write_env_file(&environment, endpoint)?;
    let source = ConfigSource::from_map(&environment);
    let router = api_router(&source, &sdk)?;
    let worker = communications_worker::worker_from_config(&source, &sdk)?;
    let queue_url = environment
        .get(pipewise::config::vars::COMMUNICATIONS_QUEUE_URL)
        .cloned()
        .ok_or("template.yaml gives no COMMUNICATIONS_QUEUE_URL")?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    // The same handlers Lambda runs, fed by pollers instead of event source mappings, and the
    // schedules as timers: the worker's release tick (every minute in AWS) and the mailbox poll
    // (every 5 minutes in AWS), both every 30 s here so a due send or a reply shows soon.
    let release = worker.clone();
    spawn_every(
        RUN_SCHEDULES_EVERY,
        "releasing scheduled communications",
        move || {
            let release = release.clone();
            async move { release.tick().await.map(drop) }
        },
    );
    let replies = worker.clone();
    spawn_every(
        RUN_SCHEDULES_EVERY,
        "reading mailboxes for replies",
        move || {
            let replies = replies.clone();
            async move { replies.poll_replies().await.map(drop) }
        },
    );
    let feedback = communications_worker::feedback_from_config(&source, &sdk)?;
    spawn_poller(
        sqs.clone(),
        queue_of(&stack, "EmailFeedbackQueue")?,
        feedback,
        "feedback",
    );
    let deliverer = communications_worker::webhook_deliverer_from_config(&source, &sdk)?;
    spawn_poller(
        sqs.clone(),
        queue_of(&stack, "WebhookQueue")?,
        deliverer,
        "webhook",
    );
    spawn_poller(sqs, queue_url, worker, "communications");
    let listener = TcpListener::bind(&options.listen).await?;
    let address = &options.listen;
    println!("PipeWise User API (local) on http://{address}/api/user  (emulator: {endpoint})");
    println!("  health: curl http://{address}/api/user/health");
    match environment
        .get(pipewise::config::vars::JWT_TOKEN_USE)
        .map(String::as_str)
    {
        Some("cognito_access") => println!(
            "  token:  make token SUB=alice            (a real Cognito access token of the pool; SCOPE=pipewise-user-api/secrets.read for /secrets)"
        ),
        _ => println!(
            "  token:  make token SUB=alice            (add SCOPE=integrations:secrets:read for /secrets)"
        ),
    }
    println!(
        "  call:   curl -H \"Authorization: Bearer $(make -s token SUB=alice)\" http://{address}/api/user/integrations/accounts"
    );
    println!(
        "  email:  save an email account, then read it: the emulator's SES verifies the sender the claim asked for at once (in AWS, its owner follows SES's link)"
    );
    println!(
        "  one function under cargo-lambda: cargo lambda watch --env-file {ENV_FILE}, then cargo lambda invoke accounts --data-file events/accounts-list.json"
    );
    println!("  stop:   Ctrl-C or SIGTERM");
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
        .await?;
    Ok(())
}

/// Where the functions' local environment is written, for `cargo lambda watch --env-file`.
const ENV_FILE: &str = ".dev.env";

/// Writes the environment each function runs with locally (resolved from template.yaml, plus the
/// emulator's endpoint and dummy credentials), so single functions can be run with cargo-lambda.
fn write_env_file(
    environment: &std::collections::HashMap<String, String>,
    endpoint: &str,
) -> std::io::Result<()> {
    let mut lines: Vec<String> = environment
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    lines.sort();
    for (name, value) in [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ] {
        lines.push(format!("{name}={value}"));
    }
    std::fs::write(ENV_FILE, lines.join("\n") + "\n")
}

async fn wait_for(address: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the emulator did not start on {address} within 30 s").into())
}
