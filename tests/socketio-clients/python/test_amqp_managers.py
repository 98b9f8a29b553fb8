"""python-socketio's AMQP managers, write-only as a backend emits with them
(`AsyncAioPikaManager` and `KombuManager`), against two roomcast nodes reading the managers'
fanout exchange through the `python-socketio` ingest preset, on the RabbitMQ at
127.0.0.1:5672. Each node reads every message into a queue of its own, as python-socketio's
servers do, takes its tenant from a `tenant:{tenant}` room and delivers to its own clients: a
client on each node gets an emitted event once, a client of another tenant never.

As in test_emitters.py, "once" and "never" are read after a barrier event emitted later
through the same exchange: each node reads its queue in order.

Needs the RabbitMQ at 127.0.0.1:5672 (guest/guest); without it the tests are skipped, or fail
under CI=true. The exchange is named for this run and deleted at the end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time

import aio_pika
import pytest
import socketio

from conftest import start_roomcast, suite_config
from test_python_client import WAIT_S, client, close, connect, unique

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
EXCHANGE = f"rc-amqp-py-{os.getpid()}-{secrets.token_hex(4)}"


def node_config() -> str:
    return f"""{suite_config()}
[[ingest.amqp]]
name = "python-managers"
url = "amqp://guest:guest@127.0.0.1:5672/%2f"
preset = "python-socketio"
exchange = {{ name = "{EXCHANGE}" }}
tenant_from_room = "tenant:{{tenant}}"
"""


def _rabbitmq_or_skip():
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError as err:
        message = f"the RabbitMQ at 127.0.0.1:5672 is absent ({err})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: an absent service is a failure)")
        pytest.skip(f"{message}: skipping the AMQP manager tests")


def _consuming(node) -> bool:
    status, health = node.api("GET", "/health")
    return status == 200 and all(s["state"] == "up" for s in health.get("ingest", [{}]))


async def _delete_exchange():
    connection = await aio_pika.connect(AMQP_URL, timeout=WAIT_S)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(EXCHANGE)


@pytest.fixture(scope="module")
def nodes():
    _rabbitmq_or_skip()
    try:
        with start_roomcast(node_config(), name="roomcast-a") as a:
            with start_roomcast(
                node_config(), secret=a.secret, api_key=a.api_key, name="roomcast-b"
            ) as b:
                deadline = time.monotonic() + WAIT_S
                while not (_consuming(a) and _consuming(b)):
                    assert time.monotonic() < deadline, "the nodes never consumed the exchange"
                    time.sleep(0.05)
                yield [a, b]
    finally:
        asyncio.run(_delete_exchange())


async def _clients(nodes, tenant: str):
    opened = []
    for name, node in zip("ab", nodes):
        sio, inbox = client(f"{tenant} client on node {name}")
        await connect(node, sio, node.token(unique("py"), tenant), ["websocket"])
        await inbox.next("connected")
        opened.append((sio, inbox))
    return opened


async def _once_each(nodes, emit):
    """Emits `ev` to acme's room and a barrier to both tenants through `emit`; acme's clients
    on both nodes get `ev` once, globex's never."""
    acme = await _clients(nodes, "acme")
    globex = await _clients(nodes, "globex")
    try:
        await emit("ev", {"x": 1}, "tenant:acme")
        for _, inbox in acme:
            assert await inbox.next("ev") == ({"x": 1},), inbox.name
        bid = unique("barrier")
        await emit("barrier", bid, "tenant:acme")
        await emit("barrier", bid, "tenant:globex")
        for _, inbox in acme + globex:
            assert await inbox.next("barrier") == (bid,), inbox.name
        for _, inbox in acme:
            assert inbox.count("ev") == 1, inbox.name
        for _, inbox in globex:
            assert inbox.count("ev") == 0, inbox.name
    finally:
        for sio, _ in acme + globex:
            await close(sio)


def test_async_aio_pika_manager_reaches_clients_on_both_nodes(nodes):
    async def run():
        mgr = socketio.AsyncAioPikaManager(AMQP_URL, channel=EXCHANGE, write_only=True)

        async def emit(event, data, room):
            await mgr.emit(event, data, room=room, namespace="/")

        try:
            await _once_each(nodes, emit)
        finally:
            if mgr.publisher_connection is not None:
                await mgr.publisher_connection.close()

    asyncio.run(run())


def test_kombu_manager_reaches_clients_on_both_nodes(nodes):
    async def run():
        mgr = socketio.KombuManager(AMQP_URL, channel=EXCHANGE, write_only=True)

        async def emit(event, data, room):
            # KombuManager is synchronous: it publishes before returning.
            await asyncio.to_thread(mgr.emit, event, data, room=room, namespace="/")

        await _once_each(nodes, emit)

    asyncio.run(run())
