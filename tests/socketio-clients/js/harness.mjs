// The harness of the Node suite: starts the real `roomcast` binary on 127.0.0.1:0 with
// ../roomcast.test.toml, mints tokens, calls the HTTP API, and records what a Socket.IO or
// native WebSocket client receives so that tests can wait for it by name and in order.
//
// Waits have deadlines only so that a missing event fails the test instead of hanging it;
// no test asserts how long anything took.

import { after, afterEach, before } from 'node:test';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import jwt from 'jsonwebtoken';
import pg from 'pg';
import { createClient } from 'redis';
import { io, Manager } from 'socket.io-client';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SUITE_DIR = path.resolve(HERE, '..');
export const REPO_ROOT = path.resolve(SUITE_DIR, '../..');

/** How long to wait for something that should happen at once, before failing. */
export const WAIT_MS = 10_000;
const START_MS = 30_000;
const STOP_MS = 10_000;

/** Resolves a binary path from an environment variable or a default, relative to the repo. */
export function binaryPath(envVar, fallback) {
  return path.resolve(REPO_ROOT, process.env[envVar] || fallback);
}

/** The environment for a child process: ours without any ROOMCAST_* setting, which would
 * override the test configuration. */
function childEnv() {
  return Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith('ROOMCAST_')),
  );
}

/**
 * Starts a process that prints a line matching `ready` (its first group is the address) on
 * stdout once it listens. Its stderr goes to `<dir>/<name>.log`, printed if it fails to start
 * or exits before `stop`, and echoed live with SIO_TESTS_SERVER_LOG=1.
 */
async function startProcess({ name, bin, args, ready, dir, env = {} }) {
  if (!existsSync(bin)) {
    throw new Error(`${bin} does not exist: build it first (see .ci/socketio-clients.sh)`);
  }
  const logPath = path.join(dir, `${name}.log`);
  const log = [];
  const child = spawn(bin, args, {
    cwd: dir,
    env: { ...childEnv(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    log.push(chunk);
    if (process.env.SIO_TESTS_SERVER_LOG) process.stderr.write(chunk);
  });
  const flushLog = () => writeFileSync(logPath, log.join(''));
  let stopping = false;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      flushLog();
      if (!stopping) {
        process.stderr.write(
          `${name} exited unexpectedly (code ${code}, signal ${signal}); its log:\n${log.join('')}\n`,
        );
      }
      resolve({ code, signal });
    });
  });
  const addr = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} printed no ready line within ${START_MS} ms; log:\n${log.join('')}`));
    }, START_MS);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(ready);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited before listening (code ${code}, signal ${signal}):\n${log.join('')}`));
    });
  });
  return {
    addr,
    url: `http://${addr}`,
    logPath,
    log: () => log.join(''),
    /** SIGKILL at once, as a crash would; resolves to how it exited. */
    async kill() {
      stopping = true;
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    },
    /** SIGTERM, SIGKILL after STOP_MS; resolves to how it exited: { code, signal }. */
    async stop() {
      stopping = true;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_MS);
        await exited;
        clearTimeout(timer);
      }
      return exited;
    },
  };
}

/** The suite's configuration, ../roomcast.test.toml, with its @SECRET@ and @API_KEY@
 * placeholders: a test that needs more appends its own sections and passes the text to
 * [`startRoomcast`] as `configText`. */
export function suiteConfig() {
  return readFileSync(path.join(SUITE_DIR, 'roomcast.test.toml'), 'utf8');
}

/**
 * Starts `roomcast` (ROOMCAST_BIN, default target/debug/roomcast) with the suite's
 * configuration (or `configText`, with the same placeholders), a fresh secret and API key
 * (or `secret` and `apiKey`, which the nodes of a cluster share), and `env` on top
 * (`ROOMCAST_SECTION__KEY` settings); `name` names its log. Returns the server handle: `url`,
 * `secret`, `apiKey`, `token(claims)`, `publish(body)`, `api(method, path, body)`, `log()`,
 * `stop()` (resolving to the exit).
 */
