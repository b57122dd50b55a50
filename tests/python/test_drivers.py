"""The Python drivers from PyPI, unchanged, against the real node."""

import pytest

# A valid CIDv0 (Planetmint 3.0 carries asset data and metadata as CIDs).
CID_ASSET = "QmQP5C3PmhH9oB84n7YqSY4WVqmYatdoo1BdwhH4zmcwqM"
CID_METADATA = "QmV36emXW8hHEuJ5vhhyFqJD3AXhBhSv5uiUnTRhSFpHic"


def spend(tx, index):
    """The driver's input dict that spends tx's output `index`."""
    output = tx["outputs"][index]
    return {
        "fulfillment": output["condition"]["details"],
        "fulfills": {"output_index": index, "transaction_id": tx["id"]},
        "owners_before": output["public_keys"],
    }


def test_bigchaindb_driver(node):
    from bigchaindb_driver import BigchainDB
    from bigchaindb_driver.crypto import generate_keypair
    from bigchaindb_driver.exceptions import BadRequest

    bdb = BigchainDB(node.url)
    alice, bob = generate_keypair(), generate_keypair()
    asset = {"data": {"bicycle": {"serial_number": "abcd1234", "manufacturer": "bkfab"}}}

    prepared = bdb.transactions.prepare(
        operation="CREATE", signers=alice.public_key, asset=asset, metadata={"planet": "earth"}
    )
    create = bdb.transactions.fulfill(prepared, private_keys=alice.private_key)
    assert bdb.transactions.send_commit(create) == create

    prepared = bdb.transactions.prepare(
        operation="TRANSFER",
        asset={"id": create["id"]},
        inputs=spend(create, 0),
        recipients=bob.public_key,
    )
    transfer = bdb.transactions.fulfill(prepared, private_keys=alice.private_key)
    assert bdb.transactions.send_commit(transfer) == transfer

    assert bdb.transactions.retrieve(create["id"]) == create
    assert bdb.transactions.get(asset_id=create["id"]) == [create, transfer]
    assert bdb.transactions.get(asset_id=create["id"], operation="TRANSFER") == [transfer]
    assert bdb.outputs.get(bob.public_key, spent=False) == [
        {"transaction_id": transfer["id"], "output_index": 0}
    ]
    assert bdb.outputs.get(alice.public_key, spent=True) == [
        {"transaction_id": create["id"], "output_index": 0}
    ]
    assert bdb.outputs.get(alice.public_key, spent=False) == []
    height = bdb.blocks.get(txid=transfer["id"])
    assert bdb.blocks.retrieve(str(height)) == {"height": height, "transactions": [transfer]}
    assert bdb.assets.get(search="bkfab") == [{"data": asset["data"], "id": create["id"]}]
    assert bdb.metadata.get(search="earth") == [{"id": create["id"], "metadata": {"planet": "earth"}}]
    info = bdb.api_info()
    assert info["transactions"] == "/transactions/"

    prepared = bdb.transactions.prepare(
        operation="TRANSFER",
        asset={"id": create["id"]},
        inputs=spend(create, 0),
        recipients=alice.public_key,
        metadata={"again": True},
    )
    double = bdb.transactions.fulfill(prepared, private_keys=alice.private_key)
    with pytest.raises(BadRequest) as rejected:
        bdb.transactions.send_commit(double)
    assert rejected.value.status_code == 400
    assert "DoubleSpend" in rejected.value.info["message"]

    events = node.events(2)
    assert [(e["type"], e["transactions"]) for e in events] == [
        ("BLOCK_VALID", [create]),
        ("BLOCK_VALID", [transfer]),
    ]


def test_planetmint_driver(node):
    from planetmint_driver import Planetmint
    from planetmint_driver.crypto import generate_keypair
    from planetmint_driver.exceptions import BadRequest

    pm = Planetmint(node.url)
    alice, bob = generate_keypair(), generate_keypair()

    prepared = pm.transactions.prepare(
        operation="CREATE",
        signers=alice.public_key,
        assets=[{"data": CID_ASSET}],
        metadata=CID_METADATA,
    )
    create = pm.transactions.fulfill(prepared, private_keys=alice.private_key)
    assert create["version"] == "3.0"
    assert pm.transactions.send_commit(create) == create

    prepared = pm.transactions.prepare(
        operation="TRANSFER",
        assets=[create["id"]],
        inputs=spend(create, 0),
        recipients=bob.public_key,
    )
    transfer = pm.transactions.fulfill(prepared, private_keys=alice.private_key)
    assert pm.transactions.send_commit(transfer) == transfer

    assert pm.transactions.retrieve(transfer["id"]) == transfer
    assert pm.transactions.get(asset_ids=[create["id"]]) == [create, transfer]
    assert pm.outputs.get(bob.public_key, spent=False) == [
        {"transaction_id": transfer["id"], "output_index": 0}
    ]
    assert pm.outputs.get(alice.public_key, spent=True) == [
        {"transaction_id": create["id"], "output_index": 0}
    ]
    assert pm.blocks.get(txid=create["id"]) in (1, [1])
    assert pm.assets.get(cid=CID_ASSET) == [{"data": CID_ASSET}]
    assert pm.metadata.get(search=CID_METADATA) == [{"id": create["id"], "metadata": CID_METADATA}]
    assert pm.blocks.retrieve("2")["transactions"] == [transfer]

    prepared = pm.transactions.prepare(
        operation="TRANSFER",
        assets=[create["id"]],
        inputs=spend(create, 0),
        recipients=alice.public_key,
    )
    double = pm.transactions.fulfill(prepared, private_keys=alice.private_key)
    with pytest.raises(BadRequest) as rejected:
        pm.transactions.send_commit(double)
    assert "DoubleSpend" in rejected.value.info["message"]

    events = node.events(2)
    assert [e["transactions"] for e in events] == [[create], [transfer]]
