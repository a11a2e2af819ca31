#!/usr/bin/env python3
"""Reads a scheduler trace of switches and wake-ups and prints, for the traced process's
threads: how long each ran, waited for a core once woken (runnable) and slept; who woke
whom after how long a sleep; and, between the edges given, how long both cores ran the
process's threads, how long neither did, and which thread ran alone while the other core
idled (docs/benchmarks-journal.md, "2026-12-07, evening").

    perf record -e sched:sched_switch -e sched:sched_wakeup -o TRACE COMMAND [ARGS...]
    perf script -i TRACE -F comm,pid,tid,cpu,time,event,trace > TRACE.txt
    python3 benches/sched_wakeups.py TRACE.txt [EDGE_SECONDS,...]

For instance `... omnilog replay --data-dir H200 --out OUT` and edges `0.03,0.18`: the
replay's start, its passes, its last checkpoints. The process is the one whose threads the
trace shows most; times are from the trace's first event. Written for a two-core machine:
"alone" means one of the process's threads on a core and the other core idle or running
something else.
"""

import collections
import re
import sys

EVENT = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+(\d+\.\d+):\s+sched:(sched_switch|sched_wakeup):\s+(.*)$")
SWITCH = re.compile(r"prev_comm=(.+?) prev_pid=(\d+) .*?prev_state=(\S+) ==> next_comm=(.+?) next_pid=(\d+)")
WAKEUP = re.compile(r"comm=(.+?) pid=(\d+)")


def events(path):
    """(time, cpu, current pid, current tid, current comm, kind, the trace's fields) of
    each event."""
    with open(path) as lines:
        for line in lines:
            match = EVENT.match(line)
            if match:
                comm, pid, tid, cpu, at, kind, rest = match.groups()
                yield float(at), int(cpu), int(pid), int(tid), comm.strip(), kind, rest


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    edges = [float(e) for e in sys.argv[2].split(",")] if len(sys.argv) > 2 else []
    # The process: the pid whose threads the trace shows most.
    counts = collections.Counter(pid for _, _, pid, _, _, _, _ in events(path) if pid != 0)
    process = counts.most_common(1)[0][0]
    ours = {tid for _, _, pid, tid, _, _, _ in events(path) if pid == process}

    names = {}
    state, since = {}, {}
    totals = collections.defaultdict(lambda: collections.defaultdict(float))
    woken_by = collections.defaultdict(float)
    woken_count = collections.Counter()
    on_cpu = {}
    first = last = None
    windows = collections.defaultdict(lambda: collections.defaultdict(float))

    def settle(tid, now):
        if tid in since:
            totals[tid][state[tid]] += now - since[tid]

    for at, cpu, _, _, comm, kind, rest in events(path):
        first = at if first is None else first
        if last is not None:
            # What ran on the cores since the event before.
            running = [t for t in on_cpu.values() if t in ours]
            span = at - last
            window = sum(1 for edge in edges if last - first >= edge)
            if len(running) >= 2:
                windows[window]["both"] += span
            elif not running:
                windows[window]["none"] += span
            else:
                windows[window]["alone " + names.get(running[0], str(running[0]))] += span
        last = at
        if kind == "sched_switch":
            match = SWITCH.search(rest)
            if not match:
                continue
            prev_comm, prev, prev_state, next_comm, nxt = match.groups()
            prev, nxt = int(prev), int(nxt)
            names[prev], names[nxt] = prev_comm, next_comm
            if prev in ours:
                settle(prev, at)
                state[prev] = "runnable" if prev_state.startswith("R") else "asleep"
                since[prev] = at
            if nxt in ours:
                settle(nxt, at)
                state[nxt], since[nxt] = "running", at
            on_cpu[cpu] = nxt
        else:
            match = WAKEUP.search(rest)
            if not match:
                continue
            target = int(match.group(2))
            if target not in ours or state.get(target) != "asleep":
                continue
            names[target] = match.group(1)
            slept = at - since[target]
            settle(target, at)
            state[target], since[target] = "runnable", at
            key = (match.group(1), comm)
            woken_by[key] += slept
            woken_count[key] += 1

    print(f"process {process}, {len(ours)} threads, trace {(last - first) * 1000:.1f} ms")
    by_name = collections.defaultdict(lambda: collections.defaultdict(float))
    for tid, kinds in totals.items():
        for kind, seconds in kinds.items():
            by_name[names.get(tid, str(tid))][kind] += seconds
    print("\nthread             running  runnable    asleep (ms)")
    for name, kinds in sorted(by_name.items(), key=lambda item: -item[1]["running"]):
        print(f"{name:16s} {kinds['running'] * 1000:9.1f} {kinds['runnable'] * 1000:9.1f} {kinds['asleep'] * 1000:9.1f}")
    print("\nwoken              by                 after sleeping (ms)  times")
    for (target, waker), seconds in sorted(woken_by.items(), key=lambda item: -item[1])[:25]:
        print(f"{target:18s} {waker:18s} {seconds * 1000:12.1f} {woken_count[(target, waker)]:10d}")
    print("\nbetween the edges: both cores, neither, or one thread alone (ms)")
    for window in sorted(windows):
        parts = sorted(windows[window].items(), key=lambda item: -item[1])[:8]
        print(f"window {window}: " + " | ".join(f"{k} {v * 1000:.1f}" for k, v in parts))


if __name__ == "__main__":
    main()
