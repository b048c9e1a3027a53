//! `pipewise-rotate-keys`: re-wraps every stored data key of the accounts table under another KMS
//! key with KMS `ReEncrypt` (see `pipewise_ops::key_rotation` for what it guarantees).
//!
//! Locally `make rotate-keys TO=<key>` runs it against the dev emulator; in AWS it runs as-is
//! (a one-off task or a shell with the deployment's credentials) with the functions' own
//! `ACCOUNTS_TABLE` and the standard `AWS_*` settings. It needs `kms:DescribeKey` and
//! `kms:ReEncryptTo` on the new key, `kms:ReEncryptFrom` on the old one, and `dynamodb:Scan`,
//! `GetItem`, `UpdateItem` and `DescribeTable` on the table.

use std::io::IsTerminal;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pipewise::config::vars;
use pipewise_ops::key_rotation::{KeyRotation, RotationCounts, RotationReport};

const USAGE: &str = "\
usage: pipewise-rotate-keys --to <key id | key ARN | alias> [--dry-run] [--max-items N]

  --to KEY        the KMS key to re-wrap every data key under (or the variable TO)
  --dry-run       count what would be re-wrapped; change nothing
  --max-items N   stop after re-wrapping N items (run again to continue)

The table comes from ACCOUNTS_TABLE, exactly as the functions have it (its name is part of
every envelope's encryption context); region, credentials and endpoint from the usual AWS_*
variables. Order: 1. deploy with SECRETS_KMS_KEY_ID set to the new key; 2. run this until it
re-wraps nothing; 3. disable the old key.";

/// Without a terminal (a log), one progress line per this many items.
const PLAIN_PROGRESS_EVERY: usize = 500;

/// What the command line asks for.
struct Options {
    to: String,
    dry_run: bool,
    max_items: Option<usize>,
}

/// Reads the arguments; `Ok(None)` for `--help`.
fn parse_options(
    mut args: impl Iterator<Item = String>,
    to_from_env: Option<String>,
) -> Result<Option<Options>, String> {
    let mut to = to_from_env.filter(|key| !key.is_empty());
    let mut dry_run = false;
    let mut max_items = None;
    while let Some(arg) = args.next() {
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || {
            inline_value
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--to" => to = Some(value()?),
            "--dry-run" => dry_run = true,
            "--max-items" => {
                let text = value()?;
                let count = text
                    .parse::<usize>()
                    .ok()
                    .filter(|count| *count > 0)
                    .ok_or_else(|| format!("--max-items needs a positive number, not {text}"))?;
                max_items = Some(count);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let to = to
        .filter(|key| !key.is_empty())
        .ok_or("say which key to rotate to: --to <key> or TO=<key>")?;
    Ok(Some(Options {
        to,
        dry_run,
        max_items,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_options(std::env::args().skip(1), std::env::var("TO").ok()) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("pipewise-rotate-keys: {problem}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(table) = std::env::var(vars::ACCOUNTS_TABLE)
        .ok()
        .filter(|table| !table.is_empty())
    else {
        eprintln!(
            "pipewise-rotate-keys: set {} to the accounts table",
            vars::ACCOUNTS_TABLE
        );
        return ExitCode::from(2);
    };
    let sdk = pipewise::aws::sdk_config().await;
    let rotation = KeyRotation {
        dry_run: options.dry_run,
        max_items: options.max_items,
        ..KeyRotation::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            aws_sdk_kms::Client::new(&sdk),
            table,
            options.to,
        )
    };
    let bar = progress_bar(&rotation).await;
    // Every item is one conditional write, so stopping between two leaves nothing half done.
    let outcome = tokio::select! {
        outcome = rotation.run(|counts| show_progress(bar.as_ref(), counts)) => outcome,
        _ = tokio::signal::ctrl_c() => {
            if let Some(bar) = &bar {
                bar.abandon();
            }
            eprintln!(
                "pipewise-rotate-keys: interrupted; what was re-wrapped stays so, run again to finish"
            );
            return ExitCode::from(130);
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match outcome {
        Ok(report) => {
            print_report(&report);
            if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("pipewise-rotate-keys: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A progress bar on stderr when it is a terminal; `None` (plain lines) otherwise.
async fn progress_bar(rotation: &KeyRotation) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let estimate = rotation.estimated_items().await;
    let template = match estimate {
        Some(_) => "{spinner} {elapsed_precise} [{wide_bar}] {pos}/~{len} items  {msg}",
        None => "{spinner} {elapsed_precise} {pos} items  {msg}",
    };
    let bar = ProgressBar::with_draw_target(estimate, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}

fn show_progress(bar: Option<&ProgressBar>, counts: &RotationCounts) {
    let summary = format!(
        "re-wrapped {}, already on target {}, failed {}",
        counts.rewrapped, counts.already_on_target, counts.failed
    );
    match bar {
        Some(bar) => {
            let scanned = u64::try_from(counts.scanned).unwrap_or(u64::MAX);
            // DynamoDB's item count is approximate: never let the bar run past its end.
            if bar.length().is_some_and(|length| length < scanned) {
                bar.set_length(scanned);
            }
            bar.set_position(scanned);
            bar.set_message(summary);
        }
        None if counts.scanned.is_multiple_of(PLAIN_PROGRESS_EVERY) => {
            eprintln!(
                "pipewise-rotate-keys: {} items read, {summary}",
                counts.scanned
            );
        }
        None => {}
    }
}

fn print_report(report: &RotationReport) {
    let counts = &report.counts;
    let rewrapped = if report.dry_run {
        "would re-wrap:"
    } else {
        "re-wrapped:"
    };
    println!("target key:              {}", report.target_key_arn);
    println!("items read:              {}", counts.scanned);
    println!("{rewrapped:<25}{}", counts.rewrapped);
    println!("already on target:       {}", counts.already_on_target);
    println!(
        "without secrets:         {}",
        counts.skipped_without_secrets
    );
    println!("deleted meanwhile:       {}", counts.deleted_meanwhile);
    println!("retried after conflict:  {}", counts.retried_after_conflict);
    println!("failed:                  {}", counts.failed);
    for failed in &report.failed {
        println!(
            "  failed {}/{}: {}",
            failed.user_id, failed.account_id, failed.reason
        );
    }
    if report.dry_run {
        println!("dry run: nothing was changed");
    }
    if report.stopped_early {
        println!("stopped at --max-items: run again to continue");
    } else if !report.dry_run && report.failed.is_empty() && counts.rewrapped == 0 {
        println!("nothing left under another key: the old key can be disabled");
    }
}
