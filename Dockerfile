# LIBRA coordinator and node images (the remote-hash function has its own: Dockerfile.function).
#
#   docker build --target coordinator -t libra-coordinator .
#   docker build --target node -t libra-node .
#
# Both run as a non-root user (uid 10001) and work with a read-only root file system: state
# lives in volumes mounted on directories this file creates and gives to uid 10001 (a named
# volume starts as a copy of the image's directory, owner included), scratch in /tmp (a tmpfs).
# The build context is cut down by .dockerignore. See docker-compose.yml, docs/deployment.md.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protocol ./protocol
COPY worker_function ./worker_function
COPY node ./node
COPY coordinator ./coordinator
COPY libra ./libra
RUN python -m venv /opt/libra && /opt/libra/bin/pip install --no-compile . \
    && /opt/libra/bin/python -m compileall -q /opt/libra

FROM python:3.11-slim-bookworm AS runtime
COPY --from=build /opt/libra /opt/libra
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin libra \
    && install -d -m 0755 /var/lib/libra
ENV PATH=/opt/libra/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/tmp/numba

FROM runtime AS coordinator
# The coordinator-data volume; register_nodes.py is the compose coordinator-register job.
RUN install -d -o 10001 -g 10001 -m 0700 /var/lib/libra/coordinator
COPY deploy/register_nodes.py /opt/libra/deploy/register_nodes.py
ENV LIBRA_COORDINATOR_HOST=0.0.0.0 \
    LIBRA_COORDINATOR_DATA_DIR=/var/lib/libra/coordinator
WORKDIR /var/lib/libra/coordinator
USER 10001:10001
EXPOSE 8700
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8700/healthz', timeout=2)"]
CMD ["libra", "coordinator", "serve"]

FROM runtime AS node
# node: the node's data volume (database, index), written by uid 10001; lists and geoip:
# read-only mounts of the operator's list files and GeoIP/ASN databases.
RUN install -d -o 10001 -g 10001 -m 0700 /var/lib/libra/node \
    && install -d -m 0755 /var/lib/libra/lists /var/lib/libra/geoip
# node_start.py checks keys, data directory and GeoIP databases before the node starts.
COPY deploy/node_start.py /opt/libra/deploy/node_start.py
WORKDIR /var/lib/libra/node
USER 10001:10001
# The node has no API; `serve` exposes Prometheus metrics when telemetry.metrics_listen is set.
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/metrics', timeout=2)"]
CMD ["libra", "node", "serve", "--config", "/etc/libra/node.toml"]
