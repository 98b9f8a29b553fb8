"""python-socketio's AsyncRedisManager, write-only as a backend emits with it, against a
cluster of two roomcast nodes sharing the Redis at 127.0.0.1:6379. Both nodes read the
manager's channel, taking each message's tenant from a `tenant:{tenant}` room, and deliver to
their own connections: a python-socketio client and a native client on each node get an
emitted event once, and a client of another tenant never.

"Never" and "once" are checked without waiting for time to pass: every publish below is
awaited, so Redis has taken it before the next, and each node reads the channel through one
connection, in order. After an event, a barrier event emitted later to the same clients comes
after it on every node; once a client has the barrier, anything it was going to get from
before is there.

Needs the Redis at 127.0.0.1:6379; without it the tests are skipped, or fail under CI=true.
Keys and channels are under a prefix of this run only, removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import secrets
import urllib.request

import aiohttp
import pytest
import redis.asyncio
import socketio

from conftest import redis_or_skip, suite_config, two_nodes
from test_python_client import WAIT_S, Inbox, client, close, connect, unique

REDIS_URL = "redis://127.0.0.1:6379/0"
# Every key and channel of this run starts with it.
PREFIX = f"rc-emitters-py-{os.getpid()}-{secrets.token_hex(4)}"
CHANNEL = f"{PREFIX}-socketio"

HANDLED = "roomcast_emitter_handled_total"
PICKLED = 'roomcast_emitter_dropped_total{reason="pickled"}'


def cluster_config(node: str) -> str:
    """The suite's configuration with the cluster section of node `node`."""
    return f"""{suite_config()}
[cluster]
redis = "{REDIS_URL}"
node_id = "{node}"
prefix = "{PREFIX}"

[[cluster.emitters]]
kind = "python-socketio"
channel = "{CHANNEL}"
tenant_from_room = "tenant:{{tenant}}"
"""


@pytest.fixture(scope="module")
def cluster():
    """Nodes a and b, both counted among the emitter channel's subscribers."""
    keys = redis_or_skip(REDIS_URL, "the emitter tests")
    with two_nodes(keys, cluster_config("a"), cluster_config("b"), CHANNEL, PREFIX) as both:
        yield both


class Native:
    """A native client (GET /ws?token=...) over aiohttp: its `event` messages go to its inbox
    under their event name, the others under their type, and the end as `close`."""

    def __init__(self, name: str):
        self.name = name
        self.inbox = Inbox(name)
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task | None = None

    async def open(self, server, token: str):
        self.session = aiohttp.ClientSession()
        self.ws = await asyncio.wait_for(
            self.session.ws_connect(f"ws://{server.addr}/ws", params={"token": token}), WAIT_S
        )
        self.reader = asyncio.create_task(self._read())
        await self.inbox.next("welcome")

    async def _read(self):
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                self.inbox.push(data["event"] if data["type"] == "event" else data["type"], (data,))
        self.inbox.push("close", (self.ws.close_code,))

    async def close(self):
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await self.reader
        if self.session is not None:
            await self.session.close()


@contextlib.asynccontextmanager
async def clients_of(cluster, tenant: str):
    """A python-socketio client (WebSocket on node a, polling on node b) and a native client
    on each node, of `tenant`; all closed on the way out. Yields (kind, inbox) pairs."""
    opened: list = []
    try:
        for name, node, transports in zip("ab", cluster, (["websocket"], ["polling"])):
            sio, inbox = client(f"{tenant} python-socketio client on node {name}")
            await connect(node, sio, node.token(unique("py"), tenant), transports)
            opened.append(("sio", sio, inbox))
            await inbox.next("connected")
            # What a python-socketio server would pass as `skip_sid`.
            inbox.sid = sio.get_sid("/")
            native = Native(f"{tenant} native client on node {name}")
            opened.append(("native", native, native.inbox))
            await native.open(node, node.token(unique("n"), tenant))
        yield [(kind, inbox) for kind, _, inbox in opened]
    finally:
        for kind, c, _ in opened:
            await (close(c) if kind == "sio" else c.close())


def manager() -> socketio.AsyncRedisManager:
    """The emitter a backend process uses, write-only."""
    return socketio.AsyncRedisManager(REDIS_URL, channel=CHANNEL, write_only=True)


async def close_manager(mgr: socketio.AsyncRedisManager):
    if mgr.redis is not None:
        await mgr.redis.aclose()


async def barrier(mgr, tenants: list[str], clients) -> int:
    """Emits `barrier` to each tenant's room and waits for it on every client; returns how
    many were emitted. Whatever was published before it has reached these clients by then."""
    bid = unique("barrier")
    for tenant in tenants:
        await mgr.emit("barrier", bid, room=f"tenant:{tenant}")
    for kind, inbox in clients:
        (got,) = await inbox.next("barrier")
        assert (got["data"] if kind == "native" else got) == bid, inbox.name
    return len(tenants)


