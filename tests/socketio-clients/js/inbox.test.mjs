// The notification inbox with seed 002's vocabulary, as its client speaks it with
// socket.io-client, against the shipped configuration: notification:new and
// notification_read on "/ws/notifications". On the SQLite file that the configuration names
// (created in the server's working directory on first start), then on the machine's
// PostgreSQL (a database made for the run with the npm `pg` client, dropped after;
// ROOMCAST_INBOX__DATABASE points the shipped configuration at it, as an operator would).
// Seed 000's notifications, on both databases too, are in seed000.test.mjs.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';

import {
  closeAll,
  closeTracked,
  connectSio,
  mint,
  postgresDatabase,
  startRoomcast,
} from './harness.mjs';

const postgres = await postgresDatabase();
if (postgres.absent && process.env.CI === 'true') {
  test('PostgreSQL is present', () => {
    assert.fail(`${postgres.absent} (CI=true: an absent service is a failure)`);
  });
}
after(async () => {
  await postgres.drop?.();
});

const databases = [
  { name: 'SQLite', env: {} },
  { name: 'PostgreSQL', env: { ROOMCAST_INBOX__DATABASE: postgres.url }, skip: postgres.absent },
];

for (const db of databases) {
  describe(`seed 002 notifications (${db.name})`, { skip: db.skip }, () => {
    let server;
    before(async () => {
      server = await startRoomcast({ configFile: 'examples/seeds/seed-002.toml', env: db.env });
    });
    afterEach(closeTracked);
    after(async () => {
      await server?.stop();
    });

    for (const transports of [['websocket'], ['polling']]) {
      test(`notification:new and notification_read_confirmed on /ws/notifications (${transports})`, async () => {
        const user = transports[0] === 'websocket' ? '7' : '8';
        const token = mint(server.secret, { user_id: Number(user), tenant_id: 'acme' });
        const { socket, rec } = connectSio(server, '/ws/notifications', token, { transports });
        try {
          await rec.next('connect');
          const res = await server.api('POST', '/api/inbox/notifications', {
            tenant: 'acme',
            user,
            title: 'Invoice paid',
            message: 'Invoice 42 was paid',
            type: 'billing',
          });
          assert.equal(res.status, 201, JSON.stringify(res.body));
          const [id] = res.body.ids;
          const [created] = await rec.next('notification:new');
          assert.deepEqual(Object.keys(created).sort(), ['created_at', 'id', 'message', 'title', 'type']);
          assert.equal(created.id, id);
          assert.equal(created.title, 'Invoice paid');

          socket.emit('notification_read', { notification_id: created.id });
          assert.deepEqual(await rec.next('notification_read_confirmed'), [{ notification_id: id }]);
          const counts = await server.api('GET', `/api/inbox/users/${user}/counts?tenant=acme`);
          assert.deepEqual(counts.body, { total: 1, unread: 0, urgent: 0 });
          // Another tenant's user with the same id sees none of it.
          const other = await server.api('GET', `/api/inbox/users/${user}/counts?tenant=globex`);
          assert.deepEqual(other.body, { total: 0, unread: 0, urgent: 0 });
        } finally {
          closeAll(socket);
        }
      });
    }
  });
}
