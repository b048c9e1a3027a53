# PipeWise User API: the two everyday commands are `make dev` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export CARGO_TARGET_DIR ?= $(HOME)/.cache/pipewise-target
VENV := $(CURDIR)/.venv
TOOLS := $(VENV)/.installed-$(shell cksum < tools/requirements.lock | cut -d' ' -f1)
# Dummy credentials and a region for the emulator; endpoints come only from AWS_ENDPOINT_URL.
EMULATOR_ENV := AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
DEV_EMULATOR := http://127.0.0.1:4566
TEST_EMULATOR_PORT := 4567
TEST_POSTGRES_PORT := 5433

.PHONY: help dev token test test-stress test-faults migrate rotate-keys lint tools openapi package sam-build bench bench-clock bench-quick

help:
	@echo "make dev                  run the API on http://127.0.0.1:8001 against a local AWS emulator"
	@echo "make dev IDP=cognito      the same, users signing in through the template's Cognito user pool"
	@echo "make token SUB=alice      print a dev JWT (SCOPE=integrations:secrets:read for /secrets)"
	@echo "make test                 format, lint and every test against a fresh emulator"
	@echo "make test-stress          every racing test 20 times on one emulator"
	@echo "make test-faults          every route and the worker against every AWS fault of every call"
	@echo "make openapi              regenerate docs/openapi.json from the code"
	@echo "make package              release arm64 bootstrap of every function, zipped, with sizes"
	@echo "make sam-build            sam build (cargo-lambda, no Docker)"
	@echo "make bench                every performance figure, side by side with its baseline -> docs/benchmarks.md (<= 30 min)"
	@echo "make bench-quick          the ratios and call budgets of a change in progress, debug build, summary only (<= 5 min)"
	@echo "make rotate-keys TO=<key>  re-wrap every stored data key under another KMS key (dev stack; DRY_RUN=1, MAX_ITEMS=n)"
	@echo "make migrate DATABASE_URL=... PIPEWISE_FERNET_KEY=...  copy the old Supabase tables into the running dev stack (DRY_RUN=1, USER_MAP=file.csv)"

# Python tools (moto, cfn-lint, sam, schemathesis, cargo-lambda, zig) in a venv, pinned.
$(TOOLS): tools/requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements.lock
	rm -f $(VENV)/.installed-*
	touch $@

tools: $(TOOLS)

dev: $(TOOLS)
	cargo build --quiet -p pipewise-local --bins
	$(EMULATOR_ENV) AWS_ENDPOINT_URL=$(DEV_EMULATOR) exec $(CARGO_TARGET_DIR)/debug/pipewise-dev --emulator $(CURDIR)/tools/emulator --idp '$(IDP)'

token: $(TOOLS)
	@test -n "$(SUB)" || { echo "usage: make token SUB=alice [SCOPE=integrations:secrets:read]" >&2; exit 2; }
	@cargo run --quiet -p pipewise-local --bin pipewise-token -- "$(SUB)" "$(SCOPE)"

openapi:
	cargo run --quiet -p pipewise-local --bin pipewise-openapi

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings

BROWSER := tests/browser/node_modules/.installed-$(shell cksum < tests/browser/package-lock.json | cut -d' ' -f1)

# playwright-core drives Debian's chromium (.ci/run installs it); no browser download.
$(BROWSER): tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund --silent
	rm -f tests/browser/node_modules/.installed-*
	touch $@

# One emulator for the whole run: the Rust tests, then the contract checks (template linters,
# schemathesis, the browser) against a local stack on 127.0.0.1:8011.
test: $(TOOLS) $(BROWSER) lint
	tools/ensure-chromium
	cargo build --quiet -p pipewise-local --bins
	cargo build --quiet -p pipewise-tests --bin pipewise-fake-platforms
	audit=$$(mktemp -d) && trap 'rm -rf "$$audit"' EXIT && \
	tools/with-emulator $(TEST_EMULATOR_PORT) tools/with-postgres $(TEST_POSTGRES_PORT) bash -c \
	  "PLAINTEXT_AUDIT_DIR=$$audit cargo nextest run --workspace --no-fail-fast -E 'not test(/$(FAULT_FILTER)/)' && tools/contract-tests && PLAINTEXT_AUDIT_DIR=$$audit $(VENV)/bin/python tools/plaintext-audit"

# Every route x every AWS call it makes x every way AWS fails that call, and the same for the
# worker (tests/tests/api/faults.rs); minutes, so apart from `make test` (CI runs both).
FAULT_FILTER := fault_matrix|the_worker_survives
test-faults: $(TOOLS)
	tools/with-emulator $(TEST_EMULATOR_PORT) cargo nextest run --workspace --no-fail-fast --success-output final -E 'test(/$(FAULT_FILTER)/)'

# Every test whose name says it races, 20 times over on one emulator: a race that loses once
# in 20 is a bug, not noise (tools/emulator keeps DynamoDB linearizable, as AWS is).
STRESS_FILTER := test(/concurrent|race|racing/)
test-stress: $(TOOLS)
	tools/with-emulator $(TEST_EMULATOR_PORT) cargo nextest run --workspace --no-fail-fast -E '$(STRESS_FILTER)' --stress-count $${STRESS_COUNT:-20}

