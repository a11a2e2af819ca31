#!/usr/bin/env python3
"""Times `omnilog replay` of one history with several builds, alternated round by round, and
prints each build's median wall time and quartiles, and its median CPU time
(docs/benchmarks.md). The host's speed moves by a quarter within minutes, so only builds
run alternated in one set compare.

    python3 benches/alternate_replays.py ROUNDS HISTORY LABEL=BINARY [LABEL=BINARY ...]

For instance `python3 benches/alternate_replays.py 15 H200 before=/tmp/omnilog-old
after=target/release/omnilog`, H200 written by `omnilog bench --keep H200 --log-only`. Each
run replays HISTORY into a fresh directory (removed after it); the time is taken around the
whole process (start, replay, exit). The CPU time is `perf stat -e task-clock`'s when
`perf` runs here, else the children's user and system time from `os.times()` (to 10 ms).
A BINARY may be a script that sets an experiment's environment and `exec`s a build, and may
be written `BINARY@OTHER_HISTORY` to replay another history than HISTORY with it (the same
events in two logs, one build: `alternate_replays.py 7 H1M in-order=omnilog
grouped=omnilog@H1M_GROUPED`).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def perf_works():
    """Whether `perf stat` can count task-clock here."""
    try:
        probe = subprocess.run(
            ["perf", "stat", "-x,", "-e", "task-clock", "true"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        return False
    return probe.returncode == 0 and "task-clock" in probe.stderr


def run_once(binary, history, out, use_perf):
    """Replays once; returns (wall seconds, CPU milliseconds)."""
    command = [binary, "replay", "--data-dir", history, "--out", out]
    if use_perf:
        command = ["perf", "stat", "-x,", "-e", "task-clock", *command]
    before = os.times()
    started = time.perf_counter()
    finished = subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True
    )
    wall = time.perf_counter() - started
    if use_perf:
        line = next(l for l in finished.stderr.splitlines() if "task-clock" in l)
        return wall, float(line.split(",")[0])
    after = os.times()
    children = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, 1000 * children


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    rounds, history = int(sys.argv[1]), sys.argv[2]
    builds = []
    for spec in sys.argv[3:]:
        label, binary = spec.split("=", 1)
        binary, _, other = binary.partition("@")
        builds.append((label, binary, other or history))
    use_perf = perf_works()
    times = {label: [] for label, _, _ in builds}
    cpus = {label: [] for label, _, _ in builds}
    scratch = tempfile.mkdtemp(prefix="alternate-replays-")
    try:
        for _ in range(rounds):
            for label, binary, replayed in builds:
                out = f"{scratch}/out"
                wall, cpu = run_once(binary, replayed, out, use_perf)
                times[label].append(wall)
                cpus[label].append(cpu)
                shutil.rmtree(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    source = "perf task-clock" if use_perf else "os.times"
    for label, runs in times.items():
        runs.sort()
        print(
            f"{label:12} median {statistics.median(runs) * 1000:.1f} ms"
            f"  q1 {runs[len(runs) // 4] * 1000:.1f}  q3 {runs[3 * len(runs) // 4] * 1000:.1f}"
            f"  cpu {statistics.median(cpus[label]):.1f} ms ({source})  runs {len(runs)}"
        )


if __name__ == "__main__":
    main()
