// `@socket.io/redis-emitter`, the npm library backends emit with, against a cluster of two
// roomcast nodes sharing the Redis at 127.0.0.1:6379. Both nodes read two emitter keys: one
// whose messages take their tenant from a `tenant:{tenant}` room, one whose messages all
// belong to tenant acme. Every node acts on its own connections, so each client, Socket.IO or
// native, on either node, gets an emitted event once, and a client of another tenant never.
//
// "Never" and "once" are checked without waiting for time to pass: the emitters publish
// through one Redis connection and each node reads every emitter channel through one
// subscriber connection, in order, so after an event, a barrier event emitted later to the
// same clients comes after it on every node; once a client has the barrier, anything it was
// going to get from before is there.
//
// Needs the Redis at 127.0.0.1:6379; without it the tests are skipped, or fail under CI=true.
// Keys and channels are under a prefix of this run only, removed at the end.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, afterEach, before, describe, test } from 'node:test';

import { Emitter } from '@socket.io/redis-emitter';

import {
  closeTracked,
  connectedSio,
  connectRedis,
  connectNative,
  emitWithAck,
  Recorder,
  REDIS_URL,
  startRoomcast,
  suiteConfig,
  unique,
  WAIT_MS,
} from './harness.mjs';

/** Every key and channel of this run starts with it. */
const PREFIX = `rc-emitters-js-${process.pid}-${randomBytes(4).toString('hex')}`;
/** The emitter keys: messages take their tenant from a room, or are all acme's. */
const KEYS = { fromRoom: `${PREFIX}-from-room`, acme: `${PREFIX}-acme` };

const redis = await connectRedis();
if (redis.absent && process.env.CI === 'true') {
  test('the Redis the emitter tests need is present', () => {
    assert.fail(`${redis.absent} (CI=true: an absent service is a failure)`);
  });
}
/** A test that needs the Redis: skipped without it (each test rather than the suites, so
 * that the totals count them). */
function redisTest(name, fn) {
  test(name, { skip: redis.absent ? `${redis.absent}: skipping the emitter tests` : false }, fn);
}

/** The suite's configuration with the cluster section of node `node`. */
function clusterConfig(node) {
  return `${suiteConfig()}
[cluster]
redis = "${REDIS_URL}/0"
node_id = "${node}"
prefix = "${PREFIX}"

[[cluster.emitters]]
kind = "socket-io"
channel = "${KEYS.fromRoom}"
tenant_from_room = "tenant:{tenant}"

[[cluster.emitters]]
kind = "socket-io"
channel = "${KEYS.acme}"
tenant = "acme"
`;
}

/** The request channels of every key and namespace: each node subscribes to them by name. */
const REQUEST_CHANNELS = Object.values(KEYS).flatMap((key) => [
  `${key}-request#/#`,
  `${key}-request#/custom#`,
]);

/** How many subscribers each request channel has, in REQUEST_CHANNELS order. */
async function requestSubscribers() {
  const answer = await redis.client.sendCommand(['PUBSUB', 'NUMSUB', ...REQUEST_CHANNELS]);
  return answer.filter((_, i) => i % 2 === 1);
}

/** Node a, node b, and one emitter per key, over one Redis connection. */
const nodes = [];
const emitters = {};