# The old Supabase tables into the running dev stack (its tables and key from .dev.env); in AWS
# run the same binary with the functions' ACCOUNTS_TABLE, TARGETS_TABLE, SECRETS_KMS_KEY_ID.
migrate:
	@test -n "$(DATABASE_URL)" -a -n "$(PIPEWISE_FERNET_KEY)" || { echo "usage: make migrate DATABASE_URL=postgres://... PIPEWISE_FERNET_KEY=... [DRY_RUN=1] [USER_MAP=file.csv]" >&2; exit 2; }
	@test -f .dev.env || { echo "start the dev stack first: make dev" >&2; exit 2; }
	cargo build --quiet -p pipewise-ops --bin pipewise-migrate
	set -a && . ./.dev.env && set +a && DATABASE_URL='$(DATABASE_URL)' PIPEWISE_FERNET_KEY='$(PIPEWISE_FERNET_KEY)' DRY_RUN='$(DRY_RUN)' USER_MAP='$(USER_MAP)' $(CARGO_TARGET_DIR)/debug/pipewise-migrate

# Re-wraps every stored data key of the running dev stack under another KMS key (docs/security.md).
rotate-keys:
	@test -n "$(TO)" || { echo "usage: make rotate-keys TO=<key id, ARN or alias> [DRY_RUN=1] [MAX_ITEMS=n]" >&2; exit 2; }
	@test -f .dev.env || { echo "start the dev stack first: make dev" >&2; exit 2; }
	cargo build --quiet -p pipewise-ops --bin pipewise-rotate-keys
	set -a && . ./.dev.env && set +a && $(CARGO_TARGET_DIR)/debug/pipewise-rotate-keys --to '$(TO)' $(if $(DRY_RUN),--dry-run) $(if $(MAX_ITEMS),--max-items $(MAX_ITEMS))

# Release arm64 builds of every function, zipped as Lambda takes them; prints each size. `-p`, not
# `--bin`: `--bin` resolves features over every workspace member (tests, tools), `-p` over the
# functions' own, as `sam build` does from each CodeUri.
package: $(TOOLS)
	rustup target add aarch64-unknown-linux-gnu >/dev/null
	PATH="$(VENV)/bin:$$PATH" cargo lambda build --release --arm64 --lambda-dir $(CARGO_TARGET_DIR)/lambda-arm64 \
	  -p accounts -p targets -p orchestrator -p communications-worker -p token-keeper -p mcp
	@for fn in accounts targets orchestrator communications-worker token-keeper mcp; do \
	  dir=$(CARGO_TARGET_DIR)/lambda-arm64/$$fn; rm -f $$dir/bootstrap.zip; \
	  (cd $$dir && $(VENV)/bin/python -c 'import zipfile; z = zipfile.ZipFile("bootstrap.zip", "w", zipfile.ZIP_DEFLATED); z.write("bootstrap"); z.close()'); \
	  printf '%-24s bootstrap %8s bytes   zipped %8s bytes\n' $$fn $$(stat -c %s $$dir/bootstrap) $$(stat -c %s $$dir/bootstrap.zip); \
	done

# Every performance figure, each as a ratio against a baseline run side by side in the same
# run (docs/benchmarks.md): cold start and memory (release binaries under a local Runtime API,
# hello-world and a FastAPI peer beside them), package size, warm latency vs the raw SDK calls,
# AWS calls per operation (against their budgets: a count past one fails the run), worker
# throughput vs a bare SQS loop and on a model of AWS's latency, growth and scale. Never part
# of make test. Each phase is timed (tools/bench-timed): the report says where the minutes went.
BENCH_OUT ?= $(CARGO_TARGET_DIR)/bench
BENCH_DIR = $(abspath $(BENCH_OUT))
# Two venvs: the peer's (its size is part of what is measured) and the report's (matplotlib).
PEER_VENV := $(CARGO_TARGET_DIR)/bench-peer-venv
PEER_PYTHON := $(PEER_VENV)/.installed-$(shell cksum < benchmarks/peer/requirements.txt | cut -d' ' -f1)
REPORT_VENV := $(CARGO_TARGET_DIR)/bench-report-venv
REPORT_PYTHON := $(REPORT_VENV)/.installed-$(shell cksum < benchmarks/report-requirements.txt | cut -d' ' -f1)
BENCH_PORT ?= 4590
# Communications per worker batch size and for the modelled-AWS reading: 200 by default (the
# ratios are steady by then), more on request.
BENCH_COMMUNICATIONS ?= 200
# Timed requests per route (warm phase, ours and the peer's).
BENCH_SAMPLES ?= 200
TIMED = tools/bench-timed run $(BENCH_DIR)
# A phase of the harness against a fresh emulator: what one phase leaves never slows the next.
HARNESS = tools/with-emulator $(BENCH_PORT)

$(PEER_PYTHON): benchmarks/peer/requirements.txt
	python3 -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install --quiet --disable-pip-version-check -r benchmarks/peer/requirements.txt
	rm -f $(PEER_VENV)/.installed-*
	touch $@

