//! What every result file carries, and how samples become figures.

use std::path::Path;

use serde_json::{Value, json};

/// `date` and `machine`, the fields every result file starts with.
pub fn stamp() -> serde_json::Map<String, Value> {
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mut map = serde_json::Map::new();
    map.insert("date".into(), json!(date));
    map.insert(
        "machine".into(),
        json!(format!("{}, {cores} cores", std::env::consts::ARCH)),
    );
    map
}

/// Writes one result file of `make bench` (schema in docs/benchmarks.md).
pub fn write(
    directory: &Path,
    name: &str,
    mut fields: serde_json::Map<String, Value>,
    rest: Value,
) {
    if let Value::Object(rest) = rest {
        fields.extend(rest);
    }
    let path = directory.join(name);
    let text = serde_json::to_string_pretty(&Value::Object(fields)).expect("JSON");
    std::fs::write(&path, text + "\n")
        .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
    eprintln!("wrote {}", path.display());
}

/// The nearest-rank percentile `p` (0-100) of `samples` in milliseconds.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Rounds to microseconds, so result files stay readable.
pub fn ms(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// CPU time this process has used (user and system), in seconds.
pub fn cpu_seconds() -> f64 {
    // utime and stime, fields 14 and 15 of /proc/self/stat, in clock ticks (100 per second
    // on Linux), after the command name (which may hold spaces, so split after its ')').
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(')')?.1.to_owned();
            let fields: Vec<&str> = after.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Peak resident memory of this process (`VmHWM`), in kB.
pub fn max_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmHWM:")
                    .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), 50.0);
        assert_eq!(percentile(&samples, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }
}
