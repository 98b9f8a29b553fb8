"""Seed 002's backend as it runs in production, through python-socketio's Redis adapter: an
AsyncRedisManager, write-only, emitting as the seed's app/realtime/emitters.py helpers do
(to f"tenant:{tenant_id}" in "/provisioning", "/billing" and "/", to f"user:{user_id}"),
against two roomcast nodes serving examples/seeds/seed-002.toml with the [cluster] block that
file documents uncommented. The clients connect as the seed's clients do: one as its client
examples (Engine.IO path /socket.io/, namespaces "/ws", "/ws/provisioning", "/ws/billing"), on
node a over WebSocket; one as its Endpoint line (path /ws/socket.io/, namespaces "/",
"/provisioning", "/billing"), on node b over polling.

"Never" is checked without waiting for time to pass, as in test_emitters.py: every emit is
awaited, each node reads the channel in order, and a barrier emitted last to each tenant's
room comes after everything before it.

Needs the Redis at 127.0.0.1:6379; without it the test is skipped, or fails under CI=true.
Keys and channels are under a prefix of this run only, removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets

import pytest
import socketio

from conftest import REPO_ROOT, redis_or_skip, two_nodes
from test_emitters import metric
from test_python_client import WAIT_S, Inbox, close, unique

REDIS_URL = "redis://127.0.0.1:6379/0"
# The seed's manager URL names database 1; Pub/Sub knows no database, so it meets the nodes.
MANAGER_URL = "redis://127.0.0.1:6379/1"
PREFIX = f"rc-seed002-py-{os.getpid()}-{secrets.token_hex(4)}"
CHANNEL = f"{PREFIX}-socketio"
SEED = REPO_ROOT / "examples/seeds/seed-002.toml"

NO_TENANT = 'roomcast_emitter_dropped_total{reason="no_tenant"}'


def substitute(text: str, old: str, new: str) -> str:
    """`text` with its one `old` replaced, failing when the seed file no longer has it."""
    assert text.count(old) == 1, f"{SEED.name} does not hold {old!r} once"
    return text.replace(old, new)


def seed_config() -> str:
    """The seed's file as a node of the test runs it: its commented [cluster] block taken as
    documented, with this run's key prefix and channel; the address, secret and API key of the
    test."""
    text = SEED.read_text()
    block = re.search(r"^# \[cluster\]\n(?:#.*\n)*?# tenant_from_room = .*\n", text, re.M)
    assert block, f"{SEED.name} documents no [cluster] block"
    cluster = "".join(line[2:] + "\n" for line in block.group(0).splitlines() if line != "#")
    redis = f'redis = "{REDIS_URL}"'
    cluster = substitute(cluster, redis, f'{redis}\nprefix = "{PREFIX}"')
    cluster = substitute(cluster, 'channel = "socketio"', f'channel = "{CHANNEL}"')
    text = substitute(text, 'listen = "0.0.0.0:8000"', 'listen = "127.0.0.1:0"')
    text = substitute(text, 'secret = "change-me"', 'secret = "@SECRET@"')
    return f'{text}\n{cluster}\n[api]\nkeys = ["@API_KEY@"]\n'


@pytest.fixture(scope="module")
def nodes():
    """Nodes a and b of the seed's configuration, both reading the manager's channel."""
    keys = redis_or_skip(REDIS_URL, "the seed 002 emitter test")
    config = seed_config()
    with two_nodes(keys, config, config, CHANNEL, PREFIX) as both:
        yield both


# How the seed's clients connect: the Engine.IO path, and the names of "/", "/provisioning"
# and "/billing" under it.
EXAMPLES = (
    "socket.io",
    {"/": "/ws", "/provisioning": "/ws/provisioning", "/billing": "/ws/billing"},
)
ENDPOINT = ("ws/socket.io", {"/": "/", "/provisioning": "/provisioning", "/billing": "/billing"})


class SeedClient:
    """A python-socketio client of the seed's three namespaces, in one of its two forms: what
    it receives goes to its inbox as "<namespace the backend names> <event>"."""

    def __init__(self, name: str, form):
        self.path, self.names = form
        backend = {client: ns for ns, client in self.names.items()}
        self.inbox = Inbox(name)
        self.sio = socketio.AsyncClient(reconnection=False)

        @self.sio.on("*", namespace="*")
        async def any_event(event, namespace, *args):
            self.inbox.push(f"{backend[namespace]} {event}", args)

    async def connect(self, server, token: str, transports: list[str]):
        try:
            await self.sio.connect(
                server.url,
                auth={"token": token},
                transports=transports,
                namespaces=list(self.names.values()),
                socketio_path=self.path,
                wait_timeout=WAIT_S,
            )
        except Exception:
            await close(self.sio)
            raise
        assert self.sio.transport() == transports[0]

    def got(self, namespace: str, event: str) -> int:
        return self.inbox.count(f"{namespace} {event}")


class SeedEmitters:
    """The seed's app/realtime/emitters.py over a write-only AsyncRedisManager, as its backend
    would emit outside the Socket.IO server: rooms and namespaces as the seed names them."""

    def __init__(self):
        self.mgr = socketio.AsyncRedisManager(MANAGER_URL, channel=CHANNEL, write_only=True)

    async def emit_to_user(self, user_id, event, data, namespace="/"):
        await self.mgr.emit(event, data, room=f"user:{user_id}", namespace=namespace)

    async def emit_to_tenant(self, tenant_id, event, data, namespace="/"):
        await self.mgr.emit(event, data, room=f"tenant:{tenant_id}", namespace=namespace)

    async def emit_provisioning_status(self, tenant_id, status, progress, message):
        data = {"tenant_id": tenant_id, "status": status, "progress": progress, "message": message}
        await self.emit_to_tenant(tenant_id, "status:update", data, namespace="/provisioning")

    async def emit_payment_received(self, tenant_id, amount, currency):
        data = {"amount": amount, "currency": currency}
        await self.emit_to_tenant(tenant_id, "payment:received", data, namespace="/billing")

    async def close(self):
        if self.mgr.redis is not None:
            await self.mgr.redis.aclose()


def test_the_backends_redis_emits_reach_both_forms_of_client(nodes):
    asyncio.run(_backends_redis_emits(nodes))


async def _backends_redis_emits(nodes):
    a, b = nodes
    backend = SeedEmitters()
    clients = []
    try:
        for tenant in ("acme", "globex"):
            user = unique("u")
            for node, form, transports in (
                (a, EXAMPLES, ["websocket"]),
                (b, ENDPOINT, ["polling"]),
            ):
                client = SeedClient(f"{tenant} client at {form[0]}", form)
                await client.connect(node, node.token(user, tenant, user_id=user), transports)
                clients.append((tenant, user, client))
        acme = [c for t, _, c in clients if t == "acme"]
        globex = [c for t, _, c in clients if t == "globex"]
        acme_user = next(u for t, u, _ in clients if t == "acme")
        dropped = [await asyncio.to_thread(metric, node, NO_TENANT) for node in nodes]

        await backend.emit_provisioning_status("acme", "installing", 60, "Installing apps")
        await backend.emit_payment_received("acme", 49, "EUR")
        for client in acme:
            (update,) = await client.inbox.next("/provisioning status:update")
            assert update == {
                "tenant_id": "acme",
                "status": "installing",
                "progress": 60,
                "message": "Installing apps",
            }, client.inbox.name
            (payment,) = await client.inbox.next("/billing payment:received")
            assert payment == {"amount": 49, "currency": "EUR"}, client.inbox.name

        # A user's room names no tenant: no node delivers it, each counts it dropped.
        await backend.emit_to_user(acme_user, "error", {"message": "quota exceeded"})

        barrier = unique("barrier")
        for tenant in ("acme", "globex"):
            await backend.emit_to_tenant(tenant, "barrier", barrier)
        for client in acme + globex:
            assert await client.inbox.next("/ barrier") == (barrier,), client.inbox.name
        for client in acme:
            assert client.got("/provisioning", "status:update") == 1, client.inbox.name
            assert client.got("/billing", "payment:received") == 1, client.inbox.name
            assert client.got("/", "error") == 0, client.inbox.name
        # The other tenant got nothing of acme's (its own users' presence aside).
        presence = ("/ user:online", "/ user:offline")
        for client in globex:
            seen = [e for e in client.inbox.seen if e not in presence]
            assert seen == ["/ connected", "/ barrier"], client.inbox.name
        after = [await asyncio.to_thread(metric, node, NO_TENANT) for node in nodes]
        assert after == [n + 1 for n in dropped]
    finally:
        for _, _, client in clients:
            await close(client.sio)
        await backend.close()
