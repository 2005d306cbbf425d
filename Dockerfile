# syntax=docker/dockerfile:1
# The Order Manager image. One image, three commands (docs/deploy.md):
#   docker run … order-manager                  # om run: the service (the default)
#   docker run … order-manager ws-gateway       # the Bybit WS-Gateway alone
#   docker run … order-manager db upgrade       # migrations, a separate step
# Configuration is OM_* variables only (secrets also as OM_<NAME>_FILE).
ARG PYTHON_VERSION=3.11

# -- build: the wheel, installed with the pinned dependencies into a fresh virtualenv -------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY scripts/build-venv.sh scripts/build-venv.sh
COPY om_core om_core
COPY om_plugins om_plugins
COPY plugins_builtin plugins_builtin
COPY api api
COPY migrations migrations
# The same script tests/deploy/test_install.py runs (no container engine on CI).
RUN scripts/build-venv.sh /opt/order-manager

# -- runtime: the interpreter and the virtualenv, nothing else ------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 om \
 && useradd --system --uid 10001 --gid om --home-dir /var/lib/order-manager --create-home \
      --shell /usr/sbin/nologin om
COPY --from=build /opt/order-manager /opt/order-manager
ENV PATH=/opt/order-manager/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OM_API_HOST=0.0.0.0 \
    OM_API_PORT=8000 \
    OM_LOG_FORMAT=json
# Numeric, so that orchestrators can verify runAsNonRoot.
USER 10001:10001
WORKDIR /var/lib/order-manager
EXPOSE 8000
# Exec form: om is PID 1 and gets SIGTERM itself; it stops consuming, lets in-flight messages
# finish within OM_SHUTDOWN_GRACE_SECONDS, flushes the outbox and leaves the cluster.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["om", "health"]
ENTRYPOINT ["om"]
CMD ["run"]
