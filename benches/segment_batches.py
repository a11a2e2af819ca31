#!/usr/bin/env python3
"""Reads an embedded log's segment file and prints its batches: how many, over how many
partitions, the median records and bytes (decompressed and stored) of a batch, and the
decompressed bytes in all (docs/benchmarks-journal.md, "2026-12-06, night again"). Only the frame
and batch headers are read (the layout is in crates/log/src/embedded/format.rs).

    python3 benches/segment_batches.py DIR/log/0000000001.seg
"""

import statistics
import struct
import sys


def main():
    data = open(sys.argv[1], "rb").read()
    at = 32  # the segment header
    batches = []
    while at + 20 <= len(data):
        magic, body_len, _sequence, _crc = struct.unpack_from("<IIQI", data, at)
        if magic != 0x314C474F:
            break
        inside, end = at + 20, at + 20 + body_len
        while inside < end:
            topic, codec, _, partition, _first, count, stored, _ = struct.unpack_from(
                "<BBHIQIII", data, inside
            )
            plain = struct.unpack_from("<I", data, inside + 28)[0] if codec == 1 else stored
            batches.append((topic, partition, count, stored, plain))
            inside += 28 + stored
        at = end
    print(f"batches {len(batches)}, partitions {len({(b[0], b[1]) for b in batches})}")
    print(
        f"a batch's median: {statistics.median(b[2] for b in batches)} records, "
        f"{statistics.median(b[4] for b in batches) / 1024:.0f} KiB decompressed, "
        f"{statistics.median(b[3] for b in batches) / 1024:.0f} KiB stored"
    )
    print(f"decompressed in all: {sum(b[4] for b in batches) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
