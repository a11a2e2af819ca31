#!/usr/bin/env python3
"""Serves replayed views read-only with several builds and asks each the journeys of the same
customers: says whether every build answered every customer with the same JSON, and each
build's p50 and p99 answer time (docs/benchmarks-journal.md, "2026-12-06, late night").

    python3 benches/journey_answers.py HISTORY.jsonl CUSTOMERS ROUNDS LABEL=BINARY:REPLAYED ...

REPLAYED is what `BINARY replay --data-dir DIR --out REPLAYED` wrote (each build replays
into its own directory: the journey view's layout may differ between builds, and a view
store is served by one process at a time), HISTORY.jsonl
what `omnilog export --data-dir DIR` wrote of the same log. The first CUSTOMERS customer ids
of the history are asked one after the other, ROUNDS times for each build, the builds
alternated round by round. Each server listens on a free loopback port and is stopped (by
its process id) when done.
"""

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def customers_of(history, wanted):
    seen = []
    with open(history, encoding="utf-8") as lines:
        for line in lines:
            customer = (json.loads(line).get("customer") or {}).get("id")
            if customer and customer not in seen:
                seen.append(customer)
                if len(seen) == wanted:
                    break
    return seen


def start(binary, replayed):
    port = free_port()
    server = subprocess.Popen(
        [binary, "serve", "--data-dir", replayed, "--read-only", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/readyz")
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                return server, connection
        except OSError:
            time.sleep(0.1)
    server.kill()
    server.wait(timeout=30)
    return None


def ask(connection, customer):
    started = time.perf_counter()
    connection.request("GET", f"/v1/customers/{customer}/journey")
    response = connection.getresponse()
    body = response.read()
    return time.perf_counter() - started, response.status, body


def main():
    history, wanted, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    builds = []
    for spec in sys.argv[4:]:
        label, _, rest = spec.partition("=")
        binary, _, replayed = rest.partition(":")
        builds.append((label, os.path.abspath(binary), replayed))
    customers = customers_of(history, wanted)
    servers = {}
    times = {label: [] for label, _, _ in builds}
    answers = {}
    try:
        for label, binary, replayed in builds:
            started = start(binary, replayed)
            if started is None:
                # The servers already started are stopped below (each build needs a
                # REPLAYED of its own: a view store is served by one process at a time).
                sys.exit(f"{binary} did not start serving {replayed} (is another process serving it?)")
            servers[label] = started
        for _ in range(rounds):
            for label, _, _ in builds:
                connection = servers[label][1]
                for customer in customers:
                    took, status, body = ask(connection, customer)
                    times[label].append(took)
                    answers.setdefault(customer, {})[label] = (status, json.loads(body))
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=30)
    differing = [c for c, by in answers.items() if len({json.dumps(a, sort_keys=True) for a in by.values()}) > 1]
    answered = sum(1 for by in answers.values() if all(status == 200 for status, _ in by.values()))
    print(f"{len(customers)} customers, {answered} answered 200 by every build, {len(differing)} answered differently")
    for customer in differing[:3]:
        print(f"  differs: {customer}")
    for label, took in times.items():
        took.sort()
        p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
        print(f"{label:12} p50 {statistics.median(took) * 1000:.2f} ms  p99 {p99 * 1000:.2f} ms  asked {len(took)}")
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
