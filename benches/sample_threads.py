#!/usr/bin/env python3
"""Runs a command and samples its threads every 5 ms (`/proc/PID/task/*/stat`): how many
are runnable, and which one ran alone when only one did (docs/benchmarks-journal.md).

    python3 benches/sample_threads.py [--tail SECONDS] STEP_SECONDS COMMAND [ARGS...]

For instance `python3 benches/sample_threads.py 1 target/release/omnilog replay --data-dir
DIR --out OUT`. Prints, per STEP_SECONDS, the mean count of runnable threads and the samples
with one or none runnable (by the thread's name), then those over the whole run as shares of
the samples. With `--tail SECONDS` it samples every 2 ms and first prints each sample of the
run's last SECONDS: the threads running (`:R`) and those waiting on the disk (`:D`), which is
how docs/benchmarks-journal.md ("2026-12-05, early morning") reads a replay's last checkpoints. The
sampler takes CPU of its own: compare runs sampled alike.
"""

import collections
import os
import subprocess
import sys
import time


def states(pid):
    """The process's threads that are runnable (`R`) or waiting on the disk (`D`) now, as
    (name, state) pairs."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{task}/stat").read()
        except OSError:
            continue
        state = stat[stat.rindex(")") + 2]
        if state in "RD":
            found.append((stat[stat.index("(") + 1 : stat.rindex(")")], state))
    return found


def main():
    args = sys.argv[1:]
    tail = None
    if args[:1] == ["--tail"]:
        tail, args = float(args[1]), args[2:]
    step = float(args[0])
    child = subprocess.Popen(args[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.time()
    samples = []
    while child.poll() is None:
        try:
            samples.append((time.time() - started, states(child.pid)))
        except OSError:
            break
        time.sleep(0.002 if tail is not None else 0.005)
    if tail is not None and samples:
        end = samples[-1][0]
        for at, found in samples:
            if at >= end - tail:
                print(f"{at:7.3f}", " ".join(sorted(f"{name}:{state}" for name, state in found)))
    by_step = collections.defaultdict(list)
    for at, found in samples:
        by_step[int(at / step)].append([name for name, state in found if state == "R"])
    alone = collections.Counter()
    for index in sorted(by_step):
        rows = by_step[index]
        low = collections.Counter(tuple(names) for names in rows if len(names) <= 1)
        alone.update(low)
        mean = sum(len(names) for names in rows) / len(rows)
        print(f"{index * step:6.1f} s  runnable {mean:4.1f}  one or none {sum(low.values()):3d}/{len(rows):3d}",
              dict(low.most_common(3)))
    total = max(len(samples), 1)
    print("one or none, of all samples (%):",
          {names: round(count / total * 100, 1) for names, count in alone.most_common(8)})


if __name__ == "__main__":
    main()