async def expect(kind: str, inbox: Inbox, event: str, sio_args: tuple, native_data, room: str):
    """Waits for `event`: a python-socketio client gets `sio_args`, a native client `data`
    `native_data` from `room`."""
    got = await inbox.next(event)
    if kind == "sio":
        assert got == sio_args, inbox.name
    else:
        (msg,) = got
        assert msg["room"] == room, inbox.name
        assert msg["data"] == native_data, inbox.name


def metric(server, name: str) -> float:
    """A counter of a node's /metrics, 0 when absent."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as res:
        for line in res.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.rsplit(" ", 1)[1])
    return 0


async def metrics(cluster, name: str) -> list[float]:
    return [await asyncio.to_thread(metric, node, name) for node in cluster]


def test_emit_reaches_every_client_once(cluster):
    asyncio.run(_emit_reaches_every_client_once(cluster))


async def _emit_reaches_every_client_once(cluster):
    mgr = manager()
    try:
        async with clients_of(cluster, "acme") as acme, clients_of(cluster, "globex") as globex:
            await mgr.emit("ev", {"x": 1}, room="tenant:acme", namespace="/")
            for kind, inbox in acme:
                await expect(kind, inbox, "ev", ({"x": 1},), {"x": 1}, "tenant:acme")
            await barrier(mgr, ["acme", "globex"], acme + globex)
            for _, inbox in acme:
                assert inbox.count("ev") == 1, inbox.name
            for _, inbox in globex:
                assert inbox.count("ev") == 0, inbox.name
    finally:
        await close_manager(mgr)


def test_skip_sid_is_accepted(cluster):
    asyncio.run(_skip_sid_is_accepted(cluster))


async def _skip_sid_is_accepted(cluster):
    mgr = manager()
    try:
        async with clients_of(cluster, "acme") as acme:
            handled = await metrics(cluster, HANDLED)
            # A session id of a python-socketio server, which no Roomcast connection has: the
            # message is delivered, not dropped.
            await mgr.emit("ev", {"x": 2}, room="tenant:acme", skip_sid=unique("sid"))
            for kind, inbox in acme:
                await expect(kind, inbox, "ev", ({"x": 2},), {"x": 2}, "tenant:acme")
            barriers = await barrier(mgr, ["acme"], acme)
            for _, inbox in acme:
                assert inbox.count("ev") == 1, inbox.name
            assert await metrics(cluster, HANDLED) == [n + 1 + barriers for n in handled]
    finally:
        await close_manager(mgr)


def test_a_skip_sid_list_leaves_out_each_session(cluster):
    asyncio.run(_skip_sid_list(cluster))


async def _skip_sid_list(cluster):
    mgr = manager()
    try:
        async with clients_of(cluster, "acme") as acme:
            sids = [inbox.sid for kind, inbox in acme if kind == "sio"]
            assert len(sids) == 2 and all(sids), sids
            # One session on each node: each node leaves out its own.
            await mgr.emit("ev", {"x": 3}, room="tenant:acme", skip_sid=sids)
            await barrier(mgr, ["acme"], acme)
            for kind, inbox in acme:
                assert inbox.count("ev") == (0 if kind == "sio" else 1), inbox.name
    finally:
        await close_manager(mgr)


def test_bytes_arrive_as_bytes_and_as_base64(cluster):
    asyncio.run(_bytes(cluster))


async def _bytes(cluster):
    mgr = manager()
    try:
        async with clients_of(cluster, "acme") as acme:
            await mgr.emit("bin", b"\x00\x01\xff", room="tenant:acme")
            await mgr.emit("file", {"name": "a.bin", "blob": b"hi"}, room="tenant:acme")
            for kind, inbox in acme:
                await expect(kind, inbox, "bin", (b"\x00\x01\xff",), "AAH/", "tenant:acme")
                await expect(
                    kind,
                    inbox,
                    "file",
                    ({"name": "a.bin", "blob": b"hi"},),
                    {"name": "a.bin", "blob": "aGk="},
                    "tenant:acme",
                )
    finally:
        await close_manager(mgr)


def test_pickled_message_is_dropped_and_counted(cluster):
    asyncio.run(_pickled(cluster))


async def _pickled(cluster):
    mgr = manager()
    raw = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        async with clients_of(cluster, "acme") as acme:
            pickled, handled = await metrics(cluster, PICKLED), await metrics(cluster, HANDLED)
            # What python-socketio before 5.14 published: a pickle, never to be loaded.
            message = {
                "method": "emit",
                "event": "ev",
                "data": {"x": 3},
                "namespace": "/",
                "room": "tenant:acme",
                "skip_sid": None,
                "callback": None,
            }
            payload = pickle.dumps(message, protocol=4)
            assert payload.startswith(b"\x80\x04")
            assert await raw.publish(CHANNEL, payload) == 2, "both nodes read the channel"

            barriers = await barrier(mgr, ["acme"], acme)
            for _, inbox in acme:
                unexpected = set(inbox.seen) - {"connect", "connected", "welcome", "barrier"}
                assert not unexpected, f"{inbox.name} got {unexpected}"
            assert await metrics(cluster, PICKLED) == [n + 1 for n in pickled]
            assert await metrics(cluster, HANDLED) == [n + barriers for n in handled]
    finally:
        await raw.aclose()
        await close_manager(mgr)
