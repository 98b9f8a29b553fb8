// A server-side disconnect (POST /api/disconnect): the server sends a Socket.IO DISCONNECT,
// which socket.io-client reports as "io server disconnect" and, as the protocol intends, does
// not follow with an automatic reconnection; the application's socket.connect() then
// connects again, with a new socket id.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  closeAll,
  connectedSio,
  connectNative,
  emitWithAck,
  newManager,
  record,
  unique,
  useRoomcast,
} from './harness.mjs';

const server = useRoomcast();

async function disconnectUser(user, expected) {
  const res = await server.api('POST', '/api/disconnect', { tenant: 'acme', user });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  if (expected !== undefined) assert.equal(res.body.disconnected, expected);
  return res.body;
}

describe('server-side disconnect and reconnection', () => {
  for (const transports of [['websocket'], ['polling']]) {
    test(`disconnect is "io server disconnect"; socket.connect() connects again (${transports})`, async () => {
      const user = unique('dc');
      // Reconnection on (the default): the client must still not reconnect by itself.
      const { socket, rec, greeting } = await connectedSio(server, server.token(user, 'acme'), {
        transports,
        reconnection: true,
      });
      try {
        const firstId = socket.id;
        assert.equal(greeting.socketId, firstId);

        await disconnectUser(user, 1);
        const [reason] = await rec.next('disconnect');
        assert.equal(reason, 'io server disconnect');
        assert.equal(socket.connected, false);
        assert.equal(socket.active, false, 'the client would reconnect on its own');
        assert.equal(rec.all('connect').length, 1);

        socket.connect();
        await rec.next('connect');
        const [again] = await rec.next('connected');
        assert.equal(socket.connected, true);
        assert.notEqual(socket.id, firstId, 'a new connection has a new socket id');
        assert.deepEqual(again, { user_id: user, tenant_id: 'acme', socketId: socket.id });

        // The new connection is served like the first: routes and publishes reach it.
        const [ack] = await emitWithAck(socket, 'ping');
        assert.equal(typeof ack.timestamp, 'string');
        const data = { back: true };
        const res = await server.publish({
          tenant: 'acme',
          rooms: [`user:${user}`],
          namespace: '/',
          event: 'after:reconnect',
          data,
        });
        assert.equal(res.delivered, 1, 'the old connection is gone from the rooms');
        assert.deepEqual((await rec.next('after:reconnect'))[0], data);
      } finally {
        closeAll(socket);
      }
    });
  }

  test('one disconnect call reaches a Socket.IO client and a native client of the user', async () => {
    const user = unique('dc');
    const token = server.token(user, 'acme');
    const sio = await connectedSio(server, token, { transports: ['websocket'] });
    const native = await connectNative(server, token);
    try {
      await disconnectUser(user, 2);
      const [reason] = await sio.rec.next('disconnect');
      assert.equal(reason, 'io server disconnect');
      const [msg] = await native.rec.next('disconnect');
      assert.equal(msg.code, 4004);
      const [code] = await native.rec.next('close');
      assert.equal(code, 4004);
    } finally {
      closeAll(sio.socket, native.ws);
    }
  });

  test('every namespace of a multiplexed client is disconnected', async () => {
    const user = unique('dc');
    const token = server.token(user, 'acme');
    const manager = newManager(server, {
      transports: ['websocket'],
      autoConnect: false,
    });
    const main = manager.socket('/', { auth: { token } });
    const custom = manager.socket('/custom', { auth: { token } });
    const mainRec = record(main, '/ socket');
    const customRec = record(custom, '/custom socket');
    try {
      main.connect();
      custom.connect();
      await mainRec.next('connected');
      await customRec.next('connect');
      await disconnectUser(user);
      assert.equal((await mainRec.next('disconnect'))[0], 'io server disconnect');
      assert.equal((await customRec.next('disconnect'))[0], 'io server disconnect');
      assert.equal(main.active, false);
      assert.equal(custom.active, false);
    } finally {
      closeAll(main, custom);
      manager.engine?.close();
    }
  });
});