export async function startRoomcast({
  configFile,
  configText,
  secret = randomBytes(32).toString('hex'),
  apiKey = `test-${randomBytes(16).toString('hex')}`,
  name = 'roomcast',
  env: extraEnv = {},
} = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'roomcast-sio-js-'));
  let configPath;
  let env = {};
  if (configFile) {
    // A configuration used as shipped: only the address and the secrets come from the
    // environment, as an operator would set them.
    configPath = path.resolve(REPO_ROOT, configFile);
    env = {
      ROOMCAST_LISTEN: '127.0.0.1:0',
      ROOMCAST_JWT_SECRET: secret,
      ROOMCAST_API_KEY: apiKey,
    };
  } else {
    const template = configText ?? suiteConfig();
    configPath = path.join(dir, 'roomcast.toml');
    writeFileSync(
      configPath,
      template.replaceAll('@SECRET@', secret).replaceAll('@API_KEY@', apiKey),
    );
  }
  const proc = await startProcess({
    name,
    bin: binaryPath('ROOMCAST_BIN', 'target/debug/roomcast'),
    args: ['--config', configPath],
    ready: /roomcast listening on (\S+)/,
    dir,
    env: { ...env, ...extraEnv },
  });
  const server = {
    ...proc,
    secret,
    apiKey,
    /** An HS256 token for user `sub` of `tenant`, valid for an hour. */
    token(sub, tenant, extra = {}) {
      return mint(secret, { sub, tenant_id: tenant, ...extra });
    },
    /** Calls the HTTP API with the platform key; resolves to { status, body }. */
    async api(method, route, body) {
      const res = await fetch(`${proc.url}${route}`, {
        method,
        headers: {
          authorization: `Bearer ${apiKey}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
      return { status: res.status, body: parsed };
    },
    /** POST /api/publish; throws unless the answer is 200. */
    async publish(body) {
      const res = await server.api('POST', '/api/publish', body);
      if (res.status !== 200) {
        throw new Error(`publish answered ${res.status}: ${JSON.stringify(res.body)}`);
      }
      return res.body;
    },
    async stop() {
      const exit = await proc.stop();
      if (!process.env.SIO_TESTS_KEEP_TMP) rmSync(dir, { recursive: true, force: true });
      return exit;
    },
  };
  return server;
}

/**
 * Starts `roomcast` (see [`startRoomcast`]) before the calling file's tests, closes the
 * clients they tracked after each test, and stops the server after the last. Returns the
 * server handle, filled in once the server has started.
 */
export function useRoomcast(options) {
  const handle = {};
  before(async () => {
    Object.assign(handle, await startRoomcast(options));
  });
  afterEach(closeTracked);
  after(async () => {
    await handle.stop?.();
  });
  return handle;
}

/**
 * Starts the library fixture `sio-fixture` (SIO_FIXTURE_BIN, default
 * target/debug/sio-fixture) on 127.0.0.1:0, or returns null when its source or binary is
 * absent (`reason` says which).
 */
export async function startFixture() {
  const source = path.join(REPO_ROOT, 'examples/src/bin/sio-fixture.rs');
  const bin = binaryPath('SIO_FIXTURE_BIN', 'target/debug/sio-fixture');
  if (!existsSync(source)) return { skip: 'examples/src/bin/sio-fixture.rs does not exist yet' };
  if (!existsSync(bin)) return { skip: `${bin} is not built` };
  const dir = mkdtempSync(path.join(tmpdir(), 'roomcast-sio-fixture-'));
  const proc = await startProcess({
    name: 'sio-fixture',
    bin,
    args: ['127.0.0.1:0'],
    ready: /listening on (?:http:\/\/)?(\S+)/,
    dir,
  });
  return {
    ...proc,
    async stop() {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An HS256 JWT with `claims` and an `exp` an hour ahead (unless given). */
export function mint(secret, claims) {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  return jwt.sign({ exp, ...claims }, secret, { algorithm: 'HS256', noTimestamp: true });
}

/**
 * What a socket received, in order. `next(name)` resolves with the arguments of the next
 * occurrence of `name` not yet taken (recorded before or after the call), so a test never
 * misses an event that came before it started waiting. Reserved events (connect,
 * connect_error, disconnect) are recorded too. A wait fails at once when one of the
 * `fatal` events (other than the awaited one) is recorded after it began: a socket that
 * was refused or dropped will not deliver what the test waits for.
 */
export class Recorder {
  constructor(name = 'socket', fatal = []) {
    this.name = name;
    this.fatal = fatal;
    this.events = [];
    this.taken = new Map();
    this.waiters = [];
  }

  push(event, args) {
    this.events.push({ event, args });
    for (const waiter of [...this.waiters]) waiter();
  }

  /** Every occurrence of `event` so far, as argument arrays. */
  all(event) {
    return this.events.filter((e) => e.event === event).map((e) => e.args);
  }

  /** The names of every event so far, in order. */
  names() {
    return this.events.map((e) => e.event);
  }

  /** The next `event` whose first argument passes `pick` (the others are taken and passed
   * over). */
  async nextWhere(event, pick) {
    for (;;) {
      const args = await this.next(event);
      if (pick(args[0])) return args;
    }
  }

  next(event, timeoutMs = WAIT_MS) {
    const since = this.events.length;
    return new Promise((resolve, reject) => {
      const check = () => {
        const index = this.taken.get(event) ?? 0;
        const found = this.all(event)[index];
        if (found !== undefined) {
          this.taken.set(event, index + 1);
          cleanup();
          resolve(found);
          return true;
        }
        const fatal = this.events
          .slice(since)
          .find((e) => e.event !== event && this.fatal.includes(e.event));
        if (fatal) {
          cleanup();
          reject(
            new Error(
              `${this.name}: "${fatal.event}" (${describeArgs(fatal.args)}) while waiting for ` +
                `"${event}"; received so far: ${JSON.stringify(this.names())}`,
            ),
          );
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `${this.name}: no "${event}" within ${timeoutMs} ms; received so far: ` +
              JSON.stringify(this.names()),
          ),
        );
      }, timeoutMs);
      const waiter = () => check();
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
      };
      if (!check()) this.waiters.push(waiter);
    });
  }
}

/** A short description of event arguments, errors included. */
function describeArgs(args) {
  return args
    .map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : JSON.stringify(a)))
    .join(', ');
}

/** Records every event of a socket.io-client socket. */
export function record(socket, name) {
  const rec = new Recorder(name, ['connect_error', 'disconnect']);
  socket.onAny((event, ...args) => rec.push(event, args));
  for (const event of ['connect', 'connect_error', 'disconnect']) {
    socket.on(event, (...args) => rec.push(event, args));
  }
  return rec;
}

/**
 * A socket.io-client socket to `ns` with `auth: { token }`, recorded from the first packet
 * (listeners are attached before it connects). Returns { socket, rec }. `forceNew` keeps
 * tests from sharing the client's cached Manager; pass `opts.forceNew = false` to multiplex.
 */
export function connectSio(server, ns, token, opts = {}) {
  const { name, ...ioOpts } = opts;
  const socket = io(`${server.url}${ns}`, {
    path: '/socket.io/',
    auth: token === undefined ? undefined : { token },
    forceNew: true,
    reconnection: false,
    autoConnect: false,
    ...ioOpts,
  });
  tracked.add(socket);
  const rec = record(socket, name ?? `${ns} socket`);
  socket.connect();
  return { socket, rec };
}

/** Connects and waits for `connect` and the greeting; returns { socket, rec, greeting }. */
export async function connectedSio(server, token, opts = {}) {
  const conn = connectSio(server, '/', token, opts);
  try {
    await conn.rec.next('connect');
    const [greeting] = await conn.rec.next('connected');
    return { ...conn, greeting };
  } catch (err) {
    closeAll(conn.socket);
    throw err;
  }
}

/** A socket.io-client Manager (one Engine.IO session for several namespaces), closed by
 * closeTracked() like every socket the harness made. */
export function newManager(server, opts = {}) {
  const manager = new Manager(server.url, { path: '/socket.io/', autoConnect: false, ...opts });
  tracked.add(manager);
  return manager;
}

/** Every client the harness made, for closeTracked(). */
const tracked = new Set();

/** Closes every client the harness made and the test did not close: use it in afterEach, so
 * a failed test leaves no socket retrying or holding the process open. */
export function closeTracked() {
  for (const client of tracked) {
    if (client instanceof Manager) {
      client._close();
      client.engine?.close();
    } else {
      closeAll(client);
    }
  }
  tracked.clear();
}

/**
 * Resolves with the transport name of the engine's next upgrade. Call it right after the
 * socket starts connecting (the engine exists then, before any I/O). The promise is marked
 * handled, so a test that fails before awaiting it leaves no stray rejection.
 */
export function nextUpgrade(engine, timeoutMs = WAIT_MS) {
  let timer;
  const upgraded = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no upgrade within ${timeoutMs} ms`)), timeoutMs);
    engine.once('upgrade', (transport) => resolve(transport.name));
    engine.once('upgradeError', (err) => reject(new Error(`upgradeError: ${err.message}`)));
  });
  upgraded.catch(() => {}).finally(() => clearTimeout(timer));
  return upgraded;
}

