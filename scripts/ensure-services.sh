#!/usr/bin/env bash
# Start a stopped local PostgreSQL / RabbitMQ if they are installed here; the integration tests
# need them. Where they are not installed this does nothing: the tests then skip, or fail
# under OM_REQUIRE_SERVICES=1.
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432 && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi

if ! port_open 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached || true
  command -v rabbitmqctl >/dev/null 2>&1 && rabbitmqctl -q --timeout 60 await_startup || true
fi

up=no
for _ in $(seq 1 60); do
  if { port_open 5432 || ! command -v pg_ctlcluster >/dev/null 2>&1; } &&
     { port_open 5672 || ! command -v rabbitmq-server >/dev/null 2>&1; }; then
    up=yes
    break
  fi
  sleep 1
done
if [ "$up" = no ]; then
  echo "warning: PostgreSQL or RabbitMQ did not come up" >&2
  exit 0
fi

# OM_PARTITIONS routes through the consistent-hash exchange, a plugin that ships with RabbitMQ
# but is off by default (enabling it is a no-op when it is on already).
plugins_file=${RABBITMQ_ENABLED_PLUGINS_FILE:-/etc/rabbitmq/enabled_plugins}
if port_open 5672 && command -v rabbitmq-plugins >/dev/null 2>&1 &&
   ! grep -qs rabbitmq_consistent_hash_exchange "$plugins_file"; then
  rabbitmq-plugins -q enable rabbitmq_consistent_hash_exchange >/dev/null 2>&1 ||
    echo "warning: could not enable rabbitmq_consistent_hash_exchange; partition tests fail" >&2
fi
exit 0
