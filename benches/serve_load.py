#!/usr/bin/env python3
"""Loads a canonical JSONL history into a fresh `omnilog serve` through its API and reports
the server's CPU time and page faults for the whole load, every view caught up
(docs/benchmarks.md).

    python3 benches/serve_load.py OMNILOG_BINARY HISTORY.jsonl [CLIENTS] [PORT]

HISTORY.jsonl is what `omnilog export --topics all` writes (for instance of a log kept with
`omnilog bench --events 1000000 --keep DIR --log-only`). The server runs in a scratch data
dir with strict readiness (`OMNILOG_READY_MAX_LAG_SECS=0`): `/readyz` answers 200 only
once every view has folded the whole log, so the CPU time read then covers all the folding.
Requests carry 1,000 events each; CLIENTS (default 8) send at once. With SERVE_LOAD_KEEP
set, the server's data dir is kept (its path printed), for instance for
`benches/segment_batches.py DIR/log/0000000001.seg`.
"""

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time


def main():
    binary, history = sys.argv[1], sys.argv[2]
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    port = int(sys.argv[4]) if len(sys.argv) > 4 else 18990
    with open(history, "rb") as file:
        lines = [line for line in file.read().split(b"\n") if line]
    bodies = [b"[" + b",".join(lines[i:i + 1000]) + b"]" for i in range(0, len(lines), 1000)]
    bodies.reverse()
    data = tempfile.mkdtemp(prefix="serve-load-")
    env = dict(os.environ, OMNILOG_READY_MAX_LAG_SECS="0")
    server = subprocess.Popen(
        [binary, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(port, "/healthz", 10)
        lock = threading.Lock()
        failures = []

        def send():
            connection = http.client.HTTPConnection("127.0.0.1", port)
            while True:
                with lock:
                    if not bodies or failures:
                        return
                    body = bodies.pop()
                connection.request("POST", "/v1/events", body=body,
                                   headers={"content-type": "application/json"})
                answer = connection.getresponse()
                answer.read()
                if answer.status != 202:
                    failures.append(answer.status)

        started = time.time()
        threads = [threading.Thread(target=send) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            sys.exit(f"a request was answered {failures[0]}")
        posted = time.time()
        wait_for(port, "/readyz", 3600)
        done = time.time()
        with open(f"/proc/{server.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        # Minor and major page faults (the stat file's fields 10 and 12).
        faults = int(fields[7]) + int(fields[9])
        with open(f"/proc/{server.pid}/status") as status:
            peak = next(line.split()[1] for line in status if line.startswith("VmHWM"))
        print(f"{len(lines)} events: posted in {posted - started:.2f} s, every view caught up "
              f"at {done - started:.2f} s ({len(lines) / (done - started):.0f} events/s); "
              f"server CPU {cpu:.2f} s, {faults} page faults, peak RSS {int(peak) // 1024} MB")
    finally:
        server.terminate()
        server.wait()
        if os.environ.get("SERVE_LOAD_KEEP"):
            print(f"the server's data dir is kept: {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)


def wait_for(port, path, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{path} did not answer 200 within {seconds} s")


if __name__ == "__main__":
    main()
