#!/usr/bin/env bash
# Starts a whole omnilog cluster on loopback: the tansu broker with memory storage, two
# ingest servers and three projector instances of one group. State and logs go under
# deploy/local/run/ (override with OMNILOG_LOCAL_DIR); `deploy/local/down.sh` stops it.
#
#   deploy/local/up.sh            # builds the release binary first if needed
#   curl -s localhost:8101/v1/views | jq .ownership
#
# Ports: broker 19092; ingest 8001, 8002; projectors 8101, 8102, 8103.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
run="${OMNILOG_LOCAL_DIR:-$here/run}"
broker_port="${OMNILOG_BROKER_PORT:-19092}"
brokers="127.0.0.1:$broker_port"
omnilog="$root/target/release/omnilog"

if [ -e "$run/pids" ]; then
  echo "a cluster seems to be running already ($run/pids); stop it with deploy/local/down.sh" >&2
  exit 1
fi
command -v tansu >/dev/null 2>&1 || {
  echo "tansu is missing: cargo install tansu --locked --features dynostore" >&2
  exit 1
}
[ -x "$omnilog" ] || (cd "$root" && cargo build --release)
mkdir -p "$run/logs"

start() { # name, command...
  local name="$1"; shift
  "$@" >"$run/logs/$name.log" 2>&1 &
  echo "$! $name" >>"$run/pids"
}

wait_for() { # url
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "no answer from $1; see $run/logs/" >&2
  return 1
}

start broker tansu broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
  --storage-engine memory://tansu/
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$broker_port") 2>/dev/null && break; sleep 0.1; done

# The first ingest server creates the topics; the others find them.
start ingest-1 "$omnilog" ingest-server --brokers "$brokers" --listen 127.0.0.1:8001 --data-dir "$run/ingest-1"
wait_for http://127.0.0.1:8001/healthz
start ingest-2 "$omnilog" ingest-server --brokers "$brokers" --listen 127.0.0.1:8002 --data-dir "$run/ingest-2"
for n in 1 2 3; do
  start "projector-$n" "$omnilog" projector --brokers "$brokers" --group omnilog-views \
    --listen "127.0.0.1:810$n" --data-dir "$run/projector-$n"
done
for url in http://127.0.0.1:8002/healthz http://127.0.0.1:8101/readyz http://127.0.0.1:8102/readyz http://127.0.0.1:8103/readyz; do
  wait_for "$url"
done
# The group rebalances as each projector joins: wait until all three claim partitions and
# a global query is answered (until then queries get 503 with Retry-After).
for _ in $(seq 1 300); do
  claims="$( (curl -fsS http://127.0.0.1:8101/v1/views 2>/dev/null || true) | grep -o '"ready":\[[0-9]' | wc -l || true)"
  if [ "$claims" -ge 3 ] && curl -fsS -o /dev/null http://127.0.0.1:8101/v1/reports/journeys 2>/dev/null; then
    break
  fi
  sleep 0.2
done
cat <<MSG
omnilog cluster up:
  broker      $brokers (tansu, memory storage)
  ingest      http://127.0.0.1:8001  http://127.0.0.1:8002
  projectors  http://127.0.0.1:8101  http://127.0.0.1:8102  http://127.0.0.1:8103
Drive it:  $omnilog simulate --target http://127.0.0.1:8001 --events 20000 --rate 2000
Ownership: curl -s http://127.0.0.1:8101/v1/views
Stop it:   deploy/local/down.sh
MSG
