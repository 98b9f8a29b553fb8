// Tenant isolation: a client of tenant globex never receives what is meant for acme, even
// with the same user id and the same room names.
//
// "Never" is checked without waiting for time to pass: after the acme event, an event for
// the globex client is published (or relayed) by the same path; a connection's events are
// delivered in order, so once the globex client has the later one, an acme event that had
// leaked to it would already be there.

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

describe('tenant isolation', () => {
  test("a globex client never receives acme's publish to the same room name", async () => {
    const user = unique('7');
    const acme = await connectedSio(server, server.token(user, 'acme'), {
      transports: ['websocket'],
      name: 'acme client',
    });
    const globex = await connectedSio(server, server.token(user, 'globex'), {
      transports: ['websocket'],
      name: 'globex client',
    });
    const globexNative = await connectNative(server, server.token(user, 'globex'));
    try {
      assert.equal(globex.greeting.tenant_id, 'globex');
      const secret = { order_id: 42, status: 'shipped', tenant: 'acme' };
      const res = await server.publish({
        tenant: 'acme',
        rooms: [`user:${user}`],
        namespace: '/',
        event: 'order:status_updated',
        data: secret,
      });
      assert.equal(res.delivered, 1, 'only the acme connection is in acme user:<id>');
      assert.deepEqual((await acme.rec.next('order:status_updated'))[0], secret);

      const res2 = await server.publish({
        tenant: 'globex',
        rooms: [`user:${user}`],
        namespace: '/',
        event: 'barrier',
        data: { tenant: 'globex' },
      });
      assert.equal(res2.delivered, 2);
      await globex.rec.next('barrier');
      await globexNative.rec.next('event');
      assert.deepEqual(globex.rec.all('order:status_updated'), []);
      assert.equal(globexNative.rec.all('event').length, 1, 'the native globex client got more');
      // ...and acme did not get globex's.
      await emitWithAck(acme.socket, 'ping');
      assert.deepEqual(acme.rec.all('barrier'), []);
    } finally {
      closeAll(acme.socket, globex.socket, globexNative.ws);
    }
  });

  test("a globex client never receives acme's tenant broadcast", async () => {
    const acme = await connectedSio(server, server.token(unique('a'), 'acme'), {
      transports: ['polling'],
      name: 'acme client',
    });
    const globex = await connectedSio(server, server.token(unique('g'), 'globex'), {
      transports: ['polling'],
      name: 'globex client',
    });
    try {
      await server.publish({
        tenant: 'acme',
        broadcast: true,
        namespace: '/',
        event: 'tenant:notice',
        data: { tenant: 'acme' },
      });
      await acme.rec.next('tenant:notice');
      await server.publish({
        tenant: 'globex',
        broadcast: true,
        namespace: '/',
        event: 'barrier',
        data: {},
      });
      await globex.rec.next('barrier');
      assert.deepEqual(globex.rec.all('tenant:notice'), []);
    } finally {
      closeAll(acme.socket, globex.socket);
    }
  });

  test("a globex client in a room of the same name never receives acme's relay", async () => {
    const roomId = unique('shared');
    const acmeA = await connectedSio(server, server.token(unique('a'), 'acme'), {
      transports: ['websocket'],
      name: 'acme sender',
    });
    const acmeB = await connectedSio(server, server.token(unique('b'), 'acme'), {
      transports: ['websocket'],
      name: 'acme receiver',
    });
    const globex = await connectedSio(server, server.token(unique('g'), 'globex'), {
      transports: ['websocket'],
      name: 'globex client',
    });
    try {
      for (const c of [acmeA, acmeB, globex]) await emitWithAck(c.socket, 'join_room', { roomId });
      await emitWithAck(acmeA.socket, 'typing', { roomId, from: 'acme' });
      assert.deepEqual((await acmeB.rec.next('typing'))[0], { roomId, from: 'acme' });

      // Barrier: globex's own room custom:<roomId>, published to after the relay.
      const res = await server.publish({
        tenant: 'globex',
        rooms: [`custom:${roomId}`],
        namespace: '/',
        event: 'barrier',
        data: {},
      });
      assert.equal(res.delivered, 1);
      await globex.rec.next('barrier');
      assert.deepEqual(globex.rec.all('typing'), []);

      // And the other way round: globex's relay stays in globex (it has no one else there).
      await emitWithAck(globex.socket, 'typing', { roomId, from: 'globex' });
      await emitWithAck(acmeA.socket, 'typing', { roomId, from: 'acme-2' });
      assert.deepEqual((await acmeB.rec.next('typing'))[0], { roomId, from: 'acme-2' });
      assert.deepEqual(acmeB.rec.all('typing').map((a) => a[0].from), ['acme', 'acme-2']);
    } finally {
      closeAll(acmeA.socket, acmeB.socket, globex.socket);
    }
  });
});
