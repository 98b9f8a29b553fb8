"""python-socketio's AsyncClient against the real roomcast binary: connect with the JWT in
`auth`, the configured greeting, an emit with a callback answered by a route's ack, an API
publish, binary relayed between two clients, and a clean disconnect; over WebSocket,
polling, and the default polling start upgraded to WebSocket."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict

import pytest
import socketio

WAIT_S = 10

TRANSPORTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "upgrade": None,  # python-socketio's default: polling first, then the upgrade
}


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


class Inbox:
    """What a client received, per event name, in order; `next` waits for the next one not
    yet taken, whether it came before or after the call."""

    def __init__(self, name: str):
        self.name = name
        self.queues: dict[str, asyncio.Queue] = defaultdict(asyncio.Queue)
        self.seen: list[str] = []

    def push(self, event: str, args: tuple):
        self.seen.append(event)
        self.queues[event].put_nowait(args)

    async def next(self, event: str) -> tuple:
        try:
            return await asyncio.wait_for(self.queues[event].get(), WAIT_S)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"{self.name}: no {event!r} within {WAIT_S} s; received so far: {self.seen}"
            ) from None

    def count(self, event: str) -> int:
        return self.seen.count(event)


def client(name: str) -> tuple[socketio.AsyncClient, Inbox]:
    sio = socketio.AsyncClient(reconnection=False)
    inbox = Inbox(name)

    @sio.on("*")
    async def any_event(event, *args):
        inbox.push(event, args)

    @sio.event
    async def connect():
        inbox.push("connect", ())

    @sio.event
    async def connect_error(data):
        inbox.push("connect_error", (data,))

    @sio.event
    async def disconnect(*reason):
        inbox.push("disconnect", reason)

    return sio, inbox


async def connect(server, sio, token, transports):
    try:
        await sio.connect(
            server.url,
            auth={"token": token},
            transports=transports,
            socketio_path="socket.io",
            wait_timeout=WAIT_S,
        )
    except Exception:
        await close(sio)
        raise


async def close(sio):
    """Disconnects, and closes the HTTP session a failed connect can leave open."""
    await sio.disconnect()
    http = getattr(sio.eio, "http", None)
    if http is not None and not http.closed:
        await http.close()


async def api(server, method, route, body=None):
    return await asyncio.to_thread(server.api, method, route, body)


async def publish(server, body):
    return await asyncio.to_thread(server.publish, body)


async def user_status(server, user):
    status, body = await api(server, "GET", f"/api/users/{user}/status?tenant=acme")
    assert status == 200, body
    return body


@pytest.mark.parametrize("mode", TRANSPORTS)
def test_connect_greet_ack_publish_disconnect(server, mode):
    asyncio.run(_connect_greet_ack_publish_disconnect(server, TRANSPORTS[mode], mode))


async def _connect_greet_ack_publish_disconnect(server, transports, mode):
    user = unique("py")
    sio, inbox = client("python client")
    await connect(server, sio, server.token(user, "acme"), transports)
    try:
        assert sio.connected
        sid = sio.get_sid("/")
        assert sid
        expected_transport = "polling" if mode == "polling" else "websocket"
        assert sio.transport() == expected_transport

        (greeting,) = await inbox.next("connected")
        assert greeting == {"user_id": user, "tenant_id": "acme", "socketId": sid}

        # An emit with a callback: the reply route's data answers the ack.
        acked = asyncio.get_running_loop().create_future()
        await sio.emit("ping", callback=lambda *args: acked.set_result(args))
        (answer,) = await asyncio.wait_for(acked, WAIT_S)
        assert isinstance(answer["timestamp"], str) and answer["timestamp"].endswith("Z")
        assert inbox.count("pong") == 0, "the ack answered instead of the event"
        # The same with call(): a join route's ack, then the room is joined.
        room_id = unique("room")
        joined = await sio.call("join_room", {"roomId": room_id}, timeout=WAIT_S)
        assert joined == {"roomId": room_id, "room": f"custom:{room_id}"}

        # An API publish to the user's room, and one to the joined room.
        data = {"order_id": 42, "status": "shipped", "mode": mode}
        answer = await publish(
            server,
            {
                "tenant": "acme",
                "rooms": [f"user:{user}"],
                "namespace": "/",
                "event": "order:status_updated",
                "data": data,
            },
        )
        assert answer["delivered"] == 1
        assert await inbox.next("order:status_updated") == (data,)
        answer = await publish(
            server,
            {
                "tenant": "acme",
                "rooms": [f"custom:{room_id}"],
                "event": "room:update",
                "data": {"room": room_id},
            },
        )
        assert answer["delivered"] == 1
        assert await inbox.next("room:update") == ({"room": room_id},)

        status = await user_status(server, user)
        assert status["online"] is True and status["connections"] == 1, status
    finally:
        await close(sio)

    assert not sio.connected
    await inbox.next("disconnect")
    # The server sees the client leave: the user goes offline.
    for _ in range(200):
        status = await user_status(server, user)
        if not status["online"]:
            break
        await asyncio.sleep(0.05)
    assert status["online"] is False, status


def test_refused_token_gets_connect_error(server):
    asyncio.run(_refused_token(server))


async def _refused_token(server):
    sio, inbox = client("refused client")
    forged = server.token("py", "acme")[:-4] + "AAAA"
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(server, sio, forged, ["websocket"])
    (data,) = await inbox.next("connect_error")
    assert isinstance(data, dict) and data.get("message"), data
    assert inbox.count("connect") == 0
    assert inbox.count("connected") == 0
    await close(sio)


@pytest.mark.parametrize("mode", ["websocket", "polling"])
def test_binary_relay_between_python_clients(server, mode):
    asyncio.run(_binary_relay(server, TRANSPORTS[mode]))


async def _binary_relay(server, transports):
    room_id = unique("bin")
    sender, sender_inbox = client("sender")
    receiver, receiver_inbox = client("receiver")
    await connect(server, sender, server.token(unique("s"), "acme"), transports)
    try:
        await connect(server, receiver, server.token(unique("r"), "acme"), transports)
        for c in (sender, receiver):
            await c.call("join_room", {"roomId": room_id}, timeout=WAIT_S)
        blob = bytes(range(256))
        # The relay acks with no arguments once handed over; the sender is left out.
        assert await sender.call("typing", {"roomId": room_id, "blob": blob}, timeout=WAIT_S) is None
        (got,) = await receiver_inbox.next("typing")
        assert got == {"roomId": room_id, "blob": blob}
        assert sender_inbox.count("typing") == 0
    finally:
        await close(sender)
        await close(receiver)
