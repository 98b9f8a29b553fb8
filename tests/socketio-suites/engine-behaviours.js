// The Engine.IO v4 behaviours of the protocol document (docs/engine.io-protocol/v4-current.md
// in the socket.io repository): handshake, messages, heartbeat, close and upgrade, over HTTP
// long-polling and WebSocket. `echo` says whether the server sends every message back (the
// Engine.IO fixture); a Socket.IO server gets the tests that need no echo.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { PING_INTERVAL, PING_TIMEOUT, sleep } from "./harness.js";

const OPEN_KEYS = ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"];

function checkOpen(open, upgrades) {
  assert.deepEqual(Object.keys(open).sort(), OPEN_KEYS);
  assert.equal(typeof open.sid, "string");
  assert.deepEqual(open.upgrades, upgrades);
  assert.equal(open.pingInterval, PING_INTERVAL);
  assert.equal(open.pingTimeout, PING_TIMEOUT);
  assert.equal(open.maxPayload, 1000000);
}

/** Registers the Engine.IO tests against `endpoint`. */
export function engineBehaviours(endpoint, { echo }) {
  describe("handshake over HTTP long-polling", () => {
    it("opens a session with the server's settings", async () => {
      const response = await endpoint.request("EIO=4&transport=polling");
      assert.equal(response.status, 200);
      const body = await response.text();
      assert.equal(body[0], "0");
      checkOpen(JSON.parse(body.slice(1)), ["websocket"]);
    });

    it("refuses a missing or unsupported protocol version", async () => {
      for (const query of ["transport=polling", "EIO=abc&transport=polling", "EIO=3&transport=polling"]) {
        const response = await endpoint.request(query);
        assert.equal(response.status, 400, query);
        assert.deepEqual(await response.json(), { code: 5, message: "Unsupported protocol version" });
      }
    });

    it("refuses a missing or unknown transport", async () => {
      for (const query of ["EIO=4", "EIO=4&transport=abc"]) {
        const response = await endpoint.request(query);
        assert.equal(response.status, 400, query);
        assert.deepEqual(await response.json(), { code: 0, message: "Transport unknown" });
      }
    });

    it("refuses a handshake that is not a GET", async () => {
      for (const method of ["POST", "PUT"]) {
        const response = await endpoint.request("EIO=4&transport=polling", { method });
        assert.equal(response.status, 400, method);
        assert.deepEqual(await response.json(), { code: 2, message: "Bad handshake method" });
      }
    });

    it("refuses an unknown session id", async () => {
      const response = await endpoint.poll("AAAAAAAAAAAAAAAAAAAA");
      assert.equal(response.status, 400);
      assert.deepEqual(await response.json(), { code: 1, message: "Session ID unknown" });
    });
  });

  describe("handshake over WebSocket", () => {
    it("opens a session without upgrades", async () => {
      const socket = endpoint.socket();
      const open = await socket.next("message");
      assert.equal(open[0], "0");
      checkOpen(JSON.parse(open.slice(1)), []);
      socket.close();
    });

    it("refuses a missing or unsupported protocol version", async () => {
      for (const query of ["transport=websocket", "EIO=abc&transport=websocket"]) {
        await endpoint.socket(query).next("close");
      }
    });

    it("refuses a missing or unknown transport", async () => {
      for (const query of ["EIO=4", "EIO=4&transport=abc"]) {
        await endpoint.socket(query).next("close");
      }
    });
  });

  if (echo) {
    describe("messages over HTTP long-polling", () => {
      for (const [name, payload] of [
        ["one text packet", "4hello"],
        ["several text packets", "4test1\x1e4test2\x1e4test3"],
        ["text and binary packets", "4hello\x1ebAQIDBA=="],
        ["non-ASCII text", "4€ ünïcödé"],
      ]) {
        it(`sends and receives ${name}`, async () => {
          const { sid } = await endpoint.open();
          const pushed = await endpoint.push(sid, payload);
          assert.equal(pushed.status, 200);
          assert.equal(await pushed.text(), "ok");
          const polled = await endpoint.poll(sid);
          assert.equal(polled.status, 200);
          assert.equal(await polled.text(), payload);
        });
      }
    });

    describe("messages over WebSocket", () => {
      it("echoes a text packet", async () => {
        const socket = endpoint.socket();
        await socket.next("open");
        await socket.next("message");
        socket.send("4hello");
        assert.equal(await socket.next("message"), "4hello");
        socket.close();
      });

      it("echoes a binary packet as a binary frame", async () => {
        const socket = endpoint.socket();
        await socket.next("message");
        socket.send(Uint8Array.from([1, 2, 3, 4]));
        assert.deepEqual(await socket.next("message"), Buffer.from([1, 2, 3, 4]));
        socket.close();
      });
    });
  }

  describe("errors close the session", () => {
    it("closes a polling session on a malformed payload", async () => {
      const { sid } = await endpoint.open();
      const pushed = await endpoint.push(sid, "abc").catch(() => null);
      if (pushed) {
        assert.equal(pushed.status, 400);
      }
      assert.equal((await endpoint.poll(sid)).status, 400);
    });

    it("closes a polling session on a payload over maxPayload", async () => {
      const { sid } = await endpoint.open();
      const pushed = await endpoint.push(sid, "4" + "x".repeat(1000000)).catch(() => null);
      if (pushed) {
        assert.equal(pushed.status, 413);
      }
      assert.equal((await endpoint.poll(sid)).status, 400);
    });

    it("closes a polling session on overlapping GETs", async () => {
      const { sid } = await endpoint.open();
      const first = endpoint.poll(sid);
      await sleep(20);
      const second = await endpoint.poll(sid, { extra: "&t=overlap" });
      assert.ok([400, 500].includes(second.status));
      const answered = await first;
      assert.equal(answered.status, 200);
      assert.equal(await answered.text(), "1");
      assert.equal((await endpoint.poll(sid)).status, 400);
    });

    it("closes a polling session whose GET was aborted", async () => {
      const { sid } = await endpoint.open();
      const controller = new AbortController();
      endpoint.poll(sid, { signal: controller.signal }).catch(() => {});
      await sleep(20);
      controller.abort();
      await sleep(20);
      assert.equal((await endpoint.poll(sid)).status, 400);
    });

    it("closes a WebSocket on a malformed packet", async () => {
      const socket = endpoint.socket();
      await socket.next("message");
      socket.send("abc");
      await socket.next("close");
    });
  });

  describe("heartbeat", () => {
    it("pings a polling client, which pongs", async () => {
      const { sid } = await endpoint.open();
      for (let i = 0; i < 3; i++) {
        const polled = await endpoint.poll(sid);
        assert.equal(polled.status, 200);
        assert.equal(await polled.text(), "2");
        assert.equal((await endpoint.push(sid, "3")).status, 200);
      }
    });

    it("closes a polling session without pong", async () => {
      const { sid } = await endpoint.open();
      await sleep(PING_INTERVAL + PING_TIMEOUT + 20);
      assert.equal((await endpoint.poll(sid)).status, 400);
    });

    it("pings a WebSocket client, which pongs", async () => {
      const socket = endpoint.socket();
      await socket.next("message");
      for (let i = 0; i < 3; i++) {
        assert.equal(await socket.next("message"), "2");
        socket.send("3");
      }
      socket.close();
    });

    it("closes a WebSocket without pong", async () => {
      const socket = endpoint.socket();
      await socket.next("message");
      await socket.next("close");
    });
  });

  describe("close", () => {
    it("ends the pending GET with a noop when the polling client closes", async () => {
      const { sid } = await endpoint.open();
      const polled = endpoint.poll(sid);
      await sleep(20);
      assert.equal((await endpoint.push(sid, "1")).status, 200);
      const answered = await polled;
      assert.equal(answered.status, 200);
      assert.equal(await answered.text(), "6");
      assert.equal((await endpoint.poll(sid)).status, 400);
    });

    it("closes the WebSocket when the client closes", async () => {
      const socket = endpoint.socket();
      await socket.next("message");
      socket.send("1");
      await socket.next("close");
    });
  });

  describe("upgrade from polling to WebSocket", () => {
    async function upgrade() {
      const { sid } = await endpoint.open();
      const socket = endpoint.socket(`EIO=4&transport=websocket&sid=${sid}`);
      await socket.next("open");
      socket.send("2probe");
      assert.equal(await socket.next("message"), "3probe");
      return { sid, socket };
    }

    it("probes, ends the pending poll with a noop, then switches", async () => {
      const { sid } = await endpoint.open();
      const polled = endpoint.poll(sid);
      await sleep(20);
      const socket = endpoint.socket(`EIO=4&transport=websocket&sid=${sid}`);
      await socket.next("open");
      socket.send("2probe");
      assert.equal(await socket.next("message"), "3probe");
      assert.equal(await (await polled).text(), "6");
      socket.send("5");
      if (echo) {
        socket.send("4hello");
        assert.equal(await socket.next("message"), "4hello");
      }
      socket.close();
    });

    it("answers a poll sent after the probe with a noop", async () => {
      const { sid, socket } = await upgrade();
      const polled = await endpoint.poll(sid);
      assert.equal(polled.status, 200);
      assert.equal(await polled.text(), "6");
      socket.send("5");
      socket.close();
    });

    it("refuses polling requests once upgraded", async () => {
      const { sid, socket } = await upgrade();
      socket.send("5");
      assert.equal((await endpoint.poll(sid)).status, 400);
      if (echo) {
        socket.send("4hello");
        assert.equal(await socket.next("message"), "4hello");
      }
      socket.close();
    });

    it("closes a second WebSocket for an upgraded session", async () => {
      const { sid, socket } = await upgrade();
      socket.send("5");
      await endpoint.socket(`EIO=4&transport=websocket&sid=${sid}`).next("close");
      if (echo) {
        socket.send("4hello");
        assert.equal(await socket.next("message"), "4hello");
      }
      socket.close();
    });

    if (echo) {
      it("delivers what was sent during the probe over the WebSocket", async () => {
        const { sid, socket } = await upgrade();
        assert.equal(await (await endpoint.push(sid, "4queued\x1ebAQIDBA==")).text(), "ok");
        socket.send("5");
        assert.deepEqual(await socket.nextPackets(2), ["4queued", Buffer.from([1, 2, 3, 4])]);
        socket.close();
      });
    }

    it("keeps polling when the probe fails", async () => {
      const { sid } = await endpoint.open();
      const socket = endpoint.socket(`EIO=4&transport=websocket&sid=${sid}`);
      await socket.next("open");
      socket.send("5");
      await socket.next("close");
      const polled = await endpoint.poll(sid);
      assert.equal(polled.status, 200);
      assert.equal(await polled.text(), "2");
    });
  });
}
