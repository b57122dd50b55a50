#!/usr/bin/env python3
"""Regenerates the transaction and fulfillment seeds from the repository's
fixtures (the config seeds are written by hand). Run from anywhere:
python3 host/fuzz/seeds/extract.py. The output is deterministic."""
import base64
import json
import pathlib

seeds = pathlib.Path(__file__).resolve().parent
repo = seeds.parents[2]


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# Every driver-made transaction, valid or not, as its own JSON file.
fulfillments = {}
for family in ["bigchaindb-2.0", "planetmint-3.0"]:
    vectors = json.loads((repo / f"tests/fixtures/vectors/{family}.json").read_text())
    for vector in vectors:
        tx = json.dumps(vector["transaction"], ensure_ascii=False, separators=(",", ":"))
        write(seeds / "transaction" / f"{family}-{vector['name']}.json", tx.encode())
        for message in vector["signing_messages"]:
            fulfillment = message["fulfillment"]
            if fulfillment.get("binary_hex"):
                fulfillments.setdefault(fulfillment["binary_hex"], fulfillment["uri"])

# Fulfillments as raw DER (the target base64url-encodes its input) plus a
# few as URI text, for the base64 layer.
cc = repo / "host/tests/fixtures"
threshold = json.loads((cc / "cc-threshold-vectors.json").read_text())
for name in ["ed25519", "threshold_2of2", "threshold_1of2_signed_by_1", "threshold_2of3_signed_by_0_2"]:
    fulfillments.setdefault(threshold[name]["fulfillment_hex"], threshold[name]["fulfillment"])
nested = json.loads((cc / "cc-nested-vectors.json").read_text())
for name in ["nested", "wide"]:
    uri = nested[name]["fulfillment"]
    der = base64.urlsafe_b64decode(uri + "=" * (-len(uri) % 4))
    fulfillments.setdefault(der.hex(), uri)
# Most are single Ed25519 fulfillments of one shape: keep one per length.
by_length = {}
for der_hex, uri in sorted(fulfillments.items()):
    by_length.setdefault(len(der_hex), (der_hex, uri))
for i, (der_hex, uri) in enumerate(sorted(by_length.values())):
    write(seeds / "fulfillment" / f"der-{i:02}", bytes.fromhex(der_hex))
    write(seeds / "fulfillment" / f"uri-{i:02}", uri.encode())

# Ed25519 edge cases with libsodium's verdicts, as key ‖ signature ‖ message.
edge = json.loads((repo / "tests/fixtures/vectors/ed25519-edge-cases.json").read_text())
for case in edge["cases"]:
    raw = bytes.fromhex(case["public_key"] + case["signature"] + case["message"])
    write(seeds / "ed25519" / case["name"], raw)
