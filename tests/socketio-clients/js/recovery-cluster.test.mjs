// Connection state recovery across the death of a node: two nodes share the Redis at
// 127.0.0.1:6379 (a key prefix of their own, removed at the end); socket.io-client 4.8
// connects through a TCP proxy (a load balancer) to node a, node a is killed with SIGKILL,
// the proxy sends the reconnecting client to node b, and the client gets its socket id,
// `socket.recovered` true and every event published while it was away, in order and once.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';


import {
  closeAll,
  connectRedis,
  emitWithAck,
  REDIS_URL,
  startRoomcast,
  unique,
} from './harness.mjs';
import { drop, received, recoverable, recoveryConfig } from './recovery.mjs';

const PREFIX = `rc-recovery-js-${process.pid}-${randomBytes(4).toString('hex')}`;

function clusterConfig(node) {
  return `${recoveryConfig(60_000)}
[cluster]
redis = "${REDIS_URL}/0"
node_id = "${node}"
prefix = "${PREFIX}"
`;
}

/** A TCP proxy on 127.0.0.1 to `target` (host:port), which `to()` changes for new
 * connections; `kill()` ends the connections it carries. */
async function proxy(target) {
  let to = target;
  const open = new Set();
  const server = net.createServer((client) => {
    const [host, port] = to.split(':');
    const upstream = net.connect(Number(port), host);
    open.add(client);
    open.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    to(next) {
      to = next;
    },
    close() {
      for (const s of open) s.destroy();
      server.close();
    },
  };
}

const redis = await connectRedis();
if (redis.absent && process.env.CI === 'true') {
  test('the Redis these tests need is there', () => {
    assert.fail(`${redis.absent} (CI=true: an absent service is a failure)`);
  });
}

describe('connection state recovery through another node after SIGKILL', () => {
  const skip = redis.absent ? `${redis.absent}: skipping the cluster recovery tests` : false;
  let b;
  before(async () => {
    if (redis.absent) return;
    b = await startRoomcast({ configText: clusterConfig('b'), name: 'roomcast-b' });
  });
  after(async () => {
    await b?.stop();
    if (redis.absent) return;
    for await (const key of redis.client.scanIterator({ MATCH: `${PREFIX}*`, COUNT: 1000 })) {
      await redis.client.del(key);
    }
    await redis.client.quit();
  });

  for (const transports of [['websocket'], ['polling']]) {
    test(`a client of a killed node recovers through another (${transports})`, { skip }, async () => {
      const a = await startRoomcast({
        configText: clusterConfig(`a-${transports}`),
        name: 'roomcast-a',
        secret: b.secret,
        apiKey: b.apiKey,
      });
      const lb = await proxy(a.addr);
      const user = unique('kill');
      const { socket, rec } = recoverable(b, user, transports, lb.url);
      try {
        await rec.next('connect');
        await rec.next('connected');
        const firstId = socket.id;
        const room = `custom:${unique('r')}`;
        const [joined] = await emitWithAck(socket, 'join_room', { roomId: room.slice(7) });
        assert.equal(joined.room, room);
        const publish = (server, event, data, to = room) =>
          server.publish({ tenant: 'acme', rooms: [to], namespace: '/', event, data });
        // Published through node b, delivered by node a.
        await publish(b, 'tick', { n: 0 });
        const [first, offset] = await rec.next('tick');
        assert.deepEqual(first, { n: 0 });
        assert.equal(typeof offset, 'string');
        // The session's last change has reached Redis (written within 200 ms).
        await sleep(500);

        const killed = a.kill();
        const [reason] = await rec.next('disconnect');
        assert.ok(['transport close', 'transport error'].includes(reason), reason);
        await killed;
        await publish(b, 'tick', { n: 1 });
        await publish(b, 'tick', { n: 2 });
        await publish(b, 'note', { to: 'me' }, `user:${user}`);
        await publish(b, 'tick', { n: -1 }, `custom:${unique('other')}`);

        lb.to(b.addr);
        socket.connect();
        // Publishes keep coming while it recovers: each arrives once, in order, whether it
        // was read from the log or delivered live.
        const last = 60;
        for (let n = 3; n <= last; n += 1) await publish(b, 'tick', { n });
        await rec.next('connect');
        assert.equal(socket.recovered, true, `not recovered; node b log:\n${b.log()}`);
        assert.equal(socket.id, firstId);
        for (let n = 1; n <= last; n += 1) await rec.next('tick');
        await rec.next('note');
        const ticks = Array.from({ length: last + 1 }, (_, n) => ({ n }));
        assert.deepEqual(received(rec, 'tick'), ticks);
        assert.deepEqual(received(rec, 'note'), [{ to: 'me' }]);
        await sleep(200);
        assert.equal(rec.all('tick').length, last + 1, 'an event came twice');
      } finally {
        closeAll(socket);
        lb.close();
        await a.stop();
      }
    });
  }

  test('a client that received nothing recovers through another node', { skip }, async () => {
    const a = await startRoomcast({
      configText: clusterConfig('a-quiet'),
      name: 'roomcast-a',
      secret: b.secret,
      apiKey: b.apiKey,
    });
    const lb = await proxy(a.addr);
    const user = unique('quiet');
    const { socket, rec } = recoverable(b, user, ['websocket'], lb.url);
    try {
      await rec.next('connect');
      const firstId = socket.id;
      await sleep(500);
      await a.kill();
      await rec.next('disconnect');
      await b.publish({ tenant: 'acme', rooms: [`user:${user}`], namespace: '/', event: 'note', data: { n: 1 } });
      lb.to(b.addr);
      socket.connect();
      await rec.next('connect');
      assert.equal(socket.recovered, true);
      assert.equal(socket.id, firstId);
      assert.deepEqual((await rec.next('note'))[0], { n: 1 });
    } finally {
      closeAll(socket);
      lb.close();
      await a.stop();
    }
  });

  test('a disconnection from a live node recovers too, with nothing twice', { skip }, async () => {
    const user = unique('live');
    const { socket, rec } = recoverable(b, user, ['websocket']);
    try {
      await rec.next('connect');
      await b.publish({ tenant: 'acme', rooms: [`user:${user}`], namespace: '/', event: 'note', data: { n: 0 } });
      await rec.next('note');
      await drop(socket, rec);
      await sleep(300);
      await b.publish({ tenant: 'acme', rooms: [`user:${user}`], namespace: '/', event: 'note', data: { n: 1 } });
      socket.connect();
      await rec.next('connect');
      assert.equal(socket.recovered, true);
      await rec.next('note');
      await b.publish({ tenant: 'acme', rooms: [`user:${user}`], namespace: '/', event: 'note', data: { n: 2 } });
      await rec.next('note');
      assert.deepEqual(received(rec, 'note'), [{ n: 0 }, { n: 1 }, { n: 2 }]);
    } finally {
      closeAll(socket);
    }
  });
});
