# syntax=docker/dockerfile:1
# The outbox-relay image: the `relay` command, so every process of ours runs from it: `relay worker
# <consumer>` (the default; workers and saga coordinators), `relay outbox stats --serve` (the outbox
# monitor), `relay outbox poll`, and one-shot `relay outbox migrate`, `relay topics apply`,
# `relay connectors apply`. Used by docker-compose.yml (services setup and worker) and k8s/ (image
# outbox-relay). Build context: the project root; docker/worker.Dockerfile.dockerignore lists what is sent.
#
#   docker build -f docker/worker.Dockerfile -t outbox-relay:0.1.0 .
#   docker build -f docker/worker.Dockerfile --build-arg EXTRAS=worker,saga,rocksdb ...   # the RocksDB store too
#
# Base: python:3.11.14-slim (Debian trixie), the Python the project is tested on. Its multi-arch index
# digest as pinned in other public projects (Aug 2026; not checked from here, no registry access):
#   python:3.11.14-slim@sha256:c8271b1f627d0068857dce5b53e14a9558603b527e46f1f901722f935b786a39
# To pin it, append @sha256:... to both FROM lines after `docker buildx imagetools inspect python:3.11.14-slim`.
#
# No secret is baked in: passwords come at run time (RELAY_PG_DSN, RELAY_KAFKA_SASL_PASSWORD or
# RELAY_KAFKA_SASL_PASSWORD_FILE, a mounted secrets file for Connect). Checked by hadolint and
# tests/unit/test_dockerfile.py (no Docker engine runs on our machines: this file is never built there).

# --- build: the project and its dependencies into a virtualenv ------------------------------------
FROM python:3.11.14-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# a C compiler for the few dependencies without a wheel on some platforms (faust-streaming on arm64);
# this stage is thrown away, and the versions are those of the base image's Debian release
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

# the extras a worker needs (relay/extras.py): worker (Kafka clients, Faust, metrics) and saga (YAML definitions)
ARG EXTRAS=worker,saga
WORKDIR /src
COPY pyproject.toml README.md ./
COPY relay ./relay
# not editable: the package is in site-packages and /src is not in the final image
RUN python -m venv /opt/relay \
    && /opt/relay/bin/pip install ".[${EXTRAS}]"

# --- run ------------------------------------------------------------------------------------------
FROM python:3.11.14-slim

# RELAY_STACK_DIR / RELAY_CACHE_DIR: the defaults are under the working directory, which is read-only
# here; Faust-engine tables go to RELAY_WORKER_DATA_DIR, else $RELAY_STACK_DIR/faust.
# The metrics endpoint binds RELAY_HOST (default 127.0.0.1): set RELAY_HOST=0.0.0.0 to be scraped.
ENV PATH=/opt/relay/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RELAY_STACK_DIR=/var/lib/relay/stack \
    RELAY_CACHE_DIR=/var/lib/relay/cache

# uid/gid 10001: the user k8s/base/worker-statefulset.yaml runs as (runAsUser, runAsGroup, fsGroup)
RUN groupadd --system --gid 10001 relay \
    && useradd --system --uid 10001 --gid relay --home-dir /var/lib/relay --no-create-home \
       --shell /usr/sbin/nologin relay \
    && install -d -o relay -g relay -m 0750 /var/lib/relay

COPY --from=build /opt/relay /opt/relay

# An installed (non-editable) relay reads connectors/outbox-connector.json and schemas/ relative to the
# working directory (relay.config.project_root()): run it from /app (the default) or mount them elsewhere.
WORKDIR /app
COPY connectors/outbox-connector.json ./connectors/outbox-connector.json
COPY schemas ./schemas

USER 10001:10001

# the worker's metrics, /healthz and /readyz (RELAY_WORKER_METRICS_PORT); the outbox monitor serves
# RELAY_MONITOR_METRICS_PORT (59466), the polling relay RELAY_POLLER_METRICS_PORT (59465)
EXPOSE 59464

# /healthz of a worker (RELAY_WORKER_METRICS_PORT, 0 disables the endpoint and so fails this check).
# The endpoint starts after the worker's preflight (Kafka, Postgres) and topic check: hence the start period.
# Other commands (monitor, poller, one-shots) set their own healthcheck or disable it (docker-compose.yml).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RELAY_WORKER_METRICS_PORT', '59464'), timeout=4)"]

CMD ["relay", "worker", "orders"]