$(REPORT_PYTHON): benchmarks/report-requirements.txt
	python3 -m venv $(REPORT_VENV)
	$(REPORT_VENV)/bin/pip install --quiet --disable-pip-version-check -r benchmarks/report-requirements.txt
	rm -f $(REPORT_VENV)/.installed-*
	touch $@

# The clock starts before the tools and venvs are made, so a fresh clone's whole run is counted.
bench-clock:
	@rm -rf $(BENCH_DIR) && tools/bench-timed start $(BENCH_DIR) $(CARGO_TARGET_DIR)

bench: bench-clock $(TOOLS) $(PEER_PYTHON) $(REPORT_PYTHON)
	@# Two builds: the functions with their own features (as sam build makes them), then the
	@# harness, whose test-crate dependencies would otherwise add features to the functions.
	$(TIMED) "release build of the functions" cargo build --release -p hello-lambda -p accounts \
	  -p targets -p orchestrator -p communications-worker -p token-keeper -p mcp
	$(TIMED) "release build of the harness" cargo build --release -p pipewise-bench
	$(TIMED) "cold start, memory, the peer" $(HARNESS) sh -c '\
	  PEER_PYTHON=$(PEER_VENV)/bin/python tools/bench-cold-start $(CARGO_TARGET_DIR)/release $${ROUNDS:-20} --json $(BENCH_DIR)/cold.json && \
	  cd benchmarks/peer && $(PEER_VENV)/bin/python warm.py $(BENCH_DIR)/peer_warm.json $(BENCH_SAMPLES)'
	for phase in trust warm calls growth worker-aws scale-release scale-import scale-sequence scale-poller; do \
	  BENCH_ONLY=$$phase BENCH_COMMUNICATIONS=$(BENCH_COMMUNICATIONS) BENCH_SAMPLES=$(BENCH_SAMPLES) $(TIMED) "$$phase" \
	    $(HARNESS) $(CARGO_TARGET_DIR)/release/pipewise-bench $(BENCH_DIR) || exit 1; \
	done
	for size in 1 5 10; do \
	  BENCH_ONLY=worker BENCH_BATCH_SIZES=$$size BENCH_COMMUNICATIONS=$(BENCH_COMMUNICATIONS) $(TIMED) "worker, batch $$size" \
	    $(HARNESS) $(CARGO_TARGET_DIR)/release/pipewise-bench $(BENCH_DIR) || exit 1; \
	done
	$(TIMED) "package sizes" tools/bench-sizes $(CARGO_TARGET_DIR)/release $(BENCH_DIR)
	tools/bench-timed finish $(BENCH_DIR)
	$(REPORT_VENV)/bin/python tools/bench-report $(BENCH_DIR) docs

# The ratios of a change in progress in a few minutes: the debug harness (no release build, no
# peer), fewer samples and smaller sizes; the AWS call budgets are checked as in make bench.
# Prints the summary; writes nothing into docs/. Cold start needs release binaries: measured
# when an earlier make bench left them, skipped otherwise.
BENCH_QUICK_DIR = $(abspath $(BENCH_OUT))-quick
bench-quick: $(TOOLS) $(REPORT_PYTHON)
	@rm -rf $(BENCH_QUICK_DIR) && tools/bench-timed start $(BENCH_QUICK_DIR) -
	tools/bench-timed run $(BENCH_QUICK_DIR) "debug build of the harness" cargo build -p pipewise-bench
	@if [ -x $(CARGO_TARGET_DIR)/release/accounts ] && [ -x $(CARGO_TARGET_DIR)/release/hello-lambda ]; then \
	  tools/bench-timed run $(BENCH_QUICK_DIR) "cold start (release binaries of an earlier make bench)" \
	    $(HARNESS) tools/bench-cold-start $(CARGO_TARGET_DIR)/release 5 --json $(BENCH_QUICK_DIR)/cold.json; \
	else echo "bench-quick: no release binaries, cold start skipped (make bench measures it)"; fi
	BENCH_ONLY=calls,warm,worker-aws,scale BENCH_SAMPLES=50 BENCH_COMMUNICATIONS=100 \
	  BENCH_SCALE_SIZES=10,100,1000 BENCH_IMPORT_SIZES=10,100 BENCH_SEQUENCE_TARGETS=10,100 BENCH_MAILBOXES=2,20 BENCH_MAILBOX_MESSAGES=200 \
	  tools/bench-timed run $(BENCH_QUICK_DIR) "calls, warm, worker on a model of AWS, scale" \
	  $(HARNESS) $(CARGO_TARGET_DIR)/debug/pipewise-bench $(BENCH_QUICK_DIR)
	tools/bench-timed finish $(BENCH_QUICK_DIR)
	$(REPORT_VENV)/bin/python tools/bench-report --summary-only $(BENCH_QUICK_DIR)

# What `sam build` does (cargo-lambda per function, no Docker), then `sam deploy --guided`.
sam-build: $(TOOLS)
	PATH="$(VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 sam build
