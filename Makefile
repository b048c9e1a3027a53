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

.PHONY: help dev token test lint tools verify-sender openapi

help:
	@echo "make dev                  run the API on http://127.0.0.1:8001 against a local AWS emulator"
	@echo "make token SUB=alice      print a dev JWT (SCOPE=integrations:secrets:read for /secrets)"
	@echo "make test                 format, lint and every test against a fresh emulator"
	@echo "make openapi              regenerate docs/openapi.json from the code"
	@echo "make verify-sender EMAIL=...  verify an SES sender in the dev emulator (needed for email outreach)"

# Python tools (moto, cfn-lint, sam, schemathesis, cargo-lambda, zig) in a venv, pinned.
$(TOOLS): tools/requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements.lock
	rm -f $(VENV)/.installed-*
	touch $@

tools: $(TOOLS)

dev: $(TOOLS)
	cargo build --quiet -p pipewise-local --bins
	$(EMULATOR_ENV) AWS_ENDPOINT_URL=$(DEV_EMULATOR) exec $(CARGO_TARGET_DIR)/debug/pipewise-dev --emulator $(VENV)/bin/moto_server

token:
	@test -n "$(SUB)" || { echo "usage: make token SUB=alice [SCOPE=integrations:secrets:read]" >&2; exit 2; }
	@cargo run --quiet -p pipewise-local --bin pipewise-token -- "$(SUB)" "$(SCOPE)"

openapi:
	cargo run --quiet -p pipewise-local --bin pipewise-openapi

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings

test: $(TOOLS) lint
	tools/with-emulator $(TEST_EMULATOR_PORT) cargo nextest run --workspace --no-fail-fast

# Outreach email needs a verified sender in the emulator's SES, exactly as in AWS.
verify-sender: $(TOOLS)
	@test -n "$(EMAIL)" || { echo "usage: make verify-sender EMAIL=you@example.com" >&2; exit 2; }
	$(EMULATOR_ENV) AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL=$(DEV_EMULATOR) $(VENV)/bin/python -c \
	  'import sys, boto3; boto3.client("sesv2").create_email_identity(EmailIdentity=sys.argv[1]); print("verified", sys.argv[1])' "$(EMAIL)"
