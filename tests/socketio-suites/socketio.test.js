// Socket.IO v5 protocol tests (docs/socket.io-protocol/v5-current.md in the socket.io
// repository) against the Socket.IO fixture (`sio-fixture`): namespaces `/` and `/custom`
// emit `auth` with the CONNECT payload, answer `message` with `message-back` and acknowledge
// `message-with-ack`, both with the same arguments. The Engine.IO behaviours run too, on
// `/socket.io/`. SIO_URL is the fixture's base URL.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { engineBehaviours } from "./engine-behaviours.js";
import { Endpoint } from "./harness.js";

const base = process.env.SIO_URL ?? "http://localhost:3000";
const endpoint = new Endpoint(base, "/socket.io/");

const PLACEHOLDERS = '{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}';

/** A WebSocket connected to the main namespace, its `auth` event read. */
async function connected() {
  const socket = endpoint.socket();
  await socket.next("message");
  socket.send("40");
  assert.match(await socket.next("message"), /^40\{"sid":"[^"]+"\}$/);
  assert.equal(await socket.next("message"), '42["auth",{}]');
  return socket;
}

/** Sends a CONNECT for `ns` with `payload` and checks the two answers. */
async function checkConnect(ns, payload, auth) {
  const socket = endpoint.socket();
  await socket.next("message");
  const prefix = ns === "/" ? "" : `${ns},`;
  socket.send(`40${prefix}${payload}`);
  const answer = await socket.next("message");
  assert.ok(answer.startsWith(`40${prefix}`), answer);
  const handshake = JSON.parse(answer.slice(2 + prefix.length));
  assert.deepEqual(Object.keys(handshake), ["sid"]);
  assert.equal(typeof handshake.sid, "string");
  assert.equal(await socket.next("message"), `42${prefix}["auth",${auth}]`);
  socket.close();
}

describe("Socket.IO v5", () => {
  describe("Engine.IO layer", () => {
    engineBehaviours(endpoint, { echo: false });
  });

  describe("connect", () => {
    it("connects to the main namespace", () => checkConnect("/", "", "{}"));

    it("connects to the main namespace with a payload", () =>
      checkConnect("/", '{"token":"123"}', '{"token":"123"}'));

    it("connects to a custom namespace", () => checkConnect("/custom", "", "{}"));

    it("connects to a custom namespace with a payload", () =>
      checkConnect("/custom", '{"token":"abc"}', '{"token":"abc"}'));

    it("refuses an unknown namespace", async () => {
      const socket = endpoint.socket();
      await socket.next("message");
      socket.send("40/random");
      assert.equal(await socket.next("message"), '44/random,{"message":"Invalid namespace"}');
      socket.close();
    });

    it("closes the connection on an invalid CONNECT", async () => {
      const socket = endpoint.socket();
      await socket.next("message");
      socket.send("4abc");
      await socket.next("close");
    });

    it("closes a connection that joins no namespace", async () => {
      const socket = endpoint.socket();
      await socket.next("message");
      await socket.next("close");
    });

    it("connects over HTTP long-polling", async () => {
      const { sid } = await endpoint.open();
      assert.equal(await (await endpoint.push(sid, '40{"token":"p"}')).text(), "ok");
      const [connect, auth] = (await (await endpoint.poll(sid)).text()).split("\x1e");
      assert.match(connect, /^40\{"sid":"[^"]+"\}$/);
      assert.equal(auth, '42["auth",{"token":"p"}]');
    });
  });

  describe("disconnect", () => {
    it("leaves the main namespace and keeps the connection", async () => {
      const socket = await connected();
      socket.send("41");
      assert.equal(await socket.next("message"), "2");
      socket.close();
    });

    it("leaves a custom namespace and keeps the main one", async () => {
      const socket = await connected();
      socket.send("40/custom,");
      assert.match((await socket.nextPackets(1))[0], /^40\/custom,\{"sid":"[^"]+"\}$/);
      assert.deepEqual(await socket.nextPackets(1), ['42/custom,["auth",{}]']);
      socket.send("41/custom,");
      socket.send('42/custom,["message","to a namespace left"]');
      socket.send('42["message","to the main namespace"]');
      assert.deepEqual(await socket.nextPackets(1), ['42["message-back","to the main namespace"]']);
      socket.close();
    });
  });

  describe("events and acks", () => {
    it("answers a plain-text event", async () => {
      const socket = await connected();
      socket.send('42["message",1,"2",{"3":[true]}]');
      assert.deepEqual(await socket.nextPackets(1), ['42["message-back",1,"2",{"3":[true]}]']);
      socket.close();
    });

    it("answers an event with binary attachments", async () => {
      const socket = await connected();
      socket.send(`452-["message",${PLACEHOLDERS}]`);
      socket.send(Uint8Array.from([1, 2, 3]));
      socket.send(Uint8Array.from([4, 5, 6]));
      assert.deepEqual(await socket.nextPackets(3), [
        `452-["message-back",${PLACEHOLDERS}]`,
        Buffer.from([1, 2, 3]),
        Buffer.from([4, 5, 6]),
      ]);
      socket.close();
    });

    it("acknowledges a plain-text event", async () => {
      const socket = await connected();
      socket.send('42456["message-with-ack",1,"2",{"3":[false]}]');
      assert.deepEqual(await socket.nextPackets(1), ['43456[1,"2",{"3":[false]}]']);
      socket.close();
    });

    it("acknowledges an event with binary attachments", async () => {
      const socket = await connected();
      socket.send(`452-789["message-with-ack",${PLACEHOLDERS}]`);
      socket.send(Uint8Array.from([1, 2, 3]));
      socket.send(Uint8Array.from([4, 5, 6]));
      assert.deepEqual(await socket.nextPackets(3), [
        `462-789[${PLACEHOLDERS}]`,
        Buffer.from([1, 2, 3]),
        Buffer.from([4, 5, 6]),
      ]);
      socket.close();
    });

    it("answers binary events over HTTP long-polling", async () => {
      const { sid } = await endpoint.open();
      await endpoint.push(sid, "40");
      await endpoint.poll(sid);
      await endpoint.push(sid, '451-["message",{"_placeholder":true,"num":0}]\x1ebAQID');
      assert.equal(
        await (await endpoint.poll(sid)).text(),
        '451-["message-back",{"_placeholder":true,"num":0}]\x1ebAQID',
      );
    });

    for (const [name, packet] of [
      ["an unknown packet type", "4abc"],
      ["an event that is not an array", "42{}"],
      ["an invalid ack id", '42abc["message-with-ack",1,"2",{"3":[false]}]'],
    ]) {
      it(`closes the connection on ${name}`, async () => {
        const socket = await connected();
        socket.send(packet);
        await socket.next("close");
      });
    }
  });
});
