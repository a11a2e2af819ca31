#!/usr/bin/env python3
"""Runs a command, samples its resident memory every 10 ms (`/proc/PID/status`) and keeps
its log lines (stderr) with their times, then prints the peak, the samples of the second
around it, and the log lines of the three seconds around it: what was happening when the
memory peaked (docs/benchmarks-journal.md, "2026-12-04").

    RUST_LOG=omnilog_projector=debug python3 benches/rss_timeline.py COMMAND [ARGS...]

For instance `RUST_LOG=omnilog_projector=debug python3 benches/rss_timeline.py
target/release/omnilog replay --data-dir DIR --out OUT`, whose "checkpoint written" lines
say which view wrote how many records when.
"""

import re
import subprocess
import sys
import threading
import time

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    started = time.time()
    child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines = []

    def keep_lines():
        for line in child.stderr:
            lines.append((time.time() - started, ANSI.sub("", line.decode(errors="replace")).strip()))

    reader = threading.Thread(target=keep_lines)
    reader.start()
    samples = []
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS"):
                        samples.append((time.time() - started, int(line.split()[1]) // 1024))
        except OSError:
            break
        time.sleep(0.01)
    reader.join()
    if not samples:
        sys.exit("no sample: the command ended at once")
    at, peak = max(samples, key=lambda sample: sample[1])
    print(f"peak {peak} MB at {at:.2f} s (exit {child.returncode})")
    for when, megabytes in samples:
        if abs(when - at) < 1.0:
            print(f"{when:.2f} s  {megabytes} MB")
    for when, line in lines:
        if abs(when - at) < 1.5:
            print(f"{when:.2f} s  {line[:200]}")


if __name__ == "__main__":
    main()
