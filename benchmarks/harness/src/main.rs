//! `pipewise-bench`: the in-process half of `make bench` (docs/benchmarks.md). Runs against
//! the emulator in `AWS_ENDPOINT_URL` with the real routers, stores and SDK clients, and writes
//! one JSON file per measurement into the directory given as its argument:
//!
//! - `warm.json`: p50/p99 per route through the routers vs the same AWS calls made directly;
//! - `calls.json`: AWS calls per route and per email communication, counted at the wire;
//! - `worker.json`: communications per second through the worker vs a bare SQS loop;
//! - `worker_aws.json`: the worker at batch 10 with each AWS call answered `BENCH_LATENCY_MS`
//!   (default 5) later, as AWS would: Lambda time per email and emails/s per instance;
//! - `growth.json`: list and initiate latency as a user's data grows;
//! - `scale.json`: the release tick, CSV import, a 3-step sequence and the reply poller as their
//!   volume grows (`BENCH_SCALE_SIZES`, `BENCH_IMPORT_SIZES`, `BENCH_SEQUENCE_TARGETS` and
//!   `BENCH_MAILBOXES`, each a list of sizes; `BENCH_MAILBOX_MESSAGES`, the new messages at the
//!   largest mailbox count), time and calls per item;
//! - `trust.json`: loading the system's TLS roots vs the bundled ones.
//!
//! `BENCH_SAMPLES` (default 300) timed requests per route, `BENCH_COMMUNICATIONS` (default
//! 1,000) per worker batch size, `BENCH_BATCH_SIZES` (default `1,5,10`), `BENCH_ONLY=warm,
//! calls,...` to run some. `make bench` runs each phase (and each batch size) against a fresh
//! emulator, so that what one phase leaves (its tables, its sent mail) never slows the next. Bench-only: figures are printed and written; the one asserted is AWS calls against
//! their budgets (counts, exact on any machine), which fails the run when one grows.

mod calls;
mod fixture;
mod growth;
mod report;
mod routes;
mod scale;
mod trust;
mod worker;

use std::path::PathBuf;

use pipewise_tests::TestApp;
use serde_json::json;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A list of sizes from `name` (`10,100,1000`), or `default`.
pub(crate) fn sizes(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|sizes| {
            sizes
                .split(',')
                .filter_map(|size| size.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| default.to_vec())
}

fn selected(phase: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| {
        only.split(',').any(|part| part.trim() == phase)
    })
}

#[tokio::main]
async fn main() {
    let directory = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "bench".into()));
    std::fs::create_dir_all(&directory).expect("the results directory");
    let samples = setting("BENCH_SAMPLES", 300);
    let communications = setting("BENCH_COMMUNICATIONS", 1_000);

    if selected("trust") {
        report::write(
            &directory,
            "trust.json",
            report::stamp(),
            trust::measure(50),
        );
    }
    if selected("warm") {
        let app = TestApp::spawn().await;
        let routes = routes::measure(&app, samples, 30).await;
        // Every router, its SDK clients and caches in one process, after the warm load: an
        // upper bound for any one function.
        let rss = report::max_rss_kb();
        report::write(
            &directory,
            "warm.json",
            report::stamp(),
            json!({"samples": samples, "routes": routes, "max_rss_kb": rss}),
        );
    }
    if selected("calls") {
        let app = TestApp::spawn().await;
        let counted = calls::count(&app).await;
        let over = calls::over_budget(&counted);
        report::write(&directory, "calls.json", report::stamp(), counted);
        if !over.is_empty() {
            eprintln!("AWS calls past their budget:\n  {}", over.join("\n  "));
            std::process::exit(1);
        }
    }
    if selected("growth") {
        let app = TestApp::spawn().await;
        report::write(
            &directory,
            "growth.json",
            report::stamp(),
            growth::measure(&app, samples.min(100)).await,
        );
    }
    // The scale parts, each alone (`scale-release`, ...) or together (`scale`); make bench runs
    // each against a fresh emulator, whose memory and transactions grow with what it holds.
    let part = |name: &str| selected("scale") || selected(&format!("scale-{name}"));
    let mut scale = serde_json::Map::new();
    if part("release") {
        let sizes = sizes("BENCH_SCALE_SIZES", &[10, 100, 1_000, 10_000]);
        scale.insert("release".into(), json!(scale::release(&sizes).await));
    }
    if part("import") {
        // Linear since the emulator backs up only a transaction's own items (moto copied the
        // whole table: 10,000 rows took over an hour, now about 16 s).
        let sizes = sizes("BENCH_IMPORT_SIZES", &[10, 100, 1_000, 10_000]);
        scale.insert("import".into(), json!(scale::import(&sizes).await));
    }
    if part("sequence") {
        // Each size's three steps, one after another (its rows carry `size` and `step`).
        let mut steps = Vec::new();
        for targets in sizes("BENCH_SEQUENCE_TARGETS", &[10, 100, 1_000]) {
            steps.extend(scale::sequence(targets).await);
        }
        scale.insert("sequence".into(), json!(steps));
    }
    if part("poller") {
        // The same new messages per mailbox at every size: the largest size's share.
        let mailbox_sizes = sizes("BENCH_MAILBOXES", &[10, 100]);
        let largest = mailbox_sizes.iter().copied().max().unwrap_or(1).max(1);
        let per_mailbox = setting("BENCH_MAILBOX_MESSAGES", 1_000) / largest;
        let mut polls = Vec::new();
        for mailboxes in mailbox_sizes {
            polls.push(scale::poller(mailboxes, mailboxes * per_mailbox).await);
        }
        scale.insert("poller".into(), json!(polls));
    }
    if !scale.is_empty() {
        // Parts measured apart join those written before.
        let path = directory.join("scale.json");
        let mut merged: serde_json::Map<String, serde_json::Value> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        for key in ["date", "machine"] {
            merged.remove(key);
        }
        merged.extend(scale);
        report::write(&directory, "scale.json", report::stamp(), json!(merged));
    }
    if selected("worker-aws") {
        let latency_ms = setting("BENCH_LATENCY_MS", 5) as u64;
        report::write(
            &directory,
            "worker_aws.json",
            report::stamp(),
            worker::measure_modelled(communications, latency_ms).await,
        );
    }
    if selected("worker") {
        // One batch size per emulator when `make bench` runs them apart: merge with the sizes
        // measured before.
        let path = directory.join("worker.json");
        let mut measured = worker::measure(communications).await;
        let earlier: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|file| file["batches"].as_array().cloned())
            .unwrap_or_default();
        if let Some(batches) = measured["batches"].as_array_mut() {
            let new_sizes: Vec<serde_json::Value> = batches
                .iter()
                .map(|batch| batch["batch_size"].clone())
                .collect();
            let mut all: Vec<serde_json::Value> = earlier
                .into_iter()
                .filter(|batch| !new_sizes.contains(&batch["batch_size"]))
                .chain(batches.drain(..))
                .collect();
            all.sort_by_key(|batch| batch["batch_size"].as_i64());
            *batches = all;
        }
        report::write(&directory, "worker.json", report::stamp(), measured);
    }
}
