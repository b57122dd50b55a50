"""The WebSocket event streams from a Python client (the `websockets`
package), as BigchainDB's acceptance test uses them: connect to
valid_transactions, send 10 CREATEs with the driver's send_async, and
expect each id on the stream within 5 s."""

import asyncio
import json
import urllib.request

import pytest
import websockets

from conftest import HANG_GUARD

PLUGIN = """
[[plugins]]
name = "websocket"
[plugins.config]
bind = "127.0.0.1:0"
"""


def advertised_streams(host) -> dict:
    """The stream URLs the API root advertises, as a client discovers them."""
    with urllib.request.urlopen(f"{host.url}/api/v1/") as response:
        v1 = json.load(response)
    return {"streams": v1["streams"], "streams_v1": v1["_links"]["streams_v1"]}


def test_each_create_sent_async_appears_on_valid_transactions(eventhost):
    from bigchaindb_driver import BigchainDB
    from bigchaindb_driver.crypto import generate_keypair

    host = eventhost(PLUGIN)
    streams = advertised_streams(host)
    assert streams["streams"].endswith("/api/v1/streams/valid_transactions")
    assert streams["streams_v1"].endswith("/api/v1/streams/valid_tx")
    bdb = BigchainDB(host.url)
    alice = generate_keypair()

    async def scenario():
        async with websockets.connect(streams["streams"]) as stream:
            sent = []
            for i in range(10):
                prepared = bdb.transactions.prepare(
                    operation="CREATE", signers=alice.public_key, asset={"data": {"i": i}}
                )
                tx = bdb.transactions.fulfill(prepared, private_keys=alice.private_key)
                bdb.transactions.send_async(tx)
                sent.append(tx["id"])
            seen = []
            for _ in sent:
                message = json.loads(await asyncio.wait_for(stream.recv(), 5))
                assert set(message) == {"transaction_id", "asset_id", "asset_ids", "height"}
                assert isinstance(message["height"], int)
                assert message["asset_id"] == message["transaction_id"]
                assert message["asset_ids"] == [message["transaction_id"]]
                seen.append(message["transaction_id"])
            assert seen == sent

    asyncio.run(scenario())
    assert host.stop() == 0


def test_an_unknown_stream_is_refused_at_the_upgrade(eventhost):
    host = eventhost(PLUGIN)
    base = advertised_streams(host)["streams"].rsplit("/", 1)[0]

    async def scenario():
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{base}/everything", open_timeout=HANG_GUARD)
        response = refused.value.response
        assert response.status_code == 404
        assert response.body.decode().startswith("no stream at /api/v1/streams/everything;")

    asyncio.run(scenario())