before(async () => {
  if (redis.absent) return;
  const a = await startRoomcast({ configText: clusterConfig('a'), name: 'roomcast-a' });
  nodes.push(a);
  const b = await startRoomcast({
    configText: clusterConfig('b'),
    name: 'roomcast-b',
    secret: a.secret,
    apiKey: a.apiKey,
  });
  nodes.push(b);
  a.nodeName = 'a';
  b.nodeName = 'b';
  // A node sends its SUBSCRIBE commands before it prints its ready line, but Redis may act on
  // them a moment later: wait until both nodes are counted on every request channel (the
  // last ones each node subscribes, after the broadcast pattern, on the same connection).
  const deadline = Date.now() + WAIT_MS;
  let counts = await requestSubscribers();
  while (counts.some((n) => n < 2)) {
    if (Date.now() > deadline) {
      throw new Error(`request channels ${REQUEST_CHANNELS} have ${counts} subscribers, not 2`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    counts = await requestSubscribers();
  }
  emitters.fromRoom = new Emitter(redis.client, { key: KEYS.fromRoom });
  emitters.acme = new Emitter(redis.client, { key: KEYS.acme });
});
afterEach(closeTracked);
after(async () => {
  await Promise.all(nodes.map((node) => node.stop()));
  if (redis.absent) return;
  // The nodes leave their registry entries on the way out; anything else under the prefix
  // goes too.
  const keys = [];
  for await (const key of redis.client.scanIterator({ MATCH: `${PREFIX}*`, COUNT: 1000 })) {
    keys.push(key);
  }
  if (keys.length > 0) await redis.client.del(keys);
  await redis.client.quit();
});

/**
 * A Socket.IO client (`transports`) of `tenant` on `node`, its events recorded by name with
 * their argument arrays.
 */
async function sioClient(node, tenant, transports, user = unique('u')) {
  const name = `${tenant} Socket.IO client (${transports}) on node ${node.nodeName}`;
  const sio = await connectedSio(node, node.token(user, tenant), { transports, name });
  return { kind: 'sio', name, user, socket: sio.socket, rec: sio.rec };
}

/**
 * A native client of `tenant` on `node`, its `event` messages recorded under their event
 * name (the whole message), the other messages under their type, and the close as `close`.
 */
async function nativeClient(node, tenant, user = unique('u')) {
  const name = `${tenant} native client on node ${node.nodeName}`;
  const { ws, welcome } = await connectNative(node, node.token(user, tenant));
  const rec = new Recorder(name, ['close', 'error']);
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    const msg = JSON.parse(data.toString('utf8'));
    rec.push(msg.type === 'event' ? msg.event : msg.type, [msg]);
  });
  ws.on('close', (code, reason) => rec.push('close', [code, reason.toString()]));
  ws.on('error', (err) => rec.push('error', [err]));
  return { kind: 'native', name, user, ws, rec, welcome };
}

/** Four clients of `tenant`: Socket.IO over WebSocket and native on node a, Socket.IO over
 * polling and native on node b. */
async function clientsOf(tenant) {
  const [a, b] = nodes;
  return [
    await sioClient(a, tenant, ['websocket']),
    await nativeClient(a, tenant),
    await sioClient(b, tenant, ['polling']),
    await nativeClient(b, tenant),
  ];
}

/** The tenant a client's token names. */
const tenantOf = (client) => (client.name.startsWith('acme') ? 'acme' : 'globex');

/**
 * Emits `barrier` to each tenant's room through the room-tenant key and waits for it on
 * every client; returns how many were emitted. Whatever was emitted before it, through either
 * key, has reached these clients by then.
 */
async function barrier(clients) {
  const id = unique('barrier');
  const tenants = [...new Set(clients.map(tenantOf))];
  for (const tenant of tenants) emitters.fromRoom.to(`tenant:${tenant}`).emit('barrier', id);
  for (const client of clients) {
    const [got] = await client.rec.next('barrier');
    assert.equal(client.kind === 'native' ? got.data : got, id, `${client.name}: barrier`);
  }
  return tenants.length;
}

/** How many `event`s a client got. */
const count = (client, event) => client.rec.all(event).length;

/**
 * Waits for `event` on a client and checks it: a Socket.IO client gets `args`; a native
 * client gets `data` (the one argument, or the array of them) from `room` (null for none).
 */
async function expectEvent(client, event, { args, data, room }) {
  const got = await client.rec.next(event);
  if (client.kind === 'sio') {
    assert.deepEqual(got, args, `${client.name}: arguments of "${event}"`);
  } else {
    const [msg] = got;
    assert.equal(msg.event, event);
    assert.equal(msg.room ?? null, room, `${client.name}: room of "${event}"`);
    assert.deepEqual(msg.data, data, `${client.name}: data of "${event}"`);
  }
}

