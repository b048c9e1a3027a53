//! Worker throughput: a run's communications drained from the queue by the worker (as Lambda's
//! event source mapping would: receive a batch, hand it over, delete what it finished), against
//! a bare receive→delete loop over as many messages on the same queue, at batch sizes 1, 5, 10;
//! and a second reading that models AWS's latency (see [`measure_modelled`]).

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use communications_worker::MessageHandler;
use http::Method;
use pipewise::communications::CommunicationsWorker;
use pipewise_tests::TestApp;
use pipewise_tests::fault_proxy::FaultProxy;
use serde_json::{Value, json};

use crate::fixture::{Api, email_account, seed_targets, unique_domain};

/// Throughput at each batch size, each on a fresh stack.
pub async fn measure(communications: usize) -> Value {
    let mut batches = Vec::new();
    for batch_size in crate::sizes("BENCH_BATCH_SIZES", &[1, 5, 10]) {
        let batch_size = i32::try_from(batch_size).unwrap_or(10);
        let app = TestApp::spawn().await;
        let worker = app.worker();
        let drained = drain_a_run(&app, &worker, communications, batch_size).await;
        let sqs = app.sqs();
        let queue = app.queue_url("CommunicationsQueue");
        fill(&sqs, &queue, communications).await;
        let started = Instant::now();
        let bare = bare_loop(&sqs, &queue, batch_size).await;
        let bare_seconds = started.elapsed().as_secs_f64();
        assert_eq!(bare, communications);
        let figure = json!({
            "batch_size": batch_size,
            "worker_per_s": communications as f64 / drained.seconds,
            "bare_per_s": communications as f64 / bare_seconds,
            "worker_seconds": drained.seconds,
            // Messages the worker handed back for a retry (SQS delivered them again).
            "redelivered": drained.redelivered,
            "received": drained.received,
            "bare_seconds": bare_seconds,
        });
        eprintln!("worker {figure}");
        batches.push(figure);
    }
    json!({"communications": communications, "batches": batches})
}

/// The reading that models AWS. The emulator serves one call at a time, so the worker's
/// throughput against it measures the emulator. Two drains of the same size at batch 10 separate
/// what is ours from what is the network's: one with the emulator's answers as they come (the
/// process's CPU time over it is our code's, the SDK's and the proxy's: an upper bound of ours),
/// one with each answer held back ten times `latency_ms` by the recording proxy of the fault tests
/// (calls in flight wait side by side, as over a network). The difference, over that delay, is
/// how many round trips each email waits for one after another given how the worker overlaps its
/// calls; at `latency_ms` each, with our CPU time, it models one function instance on AWS:
/// Lambda's billed time per email and emails per second. Lambda bills the handler only (the
/// event source mapping receives and deletes), so that is what is timed.
pub async fn measure_modelled(communications: usize, latency_ms: u64) -> Value {
    let emulator = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let mut readings = Vec::new();
    // The probe's delay is ten times the model's: the round trips it adds stand out of the
    // emulator's own spread, and their count per batch does not depend on the delay.
    let probe_ms = latency_ms.saturating_mul(10).max(10);
    for latency in [0, probe_ms] {
        // Each drain on a fresh stack (the emulator slows as its tables grow), its run set up
        // at the emulator's speed.
        let direct = TestApp::spawn().await;
        let proxy = FaultProxy::start(&emulator).await;
        let worker = direct.worker_on(&direct.sdk_through(&proxy.url));
        let api = Api::new(&direct, &direct.sdk, USER);
        let domain = unique_domain();
        email_account(&api, &domain, 10_000).await;
        seed_targets(&direct, USER, communications, &domain).await;
        let run = start_run(&api).await;
        proxy.take_calls();
        proxy.set_latency(Duration::from_millis(latency));
        let cpu = crate::report::cpu_seconds();
        let drained = drain(&direct, &api, &worker, &run, communications, 10).await;
        let cpu = crate::report::cpu_seconds() - cpu;
        proxy.set_latency(Duration::ZERO);
        let calls = proxy.take_calls();
        readings.push(json!({
            "latency_ms": latency,
            "handler_ms_per_email": drained.handler_seconds * 1_000.0 / communications as f64,
            "cpu_ms_per_email": cpu * 1_000.0 / communications as f64,
            "calls_per_email": calls.len() as f64 / communications as f64,
            "wall_seconds": drained.seconds,
        }));
    }
    let handler = |reading: &Value| reading["handler_ms_per_email"].as_f64().unwrap_or(0.0);
    // Round trips one after another per email (a batch's overlapping calls count once), then
    // what they cost at the model's delay.
    let round_trips = ((handler(&readings[1]) - handler(&readings[0])) / probe_ms as f64).max(0.0);
    let waits_ms = round_trips * latency_ms as f64;
    let cpu_ms = readings[0]["cpu_ms_per_email"].as_f64().unwrap_or(0.0);
    let modelled_ms = waits_ms + cpu_ms;
    let figure = json!({
        "batch_size": 10,
        "communications": communications,
        "latency_ms": latency_ms,
        "probe_latency_ms": probe_ms,
        "sequential_round_trips_per_email": round_trips,
        "readings": readings,
        "network_ms_per_email": waits_ms,
        "cpu_ms_per_email": cpu_ms,
        "lambda_ms_per_email": modelled_ms,
        "emails_per_s_per_instance": if modelled_ms > 0.0 { 1_000.0 / modelled_ms } else { 0.0 },
    });
    eprintln!("worker (modelled AWS) {figure}");
    figure
}

