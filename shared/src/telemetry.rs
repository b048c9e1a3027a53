//! Structured JSON logs via `tracing`, set up once per process.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs a JSON log subscriber (level from `RUST_LOG`, default `info`). Safe to call twice.
///
/// `RUST_LOG` takes a level (`debug`) and `target=level` directives (`pipewise=debug,info`); an
/// unreadable value falls back to `info`. `Targets` rather than `EnvFilter`: the same directives
/// without a regex engine in every function (measured in docs/benchmarks.md).
pub fn init() {
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                // CloudWatch adds its own timestamp and the runtime its own request id.
                .with_target(false)
                .without_time(),
        )
        .with(filter_from(std::env::var("RUST_LOG").ok().as_deref()))
        .try_init();
}

/// The filter `RUST_LOG` asks for, or `info`.
fn filter_from(directives: Option<&str>) -> Targets {
    directives
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

#[cfg(test)]
mod tests {
    use super::filter_from;
    use tracing::Level;

    #[test]
    fn rust_log_sets_the_level_per_target_and_falls_back_to_info() {
        let unset = filter_from(None);
        assert!(unset.would_enable("pipewise", &Level::INFO));
        assert!(!unset.would_enable("pipewise", &Level::DEBUG));

        let debug = filter_from(Some("debug"));
        assert!(debug.would_enable("aws_config", &Level::DEBUG));

        let per_target = filter_from(Some("pipewise=debug,warn"));
        assert!(per_target.would_enable("pipewise::accounts", &Level::DEBUG));
        assert!(!per_target.would_enable("aws_config", &Level::INFO));
        assert!(per_target.would_enable("aws_config", &Level::WARN));

        let unreadable = filter_from(Some("pipewise=loud"));
        assert!(unreadable.would_enable("pipewise", &Level::INFO));
        assert!(!unreadable.would_enable("pipewise", &Level::DEBUG));
    }
}
