#!/usr/bin/env python3
"""Splits a heaptrack profile's peak heap by the view whose code made each allocation
(docs/benchmarks-journal.md, "2026-12-03, afternoon").

    heaptrack -o PROFILE target/release/omnilog replay --data-dir DIR --out OUT
    heaptrack_print -f PROFILE.zst --flamegraph-cost-type peak -F PEAK.txt
    python3 benches/heap_by_file.py PEAK.txt

Build without jemalloc first (`cargo build --release --no-default-features`): heaptrack
sees only what goes through the system allocator. A stack counts for the first of the
views' source files it passes through (identity first: its fold is called from the
replay's code), else for the decoder, the log's reads or the rest of the projection; and
hash tables' bucket arrays (hashbrown's `RawTable`, `reserve_rehash`) are summed apart too.
"""

import collections
import sys

VIEWS = [
    ("identity", "(identity.rs)"),
    ("journey", "(journey.rs)"),
    ("journey", "(records.rs)"),
    ("reports", "(reporting.rs)"),
    ("engagement", "(engagement.rs)"),
    ("segments view and log reads", "(segments.rs)"),
    ("queue", "(queue.rs)"),
]


def part_of(stack):
    for name, file in VIEWS:
        if file in stack:
            return name
    if "decode_all_into" in stack:
        return "decoded batches in flight"
    if "(format.rs)" in stack:
        return "log reads"
    if "(projection.rs)" in stack:
        return "checkpoints being encoded and written"
    return "other"


def main():
    parts = collections.Counter()
    tables = 0
    for line in open(sys.argv[1]):
        stack, _, cost = line.rstrip().rpartition(" ")
        cost = int(cost)
        parts[part_of(stack)] += cost
        if "reserve_rehash" in stack or "RawTable" in stack:
            tables += cost
    print(f"{sum(parts.values()) / 1e6:8.1f} MB  peak heap")
    for name, cost in parts.most_common():
        print(f"{cost / 1e6:8.1f} MB  {name}")
    print(f"{tables / 1e6:8.1f} MB  of it hash tables' bucket arrays")


if __name__ == "__main__":
    main()