const USER: &str = "bench-worker";

/// A time-tracking wrapper: how long the handler itself ran (what Lambda bills).
struct Timed<'a, H> {
    inner: &'a H,
    busy: Mutex<Duration>,
}

impl<H: MessageHandler> MessageHandler for Timed<'_, H> {
    fn handle(&self, body: Option<&str>, receives: u32) -> impl Future<Output = bool> + Send {
        self.inner.handle(body, receives)
    }

    async fn handle_all(&self, messages: &[(Option<&str>, u32)]) -> Vec<bool> {
        let started = Instant::now();
        let done = self.inner.handle_all(messages).await;
        *self.busy.lock().expect("timer") += started.elapsed();
        done
    }
}

/// How a run's drain went.
struct Drained {
    seconds: f64,
    handler_seconds: f64,
    received: usize,
    redelivered: usize,
}

async fn start_run(api: &Api) -> String {
    let run = crate::fixture::initiate(api).await;
    run["run_id"].as_str().unwrap_or_default().to_owned()
}

/// Seeds `communications` targets, starts a run and drains it through `worker`.
async fn drain_a_run(
    app: &TestApp,
    worker: &CommunicationsWorker,
    communications: usize,
    batch_size: i32,
) -> Drained {
    let api = Api::new(app, &app.sdk, USER);
    let domain = unique_domain();
    email_account(&api, &domain, 10_000).await;
    seed_targets(app, USER, communications, &domain).await;
    let run = start_run(&api).await;
    drain(app, &api, worker, &run, communications, batch_size).await
}

/// Drains the run's messages as Lambda's event source mapping would, until it is finished.
async fn drain(
    app: &TestApp,
    api: &Api,
    worker: &CommunicationsWorker,
    run_id: &str,
    communications: usize,
    batch_size: i32,
) -> Drained {
    let timed = Timed {
        inner: worker,
        busy: Mutex::new(Duration::ZERO),
    };
    let sqs = app.sqs();
    let queue = app.queue_url("CommunicationsQueue");
    let path = format!("/api/user/orchestrator/runs/{run_id}");
    let started = Instant::now();
    let (mut received, mut redelivered) = (0, 0);
    loop {
        let report = pipewise_local::queue_poller::poll_batch(&sqs, &queue, &timed, 0, batch_size)
            .await
            .expect("poll");
        received += report.received;
        redelivered += report.failed;
        if report.received == 0 {
            // Empty: done, unless a message the worker handed back (a transient failure) is
            // still invisible; then wait for SQS to deliver it again, as Lambda would.
            let view = api.expect(Method::GET, &path, None, 200).await;
            if view["counts"]["pending"] == 0 {
                break;
            }
            assert!(
                started.elapsed().as_secs() < 600,
                "the run never finished: {}",
                view["counts"]
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let view = api.expect(Method::GET, &path, None, 200).await;
    assert_eq!(
        view["counts"]["sent"], communications,
        "every email sent: {}",
        view["counts"]
    );
    let handler_seconds = timed.busy.lock().expect("timer").as_secs_f64();
    Drained {
        seconds,
        handler_seconds,
        received,
        redelivered,
    }
}

async fn fill(sqs: &aws_sdk_sqs::Client, queue: &str, count: usize) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(10) {
        let entries = chunk
            .iter()
            .map(|i| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(format!("{{\"bench\":{i}}}"))
                    .build()
                    .expect("entry")
            })
            .collect();
        sqs.send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("fill the queue");
    }
}

/// Receive up to `batch_size`, delete them, until the queue is empty.
async fn bare_loop(sqs: &aws_sdk_sqs::Client, queue: &str, batch_size: i32) -> usize {
    let mut drained = 0;
    loop {
        let messages = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(batch_size)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            return drained;
        }
        drained += messages.len();
        let entries = messages
            .iter()
            .enumerate()
            .filter_map(|(position, message)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(position.to_string())
                    .receipt_handle(message.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        sqs.delete_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("delete");
    }
}
