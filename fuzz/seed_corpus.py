#!/usr/bin/env python3
"""Writes the committed seed corpus of every fuzz target (fuzz/corpus/<target>/) from the
project's own fixtures: each channel's payloads (crates/channels/fixtures/<channel>/),
canonical JSON events of every type and schema version (tests/golden/v*/events.jsonl), and
protobuf batches and single log records (tests/golden/v*/twin.pb).

Run from anywhere: python3 fuzz/seed_corpus.py. It rewrites the seeds it makes and leaves
other files (regression inputs added by hand) alone.
"""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
CHANNELS = ["voice", "sms", "email", "messenger", "whatsapp", "chat", "web_portal",
            "walk_in", "chatbot", "ivr", "alert", "x", "instagram", "fax", "mobile_app"]


def write(target, name, data):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


def varint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def batch_events(batch):
    """The events of a protobuf EventBatch (field 1, length-delimited), as raw records."""
    at, events = 0, []
    while at < len(batch):
        key, at = varint(batch, at)
        assert key == 0x0A, f"unexpected field key {key}"
        length, at = varint(batch, at)
        events.append(batch[at:at + length])
        at += length
    return events


for channel in CHANNELS:
    for fixture in sorted((ROOT / "crates/channels/fixtures" / channel).iterdir()):
        if not fixture.name.endswith(".events.json"):
            write(f"channel_{channel}", fixture.name, fixture.read_bytes())

for version in sorted((ROOT / "tests/golden").iterdir()):
    seen = {}
    for line in (version / "events.jsonl").read_text().splitlines():
        event_type = json.loads(line)["type"]
        seen.setdefault(event_type, line)
    for event_type, line in seen.items():
        write("events_json", f"{version.name}-{event_type}.json", line.encode())
    write("events_json", f"{version.name}-batch.json",
          ("[" + ",".join(list(seen.values())[:4]) + "]").encode())
    twin = (version / "twin.pb").read_bytes()
    write("events_protobuf", f"{version.name}-twin-batch.pb", twin)
    for index, record in enumerate(batch_events(twin)):
        write("events_protobuf", f"{version.name}-twin-{index:02}.pb", record)
