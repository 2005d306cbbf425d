#!/bin/sh
# Write the secrets compose.yaml mounts (deploy/secrets/*), with fresh random passwords, for a
# local stack. Existing files are kept, so running it again changes nothing. Bybit keys are
# yours to fill in: deploy/secrets/bybit_api_key and bybit_api_secret (testnet by default).
set -eu
cd "$(dirname "$0")"
umask 077

random() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
put() {  # put NAME VALUE: only when NAME does not exist yet
  if [ ! -e "$1" ]; then
    printf '%s\n' "$2" > "$1"
    echo "wrote deploy/secrets/$1"
  fi
}

pg=$( [ -e postgres_password ] && cat postgres_password || random )
mq=$( [ -e rabbitmq_password ] && cat rabbitmq_password || random )
put postgres_password "$pg"
put rabbitmq_password "$mq"
put rabbitmq.conf "default_user = om
default_pass = $mq"
put database_url "postgresql+asyncpg://om:$pg@postgres:5432/om"
put broker_url "amqp://om:$mq@rabbitmq:5672/"
put api_keys "$(random):trade"
put grafana_admin_password "$(random)"
put bybit_api_key ""
put bybit_api_secret ""

# The containers run as their own users: they must be able to read what is mounted. The
# directory itself stays closed to other users of this machine.
chmod 700 .
chmod 644 postgres_password rabbitmq_password rabbitmq.conf database_url broker_url api_keys \
  grafana_admin_password bybit_api_key bybit_api_secret
[ -s bybit_api_key ] || echo "note: put your Bybit API key and secret into deploy/secrets/bybit_api_key and bybit_api_secret"
