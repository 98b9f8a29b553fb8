// The npm socket.io-client against the Socket.IO fixture (`sio-fixture`), over each way it
// connects: polling then upgrade (its default), WebSocket only, polling only; with several
// namespaces on one connection, acks and binary data. SIO_URL is the fixture's base URL.

import assert from "node:assert/strict";
import { once } from "node:events";
import { after, describe, it } from "node:test";

import { io, Manager } from "socket.io-client";

import { WAIT_MS } from "./harness.js";

const base = process.env.SIO_URL ?? "http://localhost:3000";
const opened = [];

function client(options, ns = "/") {
  const socket = io(`${base}${ns === "/" ? "" : ns}`, {
    reconnection: false,
    timeout: WAIT_MS,
    ...options,
  });
  opened.push(socket);
  return socket;
}

/** Resolves with the arguments of the next `event`, or rejects after `WAIT_MS`. */
function next(emitter, event) {
  return once(emitter, event, { signal: AbortSignal.timeout(WAIT_MS) });
}

/** Emits with an ack; resolves with the ack's arguments. */
function ask(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(WAIT_MS).emit(event, ...args, (err, ...answer) =>
      err ? reject(err) : resolve(answer),
    );
  });
}

async function roundTrips(socket) {
  const [back] = await Promise.all([
    next(socket, "message-back"),
    socket.emit("message", 1, "2", { 3: [true] }),
  ]);
  assert.deepEqual(back, [1, "2", { 3: [true] }]);
  assert.deepEqual(await ask(socket, "message-with-ack", "a", { b: null }), ["a", { b: null }]);
  const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
  const [binary] = await Promise.all([
    next(socket, "message-back"),
    socket.emit("message", { data: bytes, list: [bytes, "x"] }),
  ]);
  assert.deepEqual(binary, [{ data: bytes, list: [bytes, "x"] }]);
  assert.deepEqual(await ask(socket, "message-with-ack", bytes), [bytes]);
}

after(() => {
  for (const socket of opened) {
    socket.disconnect();
  }
});

describe("socket.io-client", () => {
  it("connects over polling, upgrades to WebSocket, and exchanges events", async () => {
    const socket = client({ auth: { token: "jwt" } });
    const [auth] = await next(socket, "auth");
    assert.deepEqual(auth, { token: "jwt" });
    if (socket.io.engine.transport.name !== "websocket") {
      await next(socket.io.engine, "upgrade");
    }
    assert.equal(socket.io.engine.transport.name, "websocket");
    await roundTrips(socket);
  });

  it("connects over WebSocket only", async () => {
    const socket = client({ transports: ["websocket"] });
    assert.deepEqual(await next(socket, "auth"), [{}]);
    await roundTrips(socket);
  });

  it("connects over polling only", async () => {
    const socket = client({ transports: ["polling"], upgrade: false });
    assert.deepEqual(await next(socket, "auth"), [{}]);
    await roundTrips(socket);
    assert.equal(socket.io.engine.transport.name, "polling");
  });

  it("multiplexes namespaces on one connection", async () => {
    const manager = new Manager(base, { reconnection: false, timeout: WAIT_MS });
    const main = manager.socket("/", { auth: { ns: "main" } });
    const custom = manager.socket("/custom", { auth: { ns: "custom" } });
    opened.push(main, custom);
    const [[mainAuth], [customAuth]] = await Promise.all([next(main, "auth"), next(custom, "auth")]);
    assert.deepEqual([mainAuth, customAuth], [{ ns: "main" }, { ns: "custom" }]);
    assert.deepEqual(await ask(custom, "message-with-ack", "c"), ["c"]);
    custom.disconnect();
    assert.deepEqual(await ask(main, "message-with-ack", "still here"), ["still here"]);
    assert.ok(main.connected);
  });

  it("reports an unknown namespace as a connect error", async () => {
    const socket = client({}, "/random");
    const [err] = await next(socket, "connect_error");
    assert.equal(err.message, "Invalid namespace");
  });
});
