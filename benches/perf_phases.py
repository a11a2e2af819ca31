#!/usr/bin/env python3
"""Splits a `perf record --call-graph dwarf` profile of `omnilog serve` into the parts of
the write and read paths (docs/benchmarks-journal.md, "2026-12-03"): each sample is counted once,
under the first part whose functions its stack holds, in the order below.

    perf record -F 299 --call-graph dwarf,32768 -p SERVER_PID -o perf.data -- sleep 3
    perf script -i perf.data > perf.txt
    python3 benches/perf_phases.py perf.txt

The order matters: a fold under the sequencer (ingest's own identity view) is the
sequencer's, and the projector's folds come before its reading so that a fold is not
counted as reading.
"""

import collections
import re
import sys

PARTS = [
    ("checkpoints", r"write_taken|ingest_in_order|checkpoint_keeping|encode_in_order|encode_ahead"),
    ("sequencer", r"omnilog_ingest::sequence|RecentIds|omnilog_ingest::settle"),
    ("fold: journey", r"JourneyView as omnilog_views::View>::apply|journey::Fold"),
    ("fold: identity (projector)", r"IdentityView.*apply"),
    ("fold: other views", r"View>::apply|fold_member"),
    ("projector: read and decode", r"read_batches|decode_all|decode_sharing"),
    ("JSON parsing", r"serde_json|simd_json|RawEvent.*deserialize|parse_batch"),
    ("validation", r"validate|text_rules"),
    ("log writer", r"omnilog_log::embedded::Writer"),
    ("HTTP", r"hyper|axum|h1::"),
    ("view store", r"fjall|lsm_tree"),
]


def main():
    text = open(sys.argv[1]).read()
    counts = collections.Counter()
    total = 0
    for sample in text.split("\n\n"):
        lines = sample.strip().split("\n")
        if len(lines) < 2:
            continue
        total += 1
        stack = "\n".join(lines[1:])
        for name, pattern in PARTS:
            if re.search(pattern, stack):
                counts[name] += 1
                break
        else:
            counts["other"] += 1
    for name, count in counts.most_common():
        print(f"{100 * count / max(total, 1):5.1f} %  {name}")
    print(f"{total} samples")


if __name__ == "__main__":
    main()
