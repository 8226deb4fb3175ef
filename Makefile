# The two quick-start commands are `make demo` and `make test`; both install what they need.
# Everything downloaded lives in git-ignored folders: .venv/ (Python), .cache/ (pip, Maven, jars),
# .stack/ (data, logs and pid files of the running native stack).
SHELL := bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PIP_CACHE_DIR := $(CURDIR)/.cache/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: install jars up down status demo demo-saga demo-secure down-secure lint test check-alerts unit integration faults bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

jars: install
	$(BIN)/relay stack fetch

up: install
	$(BIN)/relay stack up

down:
	@if [ -x $(BIN)/relay ]; then $(BIN)/relay stack down; fi

status: install
	$(BIN)/relay stack status

# install -> stack up -> schema -> topics -> connector -> demo (each step idempotent)
demo: install
	$(BIN)/relay stack up
	$(BIN)/relay outbox migrate
	$(BIN)/relay topics apply
	$(BIN)/relay connectors apply
	$(BIN)/relay demo

# the saga demo (docs/sagas.md): 1,000 order sagas, 20 % compensated, and incident triage
demo-saga: install
	$(BIN)/relay stack up
	$(BIN)/relay outbox migrate
	$(BIN)/relay connectors apply
	$(BIN)/relay demo --saga

# the demo through the SASL_SSL + ACL profile (docs/security.md): a stack of its own (.stack-secure/,
# other ports) whose broker takes only TLS + SCRAM with ACLs; setup as `admin`, the worker as `relay-orders`
SECURE := RELAY_STACK_DIR=$(CURDIR)/.stack-secure RELAY_STACK_SECURITY=sasl_ssl RELAY_PG_PORT=56432 \
	RELAY_KAFKA_PORT=60092 RELAY_KAFKA_CONTROLLER_PORT=60093 RELAY_CONNECT_PORT=59083 RELAY_WORKER_METRICS_PORT=59470
demo-secure: install
	$(SECURE) $(BIN)/relay stack up
	set -a && . .stack-secure/security/admin.env && set +a && $(SECURE) $(BIN)/relay outbox migrate \
	  && $(SECURE) $(BIN)/relay connectors apply \
	  && $(SECURE) $(BIN)/relay demo --worker-env .stack-secure/security/relay-orders.env

down-secure:
	@if [ -x $(BIN)/relay ]; then $(SECURE) $(BIN)/relay stack down; fi

# lint, then unit tests (no I/O) and integration tests against the real stack, which a session-scoped
# fixture starts once (or reuses if already up) and stops at the end if it started it.
# pytest's exit 5 ("no tests ran") is a failure here.
# ruff and mypy as configured in pyproject.toml (mypy strict on the modules that carry the guarantees)
lint: install
	$(BIN)/ruff check relay tests
	$(BIN)/mypy relay

test: install lint .cache/k8s/tools.ok .cache/compose-spec.json
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "FAIL: no test ran" >&2; exit 1; fi; exit $$rc

# kustomize (Go module proxy) and Strimzi's CRDs (its crd-generator over its api jar, Maven Central) that
# tests/unit/test_k8s.py validates k8s/ with; minutes the first time, then nothing (k8s/tools/install.sh)
.cache/k8s/tools.ok: k8s/tools/install.sh k8s/tools/strimzi-crds/pom.xml
	bash k8s/tools/install.sh
	@touch $@

# promtool (Prometheus 3.16.0's, from the Go module proxy, built without service discovery; ~6 minutes the
# first time, so not part of `make test`, which parses the expressions with promql-parser): `make check-alerts`
# runs promtool's rule check and its unit tests of the alerts (deploy/prometheus/). The Compose specification's
# JSON schema (Go module compose-go) is for tests/unit/test_compose.py. Delete a file to change its version.
GO_CACHED := GOPATH=$(CURDIR)/.cache/go GOMODCACHE=$(CURDIR)/.cache/go/mod GOCACHE=$(CURDIR)/.cache/go/build \
	GOTOOLCHAIN=local GOFLAGS=-modcacherw
.cache/bin/promtool:
	$(GO_CACHED) GOBIN=$(CURDIR)/.cache/bin go install -tags remove_all_sd \
	  -ldflags '-X github.com/prometheus/common/version.Version=3.16.0' github.com/prometheus/prometheus/cmd/promtool@v0.316.0

.cache/compose-spec.json:
	@mkdir -p $(@D)
	dir=$$($(GO_CACHED) go mod download -json github.com/compose-spec/compose-go/v2@v2.16.2 \
	  | $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') && cp "$$dir/schema/compose-spec.json" $@
	@chmod u+w $@

check-alerts: install .cache/bin/promtool
	$(BIN)/python -m pytest tests/unit/test_dashboards.py -k promtool $(PYTEST_ARGS)

unit: install .cache/k8s/tools.ok .cache/compose-spec.json
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: install
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

# the long fault tests: 20 hard kills of each relay (Kafka Connect, poller) while writers commit, 20 kills and
# 20 starts of workers, and the Faust-engine variants of the worker guarantee tests (FAULT_LONG=1)
faults: install
	FAULT_LONG=1 FAULT_KILLS=$${FAULT_KILLS:-20} FAULT_STARTS=$${FAULT_STARTS:-20} $(BIN)/python -m pytest -s tests/conformance/test_kills.py \
		tests/integration/test_worker_kills.py tests/integration/test_workers_start_together.py \
		tests/integration/test_worker_restarts.py tests/integration/test_worker_shutdown.py tests/integration/test_retry_ladder.py \
		tests/integration/test_circuit_breaker.py tests/integration/test_event_types.py tests/integration/test_consumer_batches.py \
		tests/integration/test_worker_broker_outage.py $(PYTEST_ARGS)

# every benchmark scenario next to its same-run baseline (relay bench --help); ~15 min on 2 cores
BENCH_ARGS ?=
$(VENV)/.bench-extra: $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	@touch $@

bench: install $(VENV)/.bench-extra
	$(BIN)/relay stack up
	$(BIN)/relay outbox migrate
	$(BIN)/relay topics apply
	$(BIN)/relay connectors apply
	$(BIN)/relay bench --out bench-results $(BENCH_ARGS)

clean: down
	@if [ -x $(BIN)/relay ]; then $(BIN)/relay stack clean; else rm -rf .stack; fi
