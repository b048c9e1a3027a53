//! `make migrate DATABASE_URL=postgres://... PIPEWISE_FERNET_KEY=...`: copies the old Supabase
//! tables into this service's tables (see `pipewise_ops::migration` and docs/migration.md).
//!
//! Settings (environment): `DATABASE_URL` (TLS with certificate verification unless it says
//! `sslmode=disable`; `sslrootcert=` names a PEM file of the database's CA: see
//! `pipewise_ops::postgres`), `PIPEWISE_FERNET_KEY`, `USER_MAP` (CSV file of
//! `old_id,new_sub`), `DRY_RUN=1`, and the functions' own `ACCOUNTS_TABLE`, `TARGETS_TABLE`,
//! `SECRETS_KMS_KEY_ID`; AWS endpoint and credentials from the SDK's standard settings.
//! Exit status: 0 when nothing failed, 1 when a row failed, 2 when the run could not start.

use std::io::IsTerminal;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pipewise::accounts::AccountService;
use pipewise::config::{ConfigSource, vars};
use pipewise::targets::TargetStore;
use pipewise_ops::migration::{
    Destination, MigrationReport, MigrationSettings, TableReport, migrate, parse_user_map,
    read_old_tables,
};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(report) => {
            print_report(&report);
            if report.accounts.failures() + report.targets.failures() > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(problem) => {
            eprintln!("pipewise-migrate: {problem}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<MigrationReport, Box<dyn std::error::Error>> {
    let source = ConfigSource::env();
    let database_url = source.required("DATABASE_URL")?;
    let fernet_key = source.required("PIPEWISE_FERNET_KEY")?;
    let settings = MigrationSettings {
        dry_run: source.optional("DRY_RUN").is_some_and(|v| v != "0"),
        user_map: match source.optional("USER_MAP") {
            Some(path) => Some(parse_user_map(
                &std::fs::read_to_string(&path)
                    .map_err(|error| format!("USER_MAP {path}: {error}"))?,
            )?),
            None => None,
        },
        max_rows: None,
    };
    let transport = pipewise_ops::postgres::settings(&database_url)?.transport;
    eprintln!(
        "pipewise-migrate: connecting to the old database: {}",
        pipewise_ops::postgres::describe(&transport)
    );
    let client = pipewise_ops::postgres::connect(&database_url).await?;
    let (accounts, targets) = read_old_tables(&client).await?;
    let sdk = pipewise::aws::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let destination = Destination {
        accounts: AccountService::from_config(&source, &sdk)?,
        targets: TargetStore::new(dynamodb, source.required(vars::TARGETS_TABLE)?),
    };
    let total = (accounts.len() + targets.len()) as u64;
    eprintln!(
        "pipewise-migrate: {} accounts and {} targets to copy{}",
        accounts.len(),
        targets.len(),
        if settings.dry_run {
            " (dry run: nothing is written)"
        } else {
            ""
        }
    );
    // A bar on a terminal; plain lines every 500 rows otherwise (logs, CI).
    let terminal = std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} rows {elapsed}") {
        bar.set_style(style);
    }
    let report = migrate(
        accounts,
        targets,
        &fernet_key,
        &destination,
        &settings,
        |done, all| {
            bar.set_position(done as u64);
            if !terminal && (done % 500 == 0 || done == all) {
                eprintln!("pipewise-migrate: {done}/{all} rows");
            }
        },
    )
    .await?;
    bar.finish_and_clear();
    Ok(report)
}

fn print_table(name: &str, table: &TableReport) {
    println!(
        "{name}: migrated {}, unchanged {}, skipped {}, failed {}",
        table.migrated,
        table.unchanged,
        table.skipped.values().sum::<usize>(),
        table.failures()
    );
    for (old_id, reason) in &table.problems {
        println!("  {old_id}: {reason}");
    }
}

fn print_report(report: &MigrationReport) {
    print_table("user_accounts", &report.accounts);
    print_table("communication_targets", &report.targets);
    let changed = report.accounts.migrated + report.targets.migrated;
    if changed == 0 {
        println!("nothing to change: everything is already here");
    }
}
