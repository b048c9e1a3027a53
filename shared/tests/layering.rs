//! The crate's shape, checked: the domains (accounts, targets, communications) know nothing of
//! HTTP, tokens or Lambda events, accounts and targets never import communications (which builds
//! on them), no file of `src/` uses a file that uses it back, and only `clock` (and the token
//! check, whose expiry is the wall clock's) reads the system time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const DOMAINS: [&str; 3] = ["accounts", "targets", "communications"];
/// What a domain file must not name: the HTTP layer, the token layer, Lambda's event types and
/// the web framework.
const FORBIDDEN_IN_DOMAINS: [&str; 5] = [
    "crate::api",
    "crate::auth",
    "aws_lambda_events",
    "axum::",
    "lambda_http",
];

fn source_files(directory: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            source_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// The module path of a file: `src/communications/store.rs` -> `communications::store`.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        parts.pop();
    }
    parts
}

/// The code of a file without its `#[cfg(test)]` module (tests may reach anywhere) and without
/// comments (a doc link is not a use).
fn code_of(text: &str) -> String {
    text.split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or(text)
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path a file names through `crate::` or `super::`, resolved against the files.
fn references(
    module: &[String],
    code: &str,
    modules: &BTreeSet<Vec<String>>,
) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("crate::") || word.starts_with("super::"))
        .collect();
    for word in words {
        let mut path: Vec<String> = Vec::new();
        let mut segments = word.split("::").filter(|s| !s.is_empty()).peekable();
        match segments.next() {
            Some("crate") => {}
            Some("super") => {
                // `super` of a file `a/b.rs` (module a::b) is `a`; of `a/mod.rs` (module a) is
                // the crate root.
                path.extend(module.iter().take(module.len().saturating_sub(1)).cloned());
                while segments.peek() == Some(&"super") {
                    segments.next();
                    path.pop();
                }
            }
            _ => continue,
        }
        path.extend(segments.map(str::to_owned));
        // The longest prefix that is a file's module.
        while !path.is_empty() && !modules.contains(&path) {
            path.pop();
        }
        if !path.is_empty() && path != module {
            found.insert(path);
        }
    }
    found
}

#[test]
fn domains_know_nothing_of_http_tokens_or_lambda_come_in_order_and_no_file_uses_one_that_uses_it_back()
 {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &mut files);
    let texts: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|file| {
            (
                module_of(&root, file),
                std::fs::read_to_string(file).expect("read"),
            )
        })
        .collect();
    let modules: BTreeSet<Vec<String>> = texts.keys().cloned().collect();
    let mut problems = Vec::new();
    let mut graph = BTreeMap::new();
    for (module, text) in &texts {
        let code = &code_of(text);
        if module
            .first()
            .is_some_and(|top| DOMAINS.contains(&top.as_str()))
        {
            for forbidden in FORBIDDEN_IN_DOMAINS {
                if code.contains(forbidden) {
                    problems.push(format!("{} names {forbidden}", module.join("::")));
                }
            }
        }
        graph.insert(module.clone(), references(module, code, &modules));
    }
    // One clock: what a test moves is what every store, service and event reads.
    for (module, text) in &texts {
        let reads_system_time = ["now_utc(", "SystemTime::now"]
            .iter()
            .any(|call| code_of(text).contains(call));
        let allowed = matches!(
            module.first().map(String::as_str),
            Some("clock" | "auth" | "metrics")
        );
        if reads_system_time && !allowed {
            problems.push(format!(
                "{} reads the system time: take the `Clock` it was built with",
                module.join("::")
            ));
        }
    }
    // The domains' order: communications builds on accounts and targets, never the other way.
    for (module, uses) in &graph {
        let top = module.first().map(String::as_str);
        if matches!(top, Some("accounts" | "targets")) {
            for used in uses {
                if used.first().map(String::as_str) == Some("communications") {
                    problems.push(format!(
                        "{} uses {}: accounts and targets never import communications",
                        module.join("::"),
                        used.join("::")
                    ));
                }
            }
        }
    }
    for (module, uses) in &graph {
        for used in uses {
            // A parent module declaring its children (`pub mod x;`) is not a use.
            if used.starts_with(module) {
                continue;
            }
            if graph.get(used).is_some_and(|back| back.contains(module)) && module < used {
                problems.push(format!(
                    "{} and {} use each other",
                    module.join("::"),
                    used.join("::")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
