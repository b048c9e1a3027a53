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

.PHONY: help dev token test lint tools

help:
	@echo "make dev                  run the API on http://127.0.0.1:8001 against a local AWS emulator"
	@echo "make token SUB=alice      print a dev JWT (SCOPE=integrations:secrets:read for /secrets)"
	@echo "make test                 format, lint and every test against a fresh emulator"

# Python tools (moto, cfn-lint, sam, schemathesis, cargo-lambda, zig) in a venv, pinned.
$(TOOLS): tools/requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements.lock
	rm -f $(VENV)/.installed-*
	touch $@

tools: $(TOOLS)

dev: $(TOOLS)
	cargo build --quiet -p pipewise-local --bins
	$(EMULATOR_ENV) AWS_ENDPOINT_URL=$(DEV_EMULATOR) exec $(CARGO_TARGET_DIR)/debug/pipewise-dev $(VENV)/bin/moto_server

token:
	@test -n "$(SUB)" || { echo "usage: make token SUB=alice [SCOPE=integrations:secrets:read]" >&2; exit 2; }
	@cargo run --quiet -p pipewise-local --bin pipewise-token -- "$(SUB)" "$(SCOPE)"

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings

test: $(TOOLS) lint
	tools/with-emulator $(TEST_EMULATOR_PORT) cargo nextest run --workspace --no-fail-fast
