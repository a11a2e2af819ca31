#!/usr/bin/env python3
"""Runs `benches/serve_load.py` and samples the server's threads every tenth of a second
(`/proc/PID/task/*/stat`): the clock ticks each kind of thread took in each tenth, by the
first 12 characters of its name, so it shows which threads take the cores while requests
come and while the views catch up afterwards (docs/benchmarks-journal.md, "2026-12-07,
late morning").

    python3 benches/serve_threads.py OMNILOG_BINARY HISTORY.jsonl [CLIENTS]

At 100 ticks a second, two cores give 20 ticks a tenth. Prints serve_load.py's last line,
then a row a tenth of a second (rows where nothing ran are left out).
"""

import collections
import os
import subprocess
import sys
import time


def server_pid(binary, started, timeout=60):
    """The process id of `binary serve ...` started by serve_load.py."""
    name = os.path.basename(binary)
    while time.time() - started < timeout:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as file:
                    argv = file.read().split(b"\0")
            except OSError:
                continue
            if len(argv) > 1 and os.path.basename(argv[0].decode()) == name and argv[1] == b"serve":
                return int(entry)
        time.sleep(0.02)
    sys.exit("the server did not start within a minute")


def thread_ticks(pid):
    """Ticks (user + system) so far of each thread of `pid`, with its name."""
    ticks = {}
    for thread in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{thread}/stat") as file:
                stat = file.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[thread] = (name[:12], int(fields[11]) + int(fields[12]))
    return ticks


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    binary, history = sys.argv[1], sys.argv[2]
    clients = sys.argv[3] if len(sys.argv) > 3 else "32"
    here = os.path.dirname(os.path.abspath(__file__))
    load = subprocess.Popen(
        [sys.executable, os.path.join(here, "serve_load.py"), binary, history, clients],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started = time.time()
    pid = server_pid(binary, started)
    before, rows = {}, []
    while load.poll() is None:
        try:
            now = thread_ticks(pid)
        except FileNotFoundError:
            break
        by_name = collections.Counter()
        for thread, (name, ticks) in now.items():
            if thread in before:
                by_name[name] += ticks - before[thread][1]
        rows.append((time.time() - started, by_name))
        before = now
        time.sleep(0.1)
    output = load.stdout.read().strip().splitlines()
    print(output[-1] if output else "serve_load.py printed nothing")
    names = sorted({name for _, by_name in rows for name in by_name})
    print("     t  " + " ".join(f"{name[:8]:>8}" for name in names))
    for at, by_name in rows:
        if sum(by_name.values()):
            print(f"{at:6.1f}  " + " ".join(f"{by_name.get(name, 0):8d}" for name in names))


if __name__ == "__main__":
    main()
