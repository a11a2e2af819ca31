#!/usr/bin/env bash
# Stops what deploy/local/up.sh started: services first (SIGTERM: they finish requests in
# flight, projectors leave their group), the broker last; waits for each to exit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
run="${OMNILOG_LOCAL_DIR:-$here/run}"
[ -e "$run/pids" ] || { echo "nothing to stop ($run/pids is missing)"; exit 0; }

stop() { # pid name
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 1 150); do kill -0 "$1" 2>/dev/null || { echo "stopped $2"; return 0; }; sleep 0.2; done
  echo "$2 did not stop within 30 s; killing it" >&2
  kill -KILL "$1" 2>/dev/null || true
}

# Reverse start order: projectors, ingest servers, then the broker they need to stop cleanly.
tac "$run/pids" | while read -r pid name; do stop "$pid" "$name"; done
rm -f "$run/pids"
