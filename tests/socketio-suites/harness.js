// Shared by the protocol suites: raw Engine.IO requests (polling with fetch, WebSocket with
// `ws`) against a fixture whose base URL comes from the environment, and a WebSocket wrapper
// that buffers events so that a test can await them in order.

import { WebSocket } from "ws";

/** How long any single wait may take before the test fails. */
export const WAIT_MS = 3000;

export const PING_INTERVAL = 300;
export const PING_TIMEOUT = 200;

/** One Engine.IO endpoint: `base` is `http://host:port`, `path` e.g. `/engine.io/`. */
export class Endpoint {
  constructor(base, path) {
    this.http = `${base.replace(/\/$/, "")}${path}`;
    this.ws = this.http.replace(/^http/, "ws");
  }

  url(query) {
    return `${this.http}?${query}`;
  }

  /** A raw request; `query` without `?`. */
  request(query, init = {}) {
    return fetch(this.url(query), init);
  }

  /** Opens a polling session; resolves to `{ sid, open }` (the parsed open packet). */
  async open() {
    const response = await this.request("EIO=4&transport=polling");
    const body = await response.text();
    if (response.status !== 200 || body[0] !== "0") {
      throw new Error(`handshake failed: ${response.status} ${body}`);
    }
    const open = JSON.parse(body.slice(1));
    return { sid: open.sid, open };
  }

  /** A polling GET; `extra` is appended to the query. */
  poll(sid, { extra = "", signal } = {}) {
    return this.request(`EIO=4&transport=polling&sid=${sid}${extra}`, { signal });
  }

  /** A polling POST with `body`. */
  push(sid, body) {
    return this.request(`EIO=4&transport=polling&sid=${sid}`, { method: "POST", body });
  }

  /** A WebSocket with `query`. */
  socket(query = "EIO=4&transport=websocket") {
    return new Socket(this.url(query).replace(/^http/, "ws"));
  }
}

/**
 * A WebSocket whose `open`, `message` and `close` events are queued until awaited. Text
 * messages come as strings, binary ones as Buffers.
 */
export class Socket {
  constructor(url) {
    this.ws = new WebSocket(url);
    this.queues = { open: [], message: [], close: [] };
    this.waiters = { open: [], message: [], close: [] };
    this.ws.on("open", () => this.#deliver("open", true));
    this.ws.on("message", (data, isBinary) =>
      this.#deliver("message", isBinary ? Buffer.from(data) : data.toString()),
    );
    this.ws.on("close", (code) => this.#deliver("close", code));
    // A refused upgrade surfaces as an error, then a close.
    this.ws.on("error", () => {});
  }

  #deliver(type, value) {
    const waiter = this.waiters[type].shift();
    if (waiter) {
      waiter(value);
    } else {
      this.queues[type].push(value);
    }
  }

  /** The next event of `type` (`open`, `message`, `close`); rejects after `WAIT_MS`. */
  next(type = "message", timeout = WAIT_MS) {
    if (this.queues[type].length) {
      return Promise.resolve(this.queues[type].shift());
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters[type] = this.waiters[type].filter((w) => w !== waiter);
        reject(new Error(`no ${type} event within ${timeout} ms`));
      }, timeout);
      const waiter = (value) => {
        clearTimeout(timer);
        resolve(value);
      };
      this.waiters[type].push(waiter);
    });
  }

  /** The next `count` messages that are not pings (`2`). */
  async nextPackets(count) {
    const packets = [];
    while (packets.length < count) {
      const message = await this.next("message");
      if (message !== "2") {
        packets.push(message);
      }
    }
    return packets;
  }

  send(data) {
    this.ws.send(data);
  }

  close() {
    this.ws.close();
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
