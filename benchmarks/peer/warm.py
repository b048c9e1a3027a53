"""Warm latency of the benchmark peer's two routes, in process (bench-only, not part of the service).

Imports app.py and calls `app.handler(event, context)` directly, as awslambdaric would on a warm
invocation (minus the Runtime API round trip), against the DynamoDB emulator in AWS_ENDPOINT_URL:
per route, 30 warm-up calls, then SAMPLES timed calls (time.perf_counter around the handler).
Every answer must be 200 (list) or 201 (create). Reports p50/p99 (nearest rank) per route and the
process's VmHWM after all calls, and writes them as peer_warm.json (bench result schema).

Usage (cwd benchmarks/peer, the peer's venv):
  AWS_ENDPOINT_URL=http://127.0.0.1:4590 /tmp/peer-venv/bin/python warm.py OUT.json [SAMPLES]
SAMPLES: argument, else env SAMPLES, else 300. The environment (tables, region, dummy credentials)
is set here as tools/bench-cold-start sets it for the peer, and setup_tables.py is run first (in a
child process, so its client does not count in this process's memory).
"""
import json
import math
import os
import platform
import subprocess
import sys
import time
import uuid
import types
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WARMUP = 30

# As tools/bench-cold-start's ENVIRONMENT + PEER_ENVIRONMENT, for what the peer reads.
ENVIRONMENT = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "ACCOUNTS_TABLE": "bench-accounts",
    "TARGETS_TABLE": "bench-targets",
}


def api_event(name):
    return json.loads((ROOT / "events" / f"{name}.json").read_text())


def fake_context(number):
    """What awslambdaric passes; Mangum only puts it in the ASGI scope as `aws.context`."""
    return types.SimpleNamespace(
        function_name="bench",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:bench",
        memory_limit_in_mb=256,
        aws_request_id=f"bench-warm-{number}",
        log_group_name="bench",
        log_stream_name="bench",
        identity=None,
        client_context=None,
        get_remaining_time_in_millis=lambda: 30000,
    )


def list_events(count):
    event = api_event("accounts-list")
    return [event] * count


def create_events(count):
    """One new target per call: a different name and email each time (the peer's only duplicate
    check is on its uuid key, but the Rust service refuses a second target with the same email,
    so its bench varies them too); the run tag keeps reruns on one emulator distinct as well."""
    event = api_event("targets-create")
    body = json.loads(event["body"])
    tag = f"{os.getpid()}-{int(time.time())}"
    events = []
    for number in range(count):
        varied = dict(body, name=f"Bench Target {tag}-{number}", email=f"bench-{tag}-{number}@example.com")
        events.append(dict(event, body=json.dumps(varied)))
    return events


def raw_list(app, number):
    """The list route's one AWS call, made directly with the peer's own client."""
    app.dynamodb.query(
        TableName=app.ACCOUNTS_TABLE,
        KeyConditionExpression="user_id = :user",
        ExpressionAttributeValues={":user": {"S": "alice"}},
    )


def raw_create(app, number):
    """The create route's one AWS call (a conditional PutItem of the same shape), made directly."""
    target_id = str(uuid.uuid4())
    app.dynamodb.put_item(
        TableName=app.TARGETS_TABLE,
        Item={
            "user_id": {"S": "alice-direct"}, "sk": {"S": f"T#{target_id}"}, "id": {"S": target_id},
            "name": {"S": f"Direct Target {number}"}, "email": {"S": f"direct-{number}@example.com"},
            "active": {"BOOL": True}, "created_at": {"S": "2026-11-26T00:00:00.000Z"},
            "updated_at": {"S": "2026-11-26T00:00:00.000Z"}, "version": {"N": "1"},
        },
        ConditionExpression="attribute_not_exists(sk)",
    )


# Each route with its direct twin: the time the peer's own code adds is route minus raw.
ROUTES = [
    ("GET /api/user/integrations/accounts", list_events, 200, raw_list),
    ("POST /api/user/communication-targets", create_events, 201, raw_create),
]


def nearest_rank(sorted_values, percent):
    return sorted_values[max(1, math.ceil(percent / 100 * len(sorted_values))) - 1]


def peak_rss_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: warm.py OUT.json [SAMPLES]")
    out = Path(sys.argv[1]).resolve()  # before the chdir below
    samples = int(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("SAMPLES", "300"))
    if samples < 1:
        sys.exit("SAMPLES must be at least 1")
    if not os.environ.get("AWS_ENDPOINT_URL"):
        sys.exit("warm.py: AWS_ENDPOINT_URL is not set: the peer's routes call DynamoDB; start an emulator (refusing real AWS)")
    os.environ.update(ENVIRONMENT)
    subprocess.run([sys.executable, str(HERE / "setup_tables.py"), "alice"], check=True)

    os.chdir(HERE)
    sys.path.insert(0, str(HERE))
    import app

    routes = []
    calls = 0
    for route, make_events, status, raw in ROUTES:
        times, raw_times = [], []
        for number, event in enumerate(make_events(WARMUP + samples)):
            context = fake_context(calls)
            calls += 1
            started = time.perf_counter()
            answer = app.handler(event, context)
            elapsed = (time.perf_counter() - started) * 1000
            if answer.get("statusCode") != status:
                sys.exit(f"warm.py: {route} answered {answer.get('statusCode')}, not {status}: {answer.get('body')}")
            started = time.perf_counter()
            raw(app, number)
            raw_elapsed = (time.perf_counter() - started) * 1000
            if number >= WARMUP:
                times.append(elapsed)
                raw_times.append(raw_elapsed)
        times.sort()
        raw_times.sort()
        routes.append({
            "route": route,
            "p50_ms": round(nearest_rank(times, 50), 3), "p99_ms": round(nearest_rank(times, 99), 3),
            "raw_p50_ms": round(nearest_rank(raw_times, 50), 3), "raw_p99_ms": round(nearest_rank(raw_times, 99), 3),
        })
    max_rss_kb = peak_rss_kb()

    document = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "samples": samples,
        "routes": routes,
        "max_rss_kb": max_rss_kb,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"peer warm, in process, {samples} samples per route after {WARMUP} warm-up calls (emulator {os.environ['AWS_ENDPOINT_URL']})")
    print("| route | p50 (ms) | p99 (ms) | raw p50 (ms) | raw p99 (ms) |")
    print("|---|---|---|---|---|")
    for r in routes:
        print(f"| {r['route']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['raw_p50_ms']:.2f} | {r['raw_p99_ms']:.2f} |")
    print(f"max RSS (VmHWM): {max_rss_kb} kB ({max_rss_kb / 1024:.1f} MiB)")


if __name__ == "__main__":
    main()
