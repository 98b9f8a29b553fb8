// The notification inbox with the seeds' own vocabularies, as their clients speak them with
// socket.io-client, against the shipped configurations: seed 000's get_notification_counts,
// mark_notification_read and dismiss_notification with the events its other tabs receive;
// seed 002's notification_read on "/ws/notifications". Each on the SQLite file that the
// configuration names (created in the server's working directory on first start), then on
// the machine's PostgreSQL (a database made for the run with the npm `pg` client, dropped
// after; ROOMCAST_INBOX__DATABASE points the shipped configuration at it, as an operator
// would).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, afterEach, before, describe, test } from 'node:test';

import pg from 'pg';
import { io } from 'socket.io-client';

import { closeAll, closeTracked, connectSio, mint, record, startRoomcast } from './harness.mjs';

const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/postgres';

/** A fresh PostgreSQL database: { url, drop() }, or { absent } when none answers. */
async function postgresDatabase() {
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
  describe(`seed 000 notifications (${db.name})`, { skip: db.skip }, () => {
    let server;
    before(async () => {
      server = await startRoomcast({ configFile: 'examples/seeds/seed-000.toml', env: db.env });
    });
    afterEach(closeTracked);
    after(async () => {
      await server?.stop();
    });

    /** The seed's client (its WebSocketClient's options), connected with a token. */
    function tab(sub) {
      const socket = io(server.url, {
        transports: ['websocket', 'polling'],
        upgrade: true,
        auth: { token: mint(server.secret, { sub, tenant_ids: [1] }) },
        reconnection: false,
      });
      return { socket, rec: record(socket, `seed-000 user ${sub}`) };
    }

    /** What the web app does: one notification for `user`; its id. */
    async function notify(user, fields = {}) {
      const res = await server.api('POST', '/api/inbox/notifications', {
        tenant: 'odoo-platform',
        user,
        title: 'New Tenant Created',
        message: "Your tenant 'My Company' has been successfully created.",
        type: 'success',
        priority: 'medium',
        action_url: '/tenant/mycompany',
        action_label: 'Access Tenant',
        metadata: { tenant_name: 'My Company' },
        ...fields,
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body.ids[0];
    }

    test('counts, read and dismiss answered from the inbox, other tabs told', async () => {
      const first = tab('123');
      const second = tab('123');
      const stranger = tab('124');
      try {
        await Promise.all([first, second, stranger].map((t) => t.rec.next('connect')));
        const id = await notify('123', { priority: 'high' });
        const [created] = await first.rec.next('new_notification');
        assert.deepEqual(Object.keys(created).sort(), [
          'action_label', 'action_url', 'created_at', 'data', 'dismissed_at', 'id', 'is_dismissed',
          'is_read', 'message', 'metadata', 'priority', 'read_at', 'title', 'type',
        ]);
        assert.equal(created.id, id);
        assert.equal(created.is_read, false);
        assert.equal(created.metadata.tenant_name, 'My Company');
        assert.match(created.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        await second.rec.next('new_notification');

        first.socket.emit('get_notification_counts');
        assert.deepEqual(await first.rec.next('notification_counts'), [
          { total: 1, unread: 1, urgent: 1 },
        ]);

        first.socket.emit('mark_notification_read', { notification_id: id });
        assert.deepEqual(await first.rec.next('notification_action_completed'), [
          { action: 'read', notification_id: id, success: true },
        ]);
        assert.deepEqual(await second.rec.next('notification_read'), [{ notification_id: id }]);

        // Another user's notification: refused, and nothing changes.
        stranger.socket.emit('dismiss_notification', { notification_id: id });
        const [refused] = await stranger.rec.next('notification_action_completed');
        assert.equal(refused.success, false);
        assert.equal(refused.action, 'dismiss');

        second.socket.emit('dismiss_notification', { notification_id: id });
        assert.deepEqual(await second.rec.next('notification_action_completed'), [
          { action: 'dismiss', notification_id: id, success: true },
        ]);
        assert.deepEqual(await first.rec.next('notification_dismissed'), [{ notification_id: id }]);

        // Two more, then the web app's mark-all: every tab is told the count.
        await notify('123');
        await notify('123');
        const res = await server.api(
          'POST',
          '/api/inbox/users/123/read-all?tenant=odoo-platform',
        );
        assert.deepEqual(res.body, { count: 2 });
        for (const t of [first, second]) {
          assert.deepEqual(await t.rec.next('all_notifications_read'), [{ count: 2 }]);
        }
        first.socket.emit('get_notification_counts');
        assert.deepEqual(await first.rec.next('notification_counts'), [
          { total: 2, unread: 0, urgent: 0 },
        ]);
      } finally {
        for (const t of [first, second, stranger]) t.socket.close();
      }
    });

    test('two tabs marking one notification at once change it once', async () => {
      const first = tab('321');
      const second = tab('321');
      try {
        await Promise.all([first, second].map((t) => t.rec.next('connect')));
        const id = await notify('321');
        await Promise.all([first, second].map((t) => t.rec.next('new_notification')));
        for (const t of [first, second]) {
          t.socket.emit('mark_notification_read', { notification_id: id });
        }
        for (const t of [first, second]) {
          const [done] = await t.rec.next('notification_action_completed');
          assert.deepEqual(done, { action: 'read', notification_id: id, success: true });
        }
        // One change, so one tab hears of it; a counts round trip orders what came before.
        for (const t of [first, second]) {
          t.socket.emit('get_notification_counts');
          assert.deepEqual(await t.rec.next('notification_counts'), [
            { total: 1, unread: 0, urgent: 0 },
          ]);
        }
        const told = [first, second].map((t) => t.rec.all('notification_read').length);
        assert.deepEqual(told.sort(), [0, 1]);
      } finally {
        first.socket.close();
        second.socket.close();
      }
    });
  });

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
