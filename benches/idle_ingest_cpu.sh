#!/usr/bin/env bash
# The CPU an idle `omnilog ingest-server` takes on a fresh tansu broker (memory storage),
# and tansu's own: clock ticks of each over 20 s, read from /proc/PID/stat after 5 s of
# warm-up (docs/benchmarks-journal.md, "2026-12-07, late morning"). Starts and stops both
# by process id.
#
#     bash benches/idle_ingest_cpu.sh OMNILOG_BINARY
#
# Alternate builds run after run: the host's speed moves within minutes.
set -euo pipefail
bin=$1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kafka_port=$(free_port)
http_port=$(free_port)
data=$(mktemp -d)
tansu broker --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
  --storage-engine memory://tansu/ > "$data/tansu.log" 2>&1 &
broker=$!
trap 'kill $server $broker 2>/dev/null; wait $server $broker 2>/dev/null; rm -rf "$data"' EXIT
server=$broker
for _ in $(seq 1 50); do (echo > "/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null && break; sleep 0.2; done
"$bin" ingest-server --brokers "127.0.0.1:$kafka_port" --listen "127.0.0.1:$http_port" \
  --data-dir "$data/server" > "$data/server.log" 2>&1 &
server=$!
sleep 5
server_before=$(ticks "$server"); broker_before=$(ticks "$broker")
sleep 20
echo "server $(( $(ticks "$server") - server_before )) ticks, tansu $(( $(ticks "$broker") - broker_before )) ticks in 20 s"
