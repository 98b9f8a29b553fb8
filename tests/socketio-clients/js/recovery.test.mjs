// Connection state recovery with socket.io-client 4.8, unchanged: a client whose connection
// drops and comes back within `max_disconnection_ms` gets the same socket id,
// `socket.recovered` true, and every broadcast it missed, in order and once, before anything
// published after it is back. Over WebSocket and long-polling, for a client that had received
// events and for one that had received nothing yet; past the bound it gets a new session.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { closeAll, emitWithAck, newManager, Recorder, startRoomcast, unique } from './harness.mjs';
import { drop, received, recoverable, recoveryConfig } from './recovery.mjs';

async function publishTo(server, room, event, data, expectDelivered, namespace = '/') {
  const res = await server.publish({ tenant: 'acme', rooms: [room], namespace, event, data });
  if (expectDelivered !== undefined) assert.equal(res.delivered, expectDelivered, JSON.stringify(res));
  return res;
}

/** Publishes `probe` events to `room` until one reaches nobody: the dropped socket has left
 * the server (the ones before may have reached its queue, not the client: it misses them
 * all). */
async function waitGone(server, room) {
  for (let i = 0; i < 50; i += 1) {
    const res = await publishTo(server, room, 'probe', { i });
    if (res.delivered === 0) return;
    await sleep(50);
  }
  throw new Error('the dropped socket still received publishes');
}

describe('connection state recovery (socket.io-client 4.8)', () => {
  let server;
  before(async () => {
    server = await startRoomcast({ configText: recoveryConfig(60_000), name: 'roomcast-recovery' });
  });
  after(async () => {
    await server?.stop();
  });

  for (const transports of [['websocket'], ['polling']]) {
    test(`missed events come back in order, once, with the same id (${transports})`, async () => {
      const user = unique('rec');
      const { socket, rec } = recoverable(server, user, transports);
      try {
        await rec.next('connect');
        await rec.next('connected');
        const firstId = socket.id;
        assert.equal(socket.recovered, false);
        const room = `custom:${unique('r')}`;
        const [joined] = await emitWithAck(socket, 'join_room', { roomId: room.slice(7) });
        assert.equal(joined.room, room);

        await publishTo(server, room, 'tick', { n: 0 }, 1);
        const [first, offset] = await rec.next('tick');
        assert.deepEqual(first, { n: 0 });
        assert.equal(typeof offset, 'string', 'a broadcast carries its offset last');

        await drop(socket, rec);
        await waitGone(server, room);
        await publishTo(server, room, 'tick', { n: 1 }, 0);
        await publishTo(server, room, 'tick', { n: 2 }, 0);
        await publishTo(server, `user:${user}`, 'note', { to: 'me' }, 0);
        // Not for it: another room of the tenant.
        await publishTo(server, `custom:${unique('other')}`, 'tick', { n: -1 }, 0);

        socket.connect();
        await rec.next('connect');
        assert.equal(socket.recovered, true);
        assert.equal(socket.id, firstId);
        await rec.next('tick');
        await rec.next('tick');
        await rec.next('note');
        // Live again, in its rooms: what comes now follows what it missed.
        await publishTo(server, room, 'tick', { n: 3 }, 1);
        await rec.next('tick');
        assert.deepEqual(received(rec, 'tick'), [{ n: 0 }, { n: 1 }, { n: 2 }, { n: 3 }]);
        assert.deepEqual(received(rec, 'note'), [{ to: 'me' }]);
        const offsets = rec.all('tick').map((args) => args[1]);
        assert.equal(new Set(offsets).size, 4, `offsets repeat: ${offsets}`);
        // The greeting comes again, as a connection handler runs again in socket.io.
        assert.equal(rec.all('connected').length, 2);
      } finally {
        closeAll(socket);
      }
    });
  }

  test('a client that had received nothing yet recovers too', async () => {
    const user = unique('quiet');
    const { socket, rec } = recoverable(server, user, ['websocket']);
    try {
      await rec.next('connect');
      await rec.next('connected');
      const firstId = socket.id;
      await drop(socket, rec);
      await waitGone(server, `user:${user}`);
      await publishTo(server, `user:${user}`, 'note', { first: true }, 0);
      socket.connect();
      await rec.next('connect');
      assert.equal(socket.recovered, true);
      assert.equal(socket.id, firstId);
      const [note] = await rec.next('note');
      assert.deepEqual(note, { first: true });
    } finally {
      closeAll(socket);
    }
  });

  test('two namespaces of one connection recover together', async () => {
    const user = unique('two');
    const manager = newManager(server, { reconnection: false, transports: ['websocket'] });
    const auth = { token: server.token(user, 'acme') };
    const sockets = ['/', '/custom'].map((ns) => {
      const socket = manager.socket(ns, { auth });
      const rec = new Recorder(`${user} ${ns}`, ['connect_error']);
      socket.onAny((event, ...args) => rec.push(event, args));
      for (const event of ['connect', 'connect_error', 'disconnect']) {
        socket.on(event, (...args) => rec.push(event, args));
      }
      socket.connect();
      return { ns, socket, rec };
    });
    try {
      for (const { rec } of sockets) await rec.next('connect');
      const ids = sockets.map(({ socket }) => socket.id);
      manager.engine.close();
      for (const { rec } of sockets) await rec.next('disconnect');
      for (const ns of ['/', '/custom']) {
        await publishTo(server, `user:${user}`, 'note', { ns }, undefined, ns);
      }
      // Both CONNECTs go out back to back on the new connection, each naming its session.
      for (const { socket } of sockets) socket.connect();
      for (const { ns, socket, rec } of sockets) {
        await rec.next('connect');
        assert.equal(socket.recovered, true, ns);
        const [note] = await rec.next('note');
        assert.deepEqual(note, { ns });
      }
      assert.deepEqual(
        sockets.map(({ socket }) => socket.id),
        ids,
      );
    } finally {
      for (const { socket } of sockets) closeAll(socket);
    }
  });

  test('a client that disconnects on purpose starts a new session', async () => {
    const user = unique('bye');
    const { socket, rec } = recoverable(server, user, ['websocket']);
    try {
      await rec.next('connect');
      const firstId = socket.id;
      socket.disconnect();
      await rec.next('disconnect');
      socket.connect();
      await rec.next('connect');
      assert.equal(socket.recovered, false);
      assert.notEqual(socket.id, firstId);
    } finally {
      closeAll(socket);
    }
  });
});

describe('connection state recovery past max_disconnection_ms', () => {
  let server;
  before(async () => {
    server = await startRoomcast({ configText: recoveryConfig(400), name: 'roomcast-recovery-short' });
  });
  after(async () => {
    await server?.stop();
  });

  test('a client back too late gets a new session', async () => {
    const user = unique('late');
    const { socket, rec } = recoverable(server, user, ['websocket']);
    try {
      await rec.next('connect');
      const firstId = socket.id;
      await drop(socket, rec);
      await waitGone(server, `user:${user}`);
      await publishTo(server, `user:${user}`, 'note', { lost: true }, 0);
      await sleep(1_000);
      socket.connect();
      await rec.next('connect');
      assert.equal(socket.recovered, false);
      assert.notEqual(socket.id, firstId);
      await rec.next('connected');
      await sleep(200);
      assert.deepEqual(received(rec, 'note'), []);
    } finally {
      closeAll(socket);
    }
  });
});
