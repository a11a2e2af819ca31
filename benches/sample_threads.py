#!/usr/bin/env python3
"""Runs a command and samples its threads every 5 ms (`/proc/PID/task/*/stat`): how many
are runnable, and which one ran alone when only one did (docs/benchmarks.md).

    python3 benches/sample_threads.py STEP_SECONDS COMMAND [ARGS...]

For instance `python3 benches/sample_threads.py 1 target/release/omnilog replay --data-dir
DIR --out OUT`. Prints, per STEP_SECONDS, the mean count of runnable threads and the samples
with one or none runnable (by the thread's name), then those over the whole run as shares of
the samples. The sampler takes CPU of its own: compare runs sampled alike.
"""

import collections
import os
import subprocess
import sys
import time


def runnable(pid):
    """The names of the process's threads that are runnable now."""
    names = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{task}/stat").read()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] == "R":
            names.append(stat[stat.index("(") + 1 : stat.rindex(")")])
    return names


def main():
    step = float(sys.argv[1])
    child = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.time()
    samples = []
    while child.poll() is None:
        try:
            samples.append((time.time() - started, runnable(child.pid)))
        except OSError:
            break
        time.sleep(0.005)
    by_step = collections.defaultdict(list)
    for at, names in samples:
        by_step[int(at / step)].append(names)
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
