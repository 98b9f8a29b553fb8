// One API publish reaches both kinds of client: a socket.io-client socket and a native
// WebSocket client (/ws) of the same user, from the same single POST /api/publish.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  closeAll,
  connectedSio,
  connectNative,
  emitWithAck,
  unique,
  useRoomcast,
} from './harness.mjs';

const server = useRoomcast();

describe('API publish', () => {
  for (const transports of [['websocket'], ['polling']]) {
    test(`one publish reaches a Socket.IO client (${transports}) and a native client`, async () => {
      const user = unique('7');
      const token = server.token(user, 'acme');
      const sio = await connectedSio(server, token, { transports });
      const native = await connectNative(server, token);
      try {
        assert.equal(native.welcome.user, user);
        assert.equal(native.welcome.tenant, 'acme');
        assert.ok(native.welcome.rooms.includes(`user:${user}`));

        const data = { order_id: 42, status: 'shipped', items: [1, 2], note: 'é ✓' };
        const res = await server.publish({
          tenant: 'acme',
          rooms: [`user:${user}`],
          namespace: '/',
          event: 'order:status_updated',
          data,
        });
        assert.equal(res.ok, true);
        assert.equal(res.delivered, 2, 'one event per connection');

        const args = await sio.rec.next('order:status_updated');
        assert.deepEqual(args[0], data);
        const [event] = await native.rec.next('event');
        assert.equal(event.room, `user:${user}`);
        assert.equal(event.event, 'order:status_updated');
        assert.deepEqual(event.data, data);
        assert.equal(typeof event.offset, 'number');
      } finally {
        closeAll(sio.socket, native.ws);
      }
    });
  }

  test('publishes arrive in order, once each', async () => {
    const user = unique('7');
    const sio = await connectedSio(server, server.token(user, 'acme'), { transports: ['websocket'] });
    try {
      for (let n = 1; n <= 20; n++) {
        await server.publish({
          tenant: 'acme',
          rooms: [`user:${user}`],
          namespace: '/',
          event: 'seq',
          data: { n },
        });
      }
      for (let n = 1; n <= 20; n++) assert.deepEqual((await sio.rec.next('seq'))[0], { n });
      // A barrier publish: nothing was duplicated before it.
      await server.publish({ tenant: 'acme', rooms: [`user:${user}`], event: 'barrier', data: {} });
      await sio.rec.next('barrier');
      assert.equal(sio.rec.all('seq').length, 20);
    } finally {
      closeAll(sio.socket);
    }
  });

  test('a tenant broadcast and a users target reach the Socket.IO client', async () => {
    const user = unique('7');
    const sio = await connectedSio(server, server.token(user, 'acme'), { transports: ['websocket'] });
    try {
      await server.publish({
        tenant: 'acme',
        broadcast: true,
        namespace: '/',
        event: 'tenant:notice',
        data: { all: true },
      });
      assert.deepEqual((await sio.rec.next('tenant:notice'))[0], { all: true });
      const res = await server.publish({
        tenant: 'acme',
        users: [user],
        namespace: '/',
        event: 'user:notice',
        data: { only: user },
      });
      assert.equal(res.delivered, 1);
      assert.deepEqual((await sio.rec.next('user:notice'))[0], { only: user });
    } finally {
      closeAll(sio.socket);
    }
  });

  test('a publish to a room joined through join_room reaches the socket', async () => {
    const roomId = unique('order');
    const sio = await connectedSio(server, server.token(unique('7'), 'acme'), {
      transports: ['websocket'],
    });
    try {
      sio.socket.emit('join_room', { roomId });
      await sio.rec.next('room_joined');
      const res = await server.publish({
        tenant: 'acme',
        rooms: [`custom:${roomId}`],
        namespace: '/',
        event: 'room:update',
        data: { roomId },
      });
      assert.equal(res.delivered, 1);
      assert.deepEqual((await sio.rec.next('room:update'))[0], { roomId });
    } finally {
      closeAll(sio.socket);
    }
  });

  test('a Socket.IO relay reaches native members of the room too, and is counted', async () => {
    const roomId = unique('r');
    const sender = await connectedSio(server, server.token(unique('s'), 'acme'), {
      transports: ['websocket'],
    });
    const native = await connectNative(server, server.token(unique('n'), 'acme'));
    try {
      const publishes = async () => {
        const text = await (await fetch(`http://${server.addr}/metrics`)).text();
        const line = text.split('\n').find((l) => l.startsWith('roomcast_publishes_total '));
        return Number(line.split(' ')[1]);
      };
      native.ws.send(JSON.stringify({ type: 'subscribe', id: 1, room: `custom:${roomId}` }));
      assert.equal((await native.rec.next('reply'))[0].ok, true);
      await emitWithAck(sender.socket, 'join_room', { roomId });
      const before = await publishes();
      await emitWithAck(sender.socket, 'typing', { roomId, isTyping: true });
      const [event] = await native.rec.next('event');
      assert.equal(event.room, `custom:${roomId}`);
      assert.equal(event.event, 'typing');
      assert.deepEqual(event.data, { roomId, isTyping: true });
      assert.equal(await publishes(), before + 1, 'the relay is counted as a publish');
      assert.deepEqual(sender.rec.all('typing'), [], 'the sender got its own relay');
    } finally {
      closeAll(sender.socket, native.ws);
    }
  });
});
