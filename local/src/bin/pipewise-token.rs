//! Prints a development JWT the local stack accepts.
//!
//! `pipewise-token SUB [SCOPE] [TTL_SECONDS]` (the Makefile's `make token SUB=alice SCOPE=...`).

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(sub) = args.next().filter(|sub| !sub.is_empty()) else {
        eprintln!("usage: pipewise-token SUB [SCOPE] [TTL_SECONDS]");
        std::process::exit(2);
    };
    let scope = args.next().filter(|scope| !scope.is_empty());
    let ttl = args
        .next()
        .and_then(|ttl| ttl.parse().ok())
        .unwrap_or(12 * 3600);
    println!(
        "{}",
        pipewise_local::dev_auth::dev_token(&sub, scope.as_deref(), ttl)
    );
}
