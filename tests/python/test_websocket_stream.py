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


def test_wss_with_the_readmes_self_signed_certificate(eventhost, tmp_path):
    """The README's openssl command makes the certificate; a client
    trusting it gets the stream over wss://, a ws:// client gets none."""
    import shutil
    import ssl
    import subprocess

    from conftest import REPO

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "365", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-keyout", "key.pem", "-out", "cert.pem",
        ],
        cwd=tmp_path, check=True, capture_output=True,
    )
    host = eventhost(PLUGIN + 'tls_cert = "cert.pem"\ntls_key = "key.pem"\n', args=("replay", "-"))
    line = host.wait_for_log("plugin advertises streams = ")
    url = line.split("plugin advertises streams = ", 1)[1].split()[0]
    assert url.startswith("wss://localhost:") and url.endswith("/api/v1/streams/valid_transactions")
    trusting = ssl.create_default_context(cafile=tmp_path / "cert.pem")
    first_block = (REPO / "tests/fixtures/stream_blocks.jsonl").read_text().splitlines()[0]

    async def scenario():
        with pytest.raises(websockets.InvalidMessage):
            await websockets.connect("ws://" + url.removeprefix("wss://"), open_timeout=HANG_GUARD)
        async with websockets.connect(url, ssl=trusting, open_timeout=HANG_GUARD) as stream:
            host.feed(first_block)
            message = json.loads(await asyncio.wait_for(stream.recv(), HANG_GUARD))
            assert message["transaction_id"] == json.loads(first_block)["transactions"][0]["id"]

    asyncio.run(scenario())
    assert host.stop() == 0