/** Resolves once the engine has received `count` more Engine.IO pings from the server. */
export function enginePings(engine, count, timeoutMs = WAIT_MS) {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const onPing = () => {
      seen += 1;
      if (seen === count) {
        clearTimeout(timer);
        engine.off('ping', onPing);
        resolve();
      }
    };
    const timer = setTimeout(() => {
      engine.off('ping', onPing);
      reject(new Error(`${seen} of ${count} Engine.IO pings within ${timeoutMs} ms`));
    }, timeoutMs);
    engine.on('ping', onPing);
  });
}

/** Emits and waits for the ack; resolves with the ack's arguments. */
export function emitWithAck(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(WAIT_MS).emit(event, ...args, (err, ...ackArgs) => {
      if (err) reject(new Error(`no ack for "${event}" within ${WAIT_MS} ms`));
      else resolve(ackArgs);
    });
  });
}

/**
 * A native client (GET /ws?token=...) whose JSON messages are recorded under their `type`;
 * resolves once the welcome came.
 */
export async function connectNative(server, token) {
  const ws = new WebSocket(`ws://${server.addr}/ws?token=${encodeURIComponent(token)}`);
  tracked.add(ws);
  const rec = new Recorder('native client', ['close', 'error']);
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      rec.push('binary', [data]);
      return;
    }
    const msg = JSON.parse(data.toString('utf8'));
    rec.push(msg.type, [msg]);
  });
  ws.on('close', (code, reason) => rec.push('close', [code, reason.toString()]));
  ws.on('error', (err) => rec.push('error', [err]));
  try {
    const [welcome] = await rec.next('welcome');
    return { ws, rec, welcome };
  } catch (err) {
    closeAll(ws);
    throw err;
  }
}

