"""The WebSocket event streams from a Python client (the `websockets`
package), the way BigchainDB's acceptance test uses them: connect to
valid_transactions, commit 10 CREATEs, expect each one on the stream."""

import asyncio
import hashlib
import json

import pytest
import websockets

from conftest import HANG_GUARD

PLUGIN = """
[[plugins]]
name = "websocket"
[plugins.config]
bind = "127.0.0.1:0"
"""

OWNER = "4K9sWUMFwTgaDGPfdynrbxWqWS6sWmKbZoTjxLtVUibD"


def stream_address(host) -> str:
    """The address the plugin listens on, from its log line."""
    line = host.wait_for_log("listening on ")
    return line.split("listening on ")[1].split(";")[0]


def create(serial: int) -> dict:
    """A BigchainDB 2.0 CREATE (its id is not the real hash; nothing on the event path checks it)."""
    return {
        "asset": {"data": {"serial": serial}},
        "id": hashlib.sha3_256(f"create {serial}".encode()).hexdigest(),
        "inputs": [
            {
                "fulfillment": "pGSAIDE5i63cn4X8T8N1sZ2mGkJD5lNRnBM4PZgI",
                "fulfills": None,
                "owners_before": [OWNER],
            }
        ],
        "metadata": None,
        "operation": "CREATE",
        "outputs": [
            {
                "amount": "1",
                "condition": {
                    "details": {"public_key": OWNER, "type": "ed25519-sha-256"},
                    "uri": "ni:///sha-256;PNYwdxaRaNw60N6LDFzOWO97b8tJeragczakL8PrAPc"
                    "?fpt=ed25519-sha-256&cost=131072",
                },
                "public_keys": [OWNER],
            }
        ],
        "version": "2.0",
    }


def block(height: int, transactions: list) -> str:
    return json.dumps({
        "type": "BLOCK_VALID",
        "height": height,
        "hash": hashlib.sha3_256(f"block {height}".encode()).hexdigest(),
        "transactions": transactions,
    })


def test_each_committed_create_appears_on_valid_transactions(eventhost):
    host = eventhost(PLUGIN)
    url = f"ws://{stream_address(host)}/api/v1/streams/valid_transactions"

    async def scenario():
        async with websockets.connect(url) as stream:
            for height in range(1, 11):
                tx = create(height)
                host.feed(block(height, [tx]))
                message = json.loads(await asyncio.wait_for(stream.recv(), HANG_GUARD))
                assert message == {
                    "height": height,
                    "asset_id": tx["id"],
                    "asset_ids": [tx["id"]],
                    "transaction_id": tx["id"],
                }

    asyncio.run(scenario())
    assert host.stop() == 0


def test_an_unknown_stream_is_refused_at_the_upgrade(eventhost):
    host = eventhost(PLUGIN)
    url = f"ws://{stream_address(host)}/api/v1/streams/everything"

    async def scenario():
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url, open_timeout=HANG_GUARD)
        response = refused.value.response
        assert response.status_code == 404
        assert response.body.decode().startswith("no stream at /api/v1/streams/everything;")

    asyncio.run(scenario())
