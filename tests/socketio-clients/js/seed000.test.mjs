// Seed 000 (an Odoo multi-tenant system) on roomcast by configuration alone: the shipped
// examples/seeds/seed-000.toml, and a client shaped like the seed's `WebSocketClient` class
// (socket.io-client, transports ['websocket', 'polling'], upgrade on), which only adds the
// token as `auth: { token }`.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';

import { io } from 'socket.io-client';

import { closeTracked, mint, record, startRoomcast } from './harness.mjs';

let server;
before(async () => {
  server = await startRoomcast({ configFile: 'examples/seeds/seed-000.toml' });
});
afterEach(closeTracked);
after(async () => {
  await server?.stop();
});

/** The seed's client, connected with a token. */
class WebSocketClient {
  constructor(token) {
    this.socket = io(server.url, {
      transports: ['websocket', 'polling'],
      upgrade: true,
      auth: { token },
      reconnection: false,
    });
    this.rec = record(this.socket, 'seed-000 client');
  }
  close() {
    this.socket.close();
  }
}

describe('seed 000 configuration', () => {
  test('subscription replies and tenant events reach the seed client', async () => {
    // Odoo tenants 1 and 2 are this user's; the Roomcast tenant is the configuration's default.
    const client = new WebSocketClient(mint(server.secret, { sub: '123', tenant_ids: [1, 2] }));
    const other = new WebSocketClient(mint(server.secret, { sub: '124', tenant_ids: [3] }));
    try {
      await client.rec.next('connect');
      const [greeting] = await client.rec.next('connected');
      assert.equal(greeting.user_id, '123');
      assert.equal(greeting.message, 'Connected successfully');
      await other.rec.next('connect');

      client.socket.emit('subscribe_tenant_updates', { tenant_id: 1 });
      const [subscribed] = await client.rec.next('subscribed');
      assert.deepEqual(subscribed, { tenant_id: 1, message: 'Subscribed to tenant 1 updates' });

      // A tenant not in the token is refused with the seed's error event.
      other.socket.emit('subscribe_tenant_updates', { tenant_id: 1 });
      const [refused] = await other.rec.next('error');
      assert.equal(typeof refused.message, 'string');

      const update = {
        tenant: { id: 1, name: 'My Company', status: 'suspended' },
        message: "Tenant 'My Company' status changed to suspended",
      };
      const answer = await server.publish({
        tenant: 'odoo-platform',
        rooms: ['tenant:1'],
        event: 'tenant_status_changed',
        data: update,
      });
      assert.equal(answer.delivered, 1);
      assert.deepEqual(await client.rec.next('tenant_status_changed'), [update]);

      client.socket.emit('unsubscribe_tenant_updates', { tenant_id: 1 });
      const [unsubscribed] = await client.rec.next('unsubscribed');
      assert.equal(unsubscribed.tenant_id, 1);
    } finally {
      client.close();
      other.close();
    }
  });
});
