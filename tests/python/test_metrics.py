"""/metrics in the text format Prometheus scrapes, read by the real parser."""

import json
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from test_drivers import spend


def scrape(node):
    with urllib.request.urlopen(f"{node.url}/metrics") as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def post(node, tx, mode="commit"):
    request = urllib.request.Request(
        f"{node.url}/api/v1/transactions?mode={mode}",
        data=json.dumps(tx).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_counters_match_what_happened(node):
    from bigchaindb_driver.crypto import generate_keypair
    from bigchaindb_driver.offchain import fulfill_transaction, prepare_transaction

    alice = generate_keypair()
    creates = []
    for i in range(3):
        tx = prepare_transaction(operation="CREATE", signers=alice.public_key, asset={"data": {"i": i}})
        creates.append(fulfill_transaction(tx, private_keys=alice.private_key))
    for tx in creates:
        assert post(node, tx) == 202
    assert post(node, creates[0]) == 400  # a duplicate
    spent = spend(creates[1], 0)
    for metadata in ({"first": 1}, {"second": 2}):
        tx = prepare_transaction(
            operation="TRANSFER",
            signers=alice.public_key,
            recipients=alice.public_key,
            inputs=spent,
            asset={"id": creates[1]["id"]},
            metadata=metadata,
        )
        # Both spends are accepted asynchronously; the second fails in its block.
        assert post(node, fulfill_transaction(tx, private_keys=alice.private_key), "async") == 202
    node.events(5)

    samples = scrape(node)
    assert samples[("eventhost_transactions_accepted_total", (("mode", "commit"),))] == 3
    assert samples[("eventhost_transactions_accepted_total", (("mode", "async"),))] == 2
    rejected = samples[("eventhost_transactions_rejected_total", (("rule", "DuplicateTransaction"), ("stage", "admission")))]
    assert rejected == 1
    assert samples[("eventhost_transactions_rejected_total", (("rule", "DoubleSpend"), ("stage", "block")))] == 1
    assert samples[("eventhost_events_published_total", (("type", "BLOCK_VALID"),))] == 4
    assert samples[("eventhost_events_published_total", (("type", "BLOCK_INVALID"),))] == 1
    assert samples[("eventhost_plugin_events_delivered", (("plugin", "printer"),))] == 5
    assert samples[("eventhost_plugin_lag_events", (("plugin", "printer"),))] == 0
    assert samples[("eventhost_plugin_restarts", (("plugin", "printer"),))] == 0
    assert samples[("eventhost_block_commit_seconds_count", ())] == 4
    # What the dashboards read (docs/operations.md, "Dashboard").
    assert samples[("eventhost_head_height", ())] == 4
    assert samples[("eventhost_block_transactions_total", (("type", "BLOCK_VALID"),))] == 4
    assert samples[("eventhost_block_transactions_total", (("type", "BLOCK_INVALID"),))] == 1
    assert samples[("eventhost_plugin_state", (("plugin", "printer"), ("state", "running")))] == 1
    assert samples[("eventhost_plugin_state", (("plugin", "printer"), ("state", "failed")))] == 0
    assert samples[("eventhost_plugin_dead_letters_total", (("plugin", "printer"),))] == 0
    assert samples[("eventhost_ready", ())] == 1
    posted = samples[
        ("eventhost_http_requests_total", (("method", "POST"), ("route", "/api/v1/transactions"), ("status", "202")))
    ]
    assert posted == 5
