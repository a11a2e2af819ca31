#!/usr/bin/env python3
"""Reads a scheduler trace and prints, per time slice, how many cores the process's threads
kept busy and which ran most; then the waits longer than a threshold, with the kernel
stack each thread slept on (docs/benchmarks-journal.md, "2026-12-05, afternoon").

    perf record -e sched:sched_switch -g -o TRACE COMMAND [ARGS...]
    perf script -i TRACE -F comm,tid,time,trace,ip,sym > TRACE.txt
    python3 benches/sched_timeline.py TRACE.txt [SLICE_SECONDS [MIN_WAIT_SECONDS]]

Defaults: slices of 0.02 s, waits of 2 ms or more. A thread's running time is counted from
the switch that put it on a core to the one that took it off: a thread already running when
the trace began (the process's main thread at its start) is counted from its first switch
in only. Waits are listed from the switch that took a thread off a core asleep (`S`) or on
the disk (`D`) to the switch that put it back.
"""

import collections
import re
import sys

SWITCH = re.compile(
    r"(\d+\.\d+): .*prev_comm=(.*) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> "
    r"next_comm=(.*) next_pid=(\d+)"
)
# Frames that say only that a thread slept, not why.
GENERIC = ("futex", "__futex", "do_futex", "__x64", "do_syscall", "entry_SYSCALL", "schedule",
           "io_schedule", "__schedule", "syscall", "[unknown]")


def switches(path):
    """Each switch: (time, previous thread's name, its id, its state, next id, stack)."""
    for block in open(path).read().split("\n\n"):
        lines = [line for line in block.strip().split("\n") if line.strip()]
        if not lines:
            continue
        found = SWITCH.search(lines[0])
        if not found:
            continue
        stack = [line.strip().split(None, 1)[1] for line in lines[1:] if len(line.split()) > 1]
        yield (float(found.group(1)), found.group(2), int(found.group(3)), found.group(4),
               int(found.group(6)), stack)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    slice_seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.02
    min_wait = float(sys.argv[3]) if len(sys.argv) > 3 else 0.002
    events = list(switches(sys.argv[1]))
    if not events:
        sys.exit("no sched_switch events in the trace")
    start = events[0][0]
    busy = collections.defaultdict(collections.Counter)
    on_core, asleep, waits = {}, {}, []
    for at, name, tid, state, next_tid, stack in events:
        if tid in on_core and tid != 0:
            began = on_core.pop(tid) - start
            ended = at - start
            index = int(began / slice_seconds)
            while began < ended - 1e-9:
                edge = min(ended, (index + 1) * slice_seconds)
                busy[index][name] += max(0.0, edge - began)
                began, index = edge, index + 1
        if state not in ("R", "R+") and tid != 0:
            asleep[tid] = (at, state, name, stack)
        if next_tid in asleep:
            since, slept, sleeper, why = asleep.pop(next_tid)
            waits.append((since - start, at - since, slept, sleeper, why))
        on_core[next_tid] = at
    print(f"wall {events[-1][0] - start:.3f} s")
    for index in sorted(busy):
        threads = busy[index]
        top = " ".join(f"{name[:14]}:{seconds * 1000:.0f}" for name, seconds in threads.most_common(4))
        print(f"{index * slice_seconds:8.3f} busy {sum(threads.values()) / slice_seconds:.2f}  {top}")
    print(f"waits of {min_wait * 1000:.0f} ms or more:")
    for since, length, state, name, stack in sorted(waits):
        if length >= min_wait:
            why = [frame for frame in stack if not frame.startswith(GENERIC)][:5]
            print(f"{since:8.3f} +{length * 1000:.1f} ms {state} {name[:15]:15} {' < '.join(f[:45] for f in why)}")


if __name__ == "__main__":
    main()
