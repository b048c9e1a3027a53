//! How latency grows with a user's data: the first page of targets for a user holding 10 to
//! 10,000, and initiating a run of 10 to 1,000 communications.

use std::time::Instant;

use http::Method;
use pipewise_tests::TestApp;
use serde_json::{Value, json};

use crate::fixture::{Api, email_account, seed_targets, unique_domain};
use crate::report::{ms, percentile};

/// Both curves.
pub async fn measure(app: &TestApp, samples: usize) -> Value {
    // Runs first, while the emulator holds little: it copies every table on each transaction,
    // so 10,000 targets seeded first would slow every later write.
    let mut initiate = Vec::new();
    for communications in [10, 100, 1_000] {
        // Three runs per size (one of 1,000: the emulator takes tens of seconds per run of
        // that size), each its own user (a user may start 10 runs a minute).
        let rounds = if communications >= 1_000 { 1 } else { 3 };
        let (mut latencies, mut seeding) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let user = format!("bench-initiate-{communications}-{round}");
            let api = Api::new(app, &app.sdk, &user);
            let domain = unique_domain();
            email_account(&api, &domain, 10_000).await;
            // The seed writes as many items with BatchWriteItem as the run will: the
            // emulator's own cost for that volume, beside the initiate's.
            let started = Instant::now();
            seed_targets(app, &user, communications, &domain).await;
            seeding.push(started.elapsed().as_secs_f64() * 1000.0);
            let started = Instant::now();
            let answer = crate::fixture::initiate(&api).await;
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(answer["queued"], communications, "{answer}");
        }
        let figure = json!({"communications": communications,
            "ms": ms(percentile(&latencies, 50.0)),
            "seed_ms": ms(percentile(&seeding, 50.0))});
        eprintln!("growth initiate {figure}");
        initiate.push(figure);
    }
    let mut list = Vec::new();
    for targets in [10, 100, 1_000, 10_000] {
        let user = format!("bench-list-{targets}");
        let api = Api::new(app, &app.sdk, &user);
        seed_targets(app, &user, targets, &unique_domain()).await;
        let mut latencies = Vec::with_capacity(samples);
        for sample in 0..samples + 10 {
            let started = Instant::now();
            api.expect(Method::GET, "/api/user/communication-targets", None, 200)
                .await;
            if sample >= 10 {
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let figure = json!({"targets": targets, "p50_ms": ms(percentile(&latencies, 50.0)),
            "p99_ms": ms(percentile(&latencies, 99.0))});
        eprintln!("growth list {figure}");
        list.push(figure);
    }
    json!({"list": list, "initiate": initiate})
}