/** A counter of a node's /metrics, 0 when absent. */
async function metric(node, name) {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

const HANDLED = 'roomcast_emitter_handled_total';
const NO_TENANT = 'roomcast_emitter_dropped_total{reason="no_tenant"}';

describe('@socket.io/redis-emitter, tenant from the room', () => {
  redisTest('both nodes subscribe to the request channel of every namespace, once', async () => {
    // What the emitter's serverCount() and the Socket.IO adapter count as servers.
    assert.deepEqual(await requestSubscribers(), REQUEST_CHANNELS.map(() => 2));
  });

  redisTest('to(tenant:acme) reaches each acme client on both nodes once, no other', async () => {
    const acme = await clientsOf('acme');
    const globex = [
      await sioClient(nodes[0], 'globex', ['websocket']),
      await nativeClient(nodes[1], 'globex'),
    ];

    emitters.fromRoom.to('tenant:acme').emit('ev', { a: 1 });
    for (const client of acme) {
      await expectEvent(client, 'ev', { args: [{ a: 1 }], data: { a: 1 }, room: 'tenant:acme' });
    }
    await barrier([...acme, ...globex]);
    for (const client of acme) assert.equal(count(client, 'ev'), 1, client.name);
    for (const client of globex) assert.equal(count(client, 'ev'), 0, client.name);
  });

  redisTest('except() leaves out the members of a room, on both nodes', async () => {
    const acme = await clientsOf('acme');
    const [sioA, nativeA, sioB, nativeB] = acme;
    const roomId = unique('vip');
    await emitWithAck(sioA.socket, 'join_room', { roomId });
    nativeB.ws.send(JSON.stringify({ type: 'subscribe', id: 1, room: `custom:${roomId}` }));
    assert.equal((await nativeB.rec.next('reply'))[0].ok, true);

    emitters.fromRoom.to('tenant:acme').except(`custom:${roomId}`).emit('ev', 'not for vip');
    for (const client of [nativeA, sioB]) {
      const expected = { args: ['not for vip'], data: 'not for vip', room: 'tenant:acme' };
      await expectEvent(client, 'ev', expected);
    }
    await barrier(acme);
    assert.equal(count(sioA, 'ev'), 0, sioA.name);
    assert.equal(count(nativeB, 'ev'), 0, nativeB.name);
    assert.equal(count(nativeA, 'ev'), 1, nativeA.name);
    assert.equal(count(sioB, 'ev'), 1, sioB.name);
  });

  redisTest('a Buffer is binary to Socket.IO clients and base64 to native ones', async () => {
    const acme = await clientsOf('acme');
    const blob = Buffer.from([0, 1, 2, 255]);
    const meta = { name: 'a.bin', thumb: Buffer.from('hi') };
    emitters.fromRoom.to('tenant:acme').emit('blob', blob);
    emitters.fromRoom.to('tenant:acme').emit('file', blob, meta);

    for (const client of acme) {
      const first = await client.rec.next('blob');
      const second = await client.rec.next('file');
      if (client.kind === 'sio') {
        assert.equal(first.length, 1, client.name);
        assert.ok(Buffer.isBuffer(first[0]), `${client.name}: not a Buffer`);
        assert.ok(first[0].equals(blob), client.name);
        const [file, gotMeta] = second;
        assert.ok(Buffer.isBuffer(file) && file.equals(blob), client.name);
        assert.equal(gotMeta.name, 'a.bin');
        assert.ok(Buffer.isBuffer(gotMeta.thumb), `${client.name}: thumb is not a Buffer`);
        assert.equal(gotMeta.thumb.toString(), 'hi', client.name);
      } else {
        assert.equal(first[0].data, 'AAEC/w==', client.name);
        const expected = ['AAEC/w==', { name: 'a.bin', thumb: 'aGk=' }];
        assert.deepEqual(second[0].data, expected, client.name);
      }
    }
  });

  redisTest('several arguments, or none: native data is their array', async () => {
    const acme = await clientsOf('acme');
    const args = [1, 'two', [3], { four: 4 }, null, true, 'é€😀'];
    emitters.fromRoom.to('tenant:acme').emit('multi', ...args);
    emitters.fromRoom.to('tenant:acme').emit('bare');
    for (const client of acme) {
      await expectEvent(client, 'multi', { args, data: args, room: 'tenant:acme' });
      await expectEvent(client, 'bare', { args: [], data: [], room: 'tenant:acme' });
    }
  });

  redisTest('an emit to a room naming no tenant is dropped and counted on both nodes', async () => {
    const acme = await clientsOf('acme');
    const counters = async (node) => ({
      dropped: await metric(node, NO_TENANT),
      handled: await metric(node, HANDLED),
    });
    const before = await Promise.all(nodes.map(counters));

    emitters.fromRoom.to('lobby').emit('ev', { lost: true });
    const barriers = await barrier(acme);

    for (const client of acme) assert.equal(count(client, 'ev'), 0, client.name);
    const now = await Promise.all(nodes.map(counters));
    for (const [i, node] of nodes.entries()) {
      assert.equal(now[i].dropped, before[i].dropped + 1, `node ${node.nodeName}: dropped`);
      assert.equal(now[i].handled, before[i].handled + barriers, `node ${node.nodeName}: handled`);
    }
  });
});

describe('@socket.io/redis-emitter, every message for tenant acme', () => {
  redisTest('a broadcast with no room reaches each acme client once, no other', async () => {
    const acme = await clientsOf('acme');
    const globex = [
      await nativeClient(nodes[0], 'globex'),
      await sioClient(nodes[1], 'globex', ['polling']),
    ];

    emitters.acme.emit('notice', { all: true });
    for (const client of acme) {
      // A broadcast to the whole tenant names no room.
      const expected = { args: [{ all: true }], data: { all: true }, room: null };
      await expectEvent(client, 'notice', expected);
    }
    await barrier([...acme, ...globex]);
    for (const client of acme) assert.equal(count(client, 'notice'), 1, client.name);
    for (const client of globex) assert.equal(count(client, 'notice'), 0, client.name);
  });

  redisTest('socketsJoin() and socketsLeave() act on selected sockets of both nodes', async () => {
    const acme = await clientsOf('acme');
    // One user's two connections on node b are left out of the join.
    const outsider = unique('out');
    const left = [
      await sioClient(nodes[1], 'acme', ['websocket'], outsider),
      await nativeClient(nodes[1], 'acme', outsider),
    ];
    const room = unique('order');

    emitters.acme.in('tenant:acme').except(`user:${outsider}`).socketsJoin(room);
    emitters.acme.to(room).emit('order', { id: 1 });
    for (const client of acme) {
      await expectEvent(client, 'order', { args: [{ id: 1 }], data: { id: 1 }, room });
    }
    await barrier([...acme, ...left]);
    for (const client of acme) assert.equal(count(client, 'order'), 1, client.name);
    for (const client of left) assert.equal(count(client, 'order'), 0, client.name);

    emitters.acme.in(room).socketsLeave(room);
    emitters.acme.to(room).emit('order', { id: 2 });
    await barrier([...acme, ...left]);
    for (const client of acme) {
      assert.equal(count(client, 'order'), 1, `${client.name} after leaving`);
    }
  });

  redisTest('disconnectSockets() disconnects each acme socket of both nodes, no other', async () => {
    const acme = await clientsOf('acme');
    const globexSio = await sioClient(nodes[1], 'globex', ['websocket']);
    const globexNative = await nativeClient(nodes[0], 'globex');

    emitters.acme.disconnectSockets();
    for (const client of acme) {
      const [first] = await client.rec.next('disconnect');
      if (client.kind === 'sio') {
        assert.equal(first, 'io server disconnect', client.name);
      } else {
        assert.equal(first.code, 4004, client.name);
        assert.equal((await client.rec.next('close'))[0], 4004, client.name);
      }
    }
    // Each node acted on the request when its acme clients were told; globex's clients on
    // both nodes are still served after that.
    const [ack] = await emitWithAck(globexSio.socket, 'ping');
    assert.equal(typeof ack.timestamp, 'string');
    globexNative.ws.send(JSON.stringify({ type: 'ping', id: 9 }));
    assert.equal((await globexNative.rec.next('pong'))[0].id, 9);
    assert.equal(count(globexSio, 'disconnect'), 0);
    assert.equal(count(globexNative, 'disconnect') + count(globexNative, 'close'), 0);
  });
});
