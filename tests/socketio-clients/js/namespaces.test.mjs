// Namespaces: "/custom" is connected to on its own, also multiplexed with "/" over one
// Engine.IO session; a namespace the server does not serve gets CONNECT_ERROR.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  closeAll,
  connectSio,
  emitWithAck,
  newManager,
  record,
  unique,
  useRoomcast,
} from './harness.mjs';

const server = useRoomcast();

describe('namespaces', () => {
  for (const transports of [['websocket'], ['polling']]) {
    test(`"/custom" connects on its own (${transports})`, async () => {
      const user = unique('u');
      const { socket, rec } = connectSio(server, '/custom', server.token(user, 'acme'), {
        transports,
      });
      try {
        await rec.next('connect');
        assert.equal(socket.connected, true);
        assert.equal(socket.nsp, '/custom');
        // Its rooms are auto-joined from rooms.auto_join: a push to user:<id> arrives.
        const data = { ns: '/custom' };
        const res = await server.publish({
          tenant: 'acme',
          rooms: [`user:${user}`],
          namespace: '/custom',
          event: 'custom:event',
          data,
        });
        assert.equal(res.delivered, 1);
        assert.deepEqual((await rec.next('custom:event'))[0], data);
        // "/"'s greeting is "/"'s alone.
        assert.deepEqual(rec.all('connected'), []);
      } finally {
        closeAll(socket);
      }
    });
  }

  test('"/" and "/custom" multiplexed over one Engine.IO session', async () => {
    const user = unique('u');
    const token = server.token(user, 'acme');
    const manager = newManager(server, {
      transports: ['websocket'],
      reconnection: false,
      autoConnect: false,
    });
    const main = manager.socket('/', { auth: { token } });
    const custom = manager.socket('/custom', { auth: { token } });
    const mainRec = record(main, '/ socket');
    const customRec = record(custom, '/custom socket');
    try {
      main.connect();
      custom.connect();
      await mainRec.next('connect');
      await customRec.next('connect');
      const [greeting] = await mainRec.next('connected');
      assert.equal(greeting.socketId, main.id);
      assert.notEqual(main.id, custom.id, 'each namespace connection has its own socket id');

      // Events keep to their namespace: a publish to "/custom" reaches only the "/custom"
      // socket, a publish to "/" only the "/" one, though both sockets are in user:<id>.
      await server.publish({
        tenant: 'acme',
        rooms: [`user:${user}`],
        namespace: '/custom',
        event: 'where',
        data: { ns: '/custom' },
      });
      await server.publish({
        tenant: 'acme',
        rooms: [`user:${user}`],
        namespace: '/',
        event: 'where',
        data: { ns: '/' },
      });
      assert.deepEqual((await customRec.next('where'))[0], { ns: '/custom' });
      assert.deepEqual((await mainRec.next('where'))[0], { ns: '/' });
      // "/custom" has no routes: its `ping` is ignored, and the ack it asks for is never
      // answered. The session's packets are handled in order, so once "/" has its ack for
      // the `ping` sent after, anything "/custom"'s could have caused has arrived.
      let unroutedAcked = false;
      custom.emit('ping', () => {
        unroutedAcked = true;
      });
      const [ack] = await emitWithAck(main, 'ping');
      assert.equal(typeof ack.timestamp, 'string');
      assert.equal(unroutedAcked, false, 'an event without a route was acked');
      assert.deepEqual(customRec.all('pong'), []);
      assert.equal(custom.connected, true);
      // Each socket got only the publish to its own namespace.
      assert.deepEqual(customRec.all('where'), [[{ ns: '/custom' }]]);
      assert.deepEqual(mainRec.all('where'), [[{ ns: '/' }]]);

      // Leaving one namespace keeps the other connected over the same session.
      custom.disconnect();
      const [ack2] = await emitWithAck(main, 'ping');
      assert.equal(typeof ack2.timestamp, 'string');
      assert.equal(main.connected, true);
    } finally {
      closeAll(main, custom);
      manager.engine?.close();
    }
  });

  for (const transports of [['websocket'], ['polling']]) {
    test(`an unknown namespace gets connect_error (${transports})`, async () => {
      const { socket, rec } = connectSio(server, '/nope', server.token(unique('u'), 'acme'), {
        transports,
      });
      try {
        const [err] = await rec.next('connect_error');
        assert.equal(err.message, 'Invalid namespace');
        assert.equal(socket.active, false, 'refused with a CONNECT_ERROR packet');
        assert.deepEqual(rec.all('connect'), []);
      } finally {
        closeAll(socket);
      }
    });
  }
});
