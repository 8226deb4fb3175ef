# The outbox-relay image of the docker-compose stack: `relay worker orders` (service `worker`) and
# the one-shot `relay outbox migrate && relay topics apply && relay connectors apply` (`setup`).
# Build context: the project root (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# WORKDIR matters: an installed (non-editable) relay finds connectors/outbox-connector.json
# relative to the working directory (relay.config.project_root()).
WORKDIR /app
COPY pyproject.toml README.md ./
COPY relay ./relay
COPY processors ./processors
COPY connectors ./connectors
RUN pip install . \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/relay relay

USER relay
CMD ["relay", "worker", "orders"]