/** Closes every socket given (socket.io-client sockets or ws WebSockets), ignoring errors. */
export function closeAll(...sockets) {
  for (const s of sockets) {
    try {
      if (!s) continue;
      if (typeof s.disconnect === 'function') {
        s.disconnect();
        s.io?.engine?.close();
      } else if (typeof s.terminate === 'function') {
        s.terminate();
      }
    } catch {
      // already closed
    }
  }
}

/** A short unique name, so tests sharing one server never share a user or a room. */
export function unique(prefix) {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** The shared Redis the cluster tests use. */
export const REDIS_URL = 'redis://127.0.0.1:6379';

/** A connected client of the Redis at REDIS_URL, as { client }, or why there is none, as
 * { absent }. */
export async function connectRedis() {
  const client = createClient({
    url: REDIS_URL,
    socket: { connectTimeout: 2_000, reconnectStrategy: false },
  });
  // Without a listener an `error` event would be thrown; connect() rejects with it anyway.
  client.on('error', () => {});
  try {
    await client.connect();
    return { client };
  } catch (err) {
    return { absent: `the Redis at ${REDIS_URL} is absent (${err.message})` };
  }
}

/** The machine's PostgreSQL (trust auth), as its administrator database. */
export const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/postgres';

/** A fresh PostgreSQL database made for the run with the npm `pg` client: { url, drop() }, or
 * why there is none, as { absent }. The caller drops it at the end. */
export async function postgresDatabase() {
  const name = `roomcast_js_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN, connectionTimeoutMillis: 2000 });
  try {
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
  } catch (err) {
    return { absent: `the PostgreSQL at ${PG_ADMIN} is absent (${err.message})` };
  } finally {
    await admin.end().catch(() => {});
  }
  return {
    url: `postgres://postgres@127.0.0.1:5432/${name}`,
    async drop() {
      const c = new pg.Client({ connectionString: PG_ADMIN, connectionTimeoutMillis: 2000 });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}
