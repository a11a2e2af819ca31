#!/bin/bash
# How long `omnilog serve` takes to listen on a data dir, and to stop cleanly after.
# usage: benches/start_time.sh BIN DATA_DIR PORT [SECONDS_TO_SERVE]
# The server is started in a session of its own, /livez polled every 50 ms (for at most a
# minute), then stopped with SIGTERM by its process id. Prints both times and the start's
# identity lines (run with RUST_LOG=info, the default of the binary's log filter).
set -u
BIN=$1; DIR=$2; PORT=$3; SERVE=${4:-1}
LOG=$(mktemp)
started=$(date +%s.%N)
setsid "$BIN" serve --data-dir "$DIR" --listen "127.0.0.1:$PORT" > "$LOG" 2>&1 < /dev/null &
pid=$!
for _ in $(seq 1 1200); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/livez" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
listening=$(date +%s.%N)
echo "listening after $(echo "$listening - $started" | bc) s"
sleep "$SERVE"
kill -TERM "$pid"
asked=$(date +%s.%N)
wait "$pid"
echo "stopped in $(echo "$(date +%s.%N) - $asked" | bc) s"
sed 's/\x1b\[[0-9;]*m//g' "$LOG" | grep -E "identity" | cut -c1-220
rm -f "$LOG"
