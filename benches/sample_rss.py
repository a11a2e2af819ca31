#!/usr/bin/env python3
"""Runs a command and samples its resident memory every 20 ms (`/proc/PID/status`): its
peak, when it came, and the median and 90th percentile of the samples (docs/benchmarks.md).

    python3 benches/sample_rss.py COMMAND [ARGS...]

For instance `python3 benches/sample_rss.py target/release/omnilog replay --data-dir DIR
--out OUT --view journey`.
"""

import subprocess
import sys
import time


def main():
    child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.time()
    samples = []
    while child.poll() is None:
        try:
            for line in open(f"/proc/{child.pid}/status"):
                if line.startswith("VmRSS"):
                    samples.append((int(line.split()[1]) // 1024, time.time() - started))
        except OSError:
            break
        time.sleep(0.02)
    if not samples:
        sys.exit("no sample: the command ended at once")
    peak, at = max(samples)
    ordered = sorted(mb for mb, _ in samples)
    print(f"peak {peak} MB at {at:.1f} s of {time.time() - started:.1f} s; "
          f"median {ordered[len(ordered) // 2]} MB, p90 {ordered[int(len(ordered) * 0.9)]} MB")


if __name__ == "__main__":
    main()
