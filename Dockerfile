# syntax=docker/dockerfile:1
# The relay as a container image: `serve` by default; `worker`, `check`, `replay` too.
#   docker build -t dbt-tableau-relay:0.1.0 .
# Configuration: mount relay.yml at /etc/dbt-tableau-relay/relay.yml (its `listen` must be
# 0.0.0.0:8080, and then `admin_token` must be set); secrets through env_var('NAME') from
# the environment or, for Docker and Kubernetes secrets, from the file named by NAME_FILE.
# See docs/deployment.md.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DBT_TABLEAU_RELAY_CONFIG=/etc/dbt-tableau-relay/relay.yml

# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can check it and volume
# ownership is the same on every host.
RUN groupadd --system --gid 10001 relay \
    && useradd --system --uid 10001 --gid relay --no-create-home \
        --home-dir /var/lib/dbt-tableau-relay --shell /usr/sbin/nologin relay \
    && install -d -o relay -g relay -m 0750 /var/lib/dbt-tableau-relay \
    && install -d -m 0755 /etc/dbt-tableau-relay

WORKDIR /usr/src/dbt-tableau-relay
COPY pyproject.toml README.md ./
COPY src ./src
# Every dependency ships a manylinux wheel: no compiler in the image. The postgres extra
# brings psycopg for several replicas on PostgreSQL. DL3013 wants `pkg==version`: this is
# the local checkout, its dependencies' ranges are pyproject.toml's.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[postgres]"

# The default database_url (sqlite:///relay.db) is relative: it lands in this directory,
# where a volume keeps it.
WORKDIR /var/lib/dbt-tableau-relay
USER 10001:10001
EXPOSE 8080

# Liveness only (/healthz); no curl in the slim image, so Python asks. Readiness (/readyz:
# the database answers) is for the orchestrator's probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('RELAY_HEALTHCHECK_URL', 'http://127.0.0.1:8080/healthz'), timeout=4)"]

ENTRYPOINT ["dbt-tableau-relay"]
CMD ["serve"]
