//! Worker throughput: a run's communications drained from the queue by the worker (as Lambda's
//! event source mapping would: receive a batch, hand it over, delete what it finished), against
//! a bare receive→delete loop over as many messages on the same queue, at batch sizes 1, 5, 10.

use std::time::Instant;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use http::Method;
use pipewise_tests::TestApp;
use serde_json::{Value, json};

use crate::fixture::{Api, email_account, outreach_message, seed_targets, unique_domain};

/// Throughput at each batch size, each on a fresh stack.
pub async fn measure(communications: usize) -> Value {
    let mut batches = Vec::new();
    let sizes: Vec<i32> = std::env::var("BENCH_BATCH_SIZES")
        .ok()
        .map(|sizes| {
            sizes
                .split(',')
                .filter_map(|size| size.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![1, 5, 10]);
    for batch_size in sizes {
        let app = TestApp::spawn().await;
        let user = "bench-worker";
        let api = Api::new(&app, &app.sdk, user);
        let domain = unique_domain();
        email_account(&api, &domain, 10_000).await;
        seed_targets(&app, user, communications, &domain).await;
        let run = api
            .expect(
                Method::POST,
                "/api/user/orchestrator/initiate-communications",
                Some(&outreach_message()),
                202,
            )
            .await;
        let worker = app.worker();
        let sqs = app.sqs();
        let queue = app.queue_url("CommunicationsQueue");
        let path = format!(
            "/api/user/orchestrator/runs/{}",
            run["run_id"].as_str().unwrap_or_default()
        );
        let started = Instant::now();
        let (mut handled, mut failed) = (0, 0);
        loop {
            let report =
                pipewise_local::queue_poller::poll_batch(&sqs, &queue, &worker, 0, batch_size)
                    .await
                    .expect("poll");
            handled += report.received;
            failed += report.failed;
            if report.received == 0 {
                // Empty: done, unless a message the worker handed back (a transient failure)
                // is still invisible; then wait for SQS to deliver it again, as Lambda would.
                let view = api.expect(Method::GET, &path, None, 200).await;
                if view["counts"]["pending"] == 0 {
                    break;
                }
                assert!(
                    started.elapsed().as_secs() < 600,
                    "the run never finished: {}",
                    view["counts"]
                );
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        let worker_seconds = started.elapsed().as_secs_f64();
        let view = api.expect(Method::GET, &path, None, 200).await;
        assert_eq!(
            view["counts"]["sent"], communications,
            "every email sent: {}",
            view["counts"]
        );

        fill(&sqs, &queue, communications).await;
        let started = Instant::now();
        let drained = bare_loop(&sqs, &queue, batch_size).await;
        let bare_seconds = started.elapsed().as_secs_f64();
        assert_eq!(drained, communications);
        let figure = json!({
            "batch_size": batch_size,
            "worker_per_s": communications as f64 / worker_seconds,
            "bare_per_s": communications as f64 / bare_seconds,
            "worker_seconds": worker_seconds,
            // Messages the worker handed back for a retry (SQS delivered them again).
            "redelivered": failed,
            "received": handled,
            "bare_seconds": bare_seconds,
        });
        eprintln!("worker {figure}");
        batches.push(figure);
    }
    json!({"communications": communications, "batches": batches})
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
