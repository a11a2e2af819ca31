#!/usr/bin/env python3
"""Times `omnilog replay` of one history with several builds, alternated round by round, and
prints each build's median wall time and quartiles (docs/benchmarks.md). The host's speed
moves by a quarter within minutes, so only builds run alternated in one set compare.

    python3 benches/alternate_replays.py ROUNDS HISTORY LABEL=BINARY [LABEL=BINARY ...]

For instance `python3 benches/alternate_replays.py 15 H200 before=/tmp/omnilog-old
after=target/release/omnilog`, H200 written by `omnilog bench --keep H200 --log-only`. Each
run replays HISTORY into a fresh directory (removed after it); the time is taken around the
whole process (start, replay, exit).
"""

import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    rounds, history = int(sys.argv[1]), sys.argv[2]
    builds = [spec.split("=", 1) for spec in sys.argv[3:]]
    times = {label: [] for label, _ in builds}
    scratch = tempfile.mkdtemp(prefix="alternate-replays-")
    try:
        for _ in range(rounds):
            for label, binary in builds:
                out = f"{scratch}/out"
                started = time.perf_counter()
                subprocess.run(
                    [binary, "replay", "--data-dir", history, "--out", out],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=True,
                )
                times[label].append(time.perf_counter() - started)
                shutil.rmtree(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for label, runs in times.items():
        runs.sort()
        print(
            f"{label:12} median {statistics.median(runs) * 1000:.1f} ms"
            f"  q1 {runs[len(runs) // 4] * 1000:.1f}  q3 {runs[3 * len(runs) // 4] * 1000:.1f}"
            f"  runs {len(runs)}"
        )


if __name__ == "__main__":
    main()
