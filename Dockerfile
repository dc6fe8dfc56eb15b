# LIBRA coordinator and node images (the remote-hash function has its own: Dockerfile.function).
#
#   docker build --target coordinator -t libra-coordinator .
#   docker build --target node -t libra-node .
#
# Both run as a non-root user (uid 10001) and work with a read-only root file system: state lives
# in /var/lib/libra (a volume), scratch in /tmp (a tmpfs). See docker-compose.yml and
# docs/deployment.md.

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
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/libra
ENV PATH=/opt/libra/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/tmp/numba
WORKDIR /var/lib/libra
USER 10001:10001

FROM runtime AS coordinator
ENV LIBRA_COORDINATOR_HOST=0.0.0.0 \
    LIBRA_COORDINATOR_DATA_DIR=/var/lib/libra/coordinator
EXPOSE 8700
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8700/healthz', timeout=2)"]
CMD ["libra", "coordinator", "serve"]

FROM runtime AS node
# The node has no API; `serve` exposes Prometheus metrics when telemetry.metrics_listen is set.
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/metrics', timeout=2)"]
CMD ["libra", "node", "serve", "--config", "/etc/libra/node.toml"]
