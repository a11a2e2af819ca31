#!/usr/bin/env python3
"""The disk's sync rate as a replay's last ingestion meets it: writes a file of 64 MiB in
writes of 1 MiB, then `fsync`s it, three times each way; the second way asks the kernel to
start writing back every 8 MiB as it goes (`posix_fadvise(POSIX_FADV_DONTNEED)` on the range
written since the last request, what `crates/store/src/writeback.rs` does), see
docs/benchmarks-journal.md, "2026-12-05, late morning".

    python3 benches/fsync_rate.py [DIR]

DIR (default: the current directory) must be on the disk to measure.
"""

import os
import sys
import time

MIB = 1 << 20
FILE_MIB = 64
STEP_MIB = 8


def one(path, advise):
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    block = os.urandom(MIB)
    advised = 0
    try:
        started = time.perf_counter()
        for written in range(1, FILE_MIB + 1):
            os.write(fd, block)
            if advise and written % STEP_MIB == 0:
                os.posix_fadvise(fd, advised, written * MIB - advised, os.POSIX_FADV_DONTNEED)
                advised = written * MIB
        wrote = time.perf_counter()
        os.fsync(fd)
        synced = time.perf_counter()
    finally:
        os.close(fd)
        os.unlink(path)
    return (wrote - started) * 1000, (synced - wrote) * 1000


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    path = os.path.join(directory, "fsync_rate.tmp")
    for _ in range(3):
        for advise in (False, True):
            write_ms, sync_ms = one(path, advise)
            way = "advised every 8 MiB" if advise else "plain"
            print(f"{way:>20}: {FILE_MIB} MiB written in {write_ms:.0f} ms, fsync {sync_ms:.0f} ms")


if __name__ == "__main__":
    main()
