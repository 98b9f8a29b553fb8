// Seed 000 (the Odoo Multi-Tenant System's real-time API) on roomcast by configuration alone:
// the shipped examples/seeds/seed-000.toml and the seed's client code, its "Complete Client
// Implementation Example" `WebSocketClient` class as the document gives it (seed000-page.mjs):
// io({ transports: ['websocket', 'polling'], upgrade: true }) to the page's own origin, its
// handlers, its subscriptions and counts on every connect, its own reconnection after "io
// server disconnect" and connect_error. The page connects with its Odoo session cookie (or, as
// the file's header allows, a token in `auth`), sending no Origin header but in the tests of
// origins (the server's own, and another site's).
//
// Every backend path the file's header names, each with a real client: the web app played by a
// node:http server (the connect proxy reading the session cookie, the RPC backend answering
// request_data_refresh, both checking the request's signature), the HTTP API's publishes of the
// tenant events and its disconnect, and the inbox API creating the notifications and marking
// them all read, with the page's own notification calls answered from the inbox: on the SQLite
// file the configuration names (in the server's working directory), then on the machine's
// PostgreSQL (a database made for the run, dropped after; ROOMCAST_INBOX__DATABASE points the
// shipped configuration at it, as an operator would), which under CI=true must be there.

import assert from 'node:assert/strict';
import { createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { after, afterEach, before, describe, test } from 'node:test';

import { mint, postgresDatabase, startRoomcast } from './harness.mjs';
import { closePages, openPage } from './seed000-page.mjs';

const TENANT = 'odoo-platform';

/** Odoo user and tenant ids (numbers, as the seed's), unique to each test. */
let lastId = randomInt(100_000, 1_000_000_000);
const newId = () => ++lastId;

const postgres = await postgresDatabase();
if (postgres.absent && process.env.CI === 'true') {
  test('PostgreSQL is present', () => {
    assert.fail(`${postgres.absent} (CI=true: an absent service is a failure)`);
  });
}
after(async () => {
  await postgres.drop?.();
});

/** Whether a request's signature is the HMAC-SHA256 of "<timestamp>.<body>" and recent. */
function verified(secret, headers, body) {
  const timestamp = headers['x-roomcast-timestamp'] ?? '';
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false;
  const expected = Buffer.from(
    'sha256=' + createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex'),
  );
  const given = Buffer.from(headers['x-roomcast-signature'] ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * The seed's web app: `/roomcast/connect` reads the Odoo session cookie (`sessions`: session id
 * -> { user, tenant_ids }, the users logged in), `/roomcast/rpc/data-refresh` answers
 * request_data_refresh for the caller, its notifications (those not dismissed) read from
 * Roomcast's inbox API (the web app keeps none of its own). `requests`: every request's path
 * and body, in order.
 */
async function startWebApp() {
  const secret = randomBytes(24).toString('hex');
  const app = { secret, sessions: new Map(), requests: [], roomcast: undefined };

  async function answer(path, posted) {
    if (path === '/roomcast/connect' && posted.transport === 'socketio') {
      const session = posted.cookies?.session_id;
      if (session === undefined) return [401, { error: { message: 'not logged in' } }];
      const login = app.sessions.get(session);
      if (login === undefined) return [403, { error: { message: 'session expired' } }];
      return [200, {
        user: String(login.user),
        claims: { tenant_ids: login.tenant_ids },
        expires_at: Math.floor(Date.now() / 1000) + 3600,
      }];
    }
    if (path === '/roomcast/rpc/data-refresh' && posted.event === 'request_data_refresh') {
      const [request] = posted.args;
      const timestamp = new Date().toISOString();
      if (request?.type === 'tenants') {
        const tenants = posted.claims.tenant_ids.map((id) => ({ id, name: `Company ${id}`, status: 'active' }));
        return [200, { type: 'tenants', data: { user: posted.user, tenants, force_refresh: request.force_refresh }, timestamp }];
      }
      if (request?.type === 'notifications') {
        const list = await app.roomcast.api('GET', `/api/inbox/users/${posted.user}/notifications?tenant=${TENANT}&dismissed=false`);
        const counts = await app.roomcast.api('GET', `/api/inbox/users/${posted.user}/counts?tenant=${TENANT}`);
        return [200, { type: 'notifications', data: { notifications: list.body.notifications, counts: counts.body }, timestamp }];
      }
      if (request?.type === 'admin_stats') {
        return [403, { error: { code: 'forbidden', message: 'administrators only' } }];
      }
      return [404, { error: { code: 'unknown_type', message: 'no such data' } }];
    }
    return [404, { error: { message: 'no such endpoint' } }];
  }

  const http = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks);
      let status;
      let json;
      if (verified(secret, req.headers, body)) {
        const posted = JSON.parse(body.toString('utf8'));
        app.requests.push({ path: req.url, posted });
        [status, json] = await answer(req.url, posted).catch((err) => [500, { error: err.message }]);
      } else {
        [status, json] = [401, { error: { message: 'bad signature' } }];
      }
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(json));
    });
  });
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  app.url = `http://127.0.0.1:${http.address().port}`;
  /** Logs a user in: the session cookie its browser sends. */
  app.login = (user, tenantIds, session = randomBytes(12).toString('hex')) => {
    app.sessions.set(session, { user, tenant_ids: tenantIds });
    return `frontend_lang=en_US; session_id=${session}`;
  };
  app.close = () => new Promise((resolve) => http.close(resolve));
  return app;
}

/** Roomcast with the shipped file and its web app, started before the calling describe's tests
 * (`env` on top, as an operator would set it); the pages the tests opened closed after each. */
function useSeed(env = {}) {
  const seed = {};
  before(async () => {
    seed.webApp = await startWebApp();
    const url = seed.webApp.url;
    seed.server = await startRoomcast({
      configFile: 'examples/seeds/seed-000.toml',
      env: {
        ROOMCAST_AUTH__CONNECT_PROXY__URL: `${url}/roomcast/connect`,
        ROOMCAST_AUTH__CONNECT_PROXY__SECRET: seed.webApp.secret,
        ROOMCAST_RPC__BACKENDS__ODOO__URL: `${url}/roomcast/rpc`,
        ROOMCAST_RPC__BACKENDS__ODOO__SECRET: seed.webApp.secret,
        ...env,
      },
    });
    seed.webApp.roomcast = seed.server;
  });
  afterEach(closePages);
  after(async () => {
    await seed.server?.stop();
    await seed.webApp?.close();
  });
  return seed;
}

/** The page's connection: `connect`, the greeting, a `subscribed` for each of its tenants and
 * the counts it asks for, as its onConnected() does on every connect; returns the greeting. */
async function connected(page, tenants) {
  await page.rec.next('connect');
  const [greeting] = await page.rec.next('connected');
  const subscribed = [];
  for (const _ of tenants) subscribed.push((await page.rec.next('subscribed'))[0]);
  assert.deepEqual(
    subscribed.map((s) => s.tenant_id).sort(),
    [...tenants].sort(),
  );
  await page.rec.next('notification_counts');
  return greeting;
}

/** POST /api/publish of a tenant event to `rooms` of namespace "/"; its delivered count. */
async function publish(server, rooms, event, data) {
  const answer = await server.publish({ tenant: TENANT, namespace: '/', rooms, event, data });
  return answer.delivered;
}

/** Whether a page got no more than `count` of `event`: a barrier published to its user after
 * them arrives first (one node: deliveries keep the publishes' order). */
async function heardNone(server, page, user, event, count = 0) {
  await publish(server, [`user:${user}`], 'barrier', 1);
  await page.rec.next('barrier');
  assert.equal(page.rec.all(event).length, count, event);
}

describe('seed 000 page', () => {
  const seed = useSeed();

  for (const transports of [undefined, ['polling']]) {
    const how = transports ? 'WebSocket blocked: polling' : "the class's transports";
    test(`the session cookie connects the page, which subscribes to its tenants and gets their events (${how})`, async () => {
      const { server, webApp } = seed;
      const [user, other] = [newId(), newId()];
      const [a, b, c] = [newId(), newId(), newId()];
      const page = openPage(server, { cookie: webApp.login(user, [a, b]), tenants: [a, b], transports });
      const outsider = openPage(server, { cookie: webApp.login(other, [c]), tenants: [c], transports, name: 'outsider' });

      const greeting = await connected(page, [a, b]);
      assert.deepEqual(Object.keys(greeting).sort(), ['message', 'timestamp', 'user_id']);
      assert.equal(greeting.user_id, String(user));
      assert.equal(greeting.message, 'Connected successfully');
      assert.match(greeting.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
      assert.deepEqual(page.rec.all('subscribed').map(([s]) => s).find((s) => s.tenant_id === a), {
        tenant_id: a,
        message: `Subscribed to tenant ${a} updates`,
      });
      assert.deepEqual(await page.ui.next('#notification-count'), [0]);
      assert.deepEqual(await page.ui.next('#urgent-count'), [0]);
      await connected(outsider, [c]);

      // The web app's publishes, with the seed's payloads.
      const updated = {
        tenant: { id: a, name: 'Updated Company', status: 'active' },
        message: "Tenant 'Updated Company' updated successfully",
      };
      assert.equal(await publish(server, [`tenant:${a}`], 'tenant_updated', updated), 1);
      assert.deepEqual(await page.rec.next('tenant_updated'), [updated]);
      assert.deepEqual(await page.ui.next('updateTenantInUI'), [updated.tenant]);

      const changed = {
        tenant: { id: b, name: 'My Company', status: 'suspended' },
        message: "Tenant 'My Company' status changed to suspended",
      };
      assert.equal(await publish(server, [`tenant:${b}`], 'tenant_status_changed', changed), 1);
      assert.deepEqual(await page.rec.next('tenant_status_changed'), [changed]);
      assert.deepEqual(await page.ui.next('handleTenantStatusChanged'), [changed]);

      const created = {
        tenant: { id: newId(), name: 'New Company', subdomain: 'newcompany', status: 'active' },
        message: "New tenant 'New Company' created successfully",
      };
      assert.equal(await publish(server, [`user:${user}`], 'tenant_created', created), 1);
      assert.deepEqual(await page.rec.next('tenant_created'), [created]);
      await page.ui.next('refreshTenantList');
      for (const event of ['tenant_updated', 'tenant_status_changed', 'tenant_created']) {
        await heardNone(server, outsider, other, event);
      }

      // Unsubscribed from a: its next update is not the page's.
      page.unsubscribeFromTenantUpdates(a);
      assert.deepEqual(await page.rec.next('unsubscribed'), [
        { tenant_id: a, message: `Unsubscribed from tenant ${a} updates` },
      ]);
      assert.equal(await publish(server, [`tenant:${a}`], 'tenant_updated', updated), 0);
      await heardNone(server, page, user, 'tenant_updated', 1);
    });
  }

  test("a tenant not the user's is refused with the seed's error event", async () => {
    const { server, webApp } = seed;
    const user = newId();
    const [mine, theirs] = [newId(), newId()];
    const page = openPage(server, { cookie: webApp.login(user, [mine]), tenants: [mine] });
    await connected(page, [mine]);

    page.subscribeToTenantUpdates(theirs);
    assert.deepEqual(await page.rec.next('error'), [
      { message: 'Request refused', error: 'room not allowed' },
    ]);
    assert.deepEqual(await page.ui.next('showErrorMessage'), ['Request refused']);
    await publish(server, [`tenant:${theirs}`], 'tenant_updated', { tenant: { id: theirs } });
    await heardNone(server, page, user, 'tenant_updated');
    assert.equal(page.rec.all('subscribed').length, 1);
  });

  test('data refreshes are answered by the web app, its refusals by the error event', async () => {
    const { server, webApp } = seed;
    const user = newId();
    const tenants = [newId(), newId()];
    const page = openPage(server, { cookie: webApp.login(user, tenants), tenants });
    await connected(page, tenants);

    // The page's refresh button: wsClient.refreshTenants(true).
    page.refreshTenants(true);
    const [refreshed] = await page.rec.next('data_refreshed');
    assert.deepEqual(Object.keys(refreshed).sort(), ['data', 'timestamp', 'type']);
    assert.equal(refreshed.type, 'tenants');
    assert.deepEqual(refreshed.data, {
      user: String(user),
      tenants: tenants.map((id) => ({ id, name: `Company ${id}`, status: 'active' })),
      force_refresh: true,
    });
    assert.deepEqual(await page.ui.next('updateTenantsList'), [refreshed.data]);
    // What the web app was posted: the page's event and arguments, its user and claims.
    const posted = webApp.requests.filter((r) => r.path === '/roomcast/rpc/data-refresh').at(-1).posted;
    assert.deepEqual(posted.args, [{ type: 'tenants', force_refresh: true }]);
    assert.equal(posted.user, String(user));
    assert.equal(posted.tenant, TENANT);
    assert.deepEqual(posted.claims, { tenant_ids: tenants });
    assert.equal(posted.session, page.socket.id);

    // 'admin_stats', a type the document lists, refused by the web app for this user.
    page.socket.emit('request_data_refresh', { type: 'admin_stats', force_refresh: true });
    assert.deepEqual(await page.rec.next('error'), [
      { message: 'Request refused', error: 'administrators only' },
    ]);
    assert.deepEqual(await page.ui.next('showErrorMessage'), ['Request refused']);
  });

  test('a page with a token connects without asking the web app', async () => {
    const { server, webApp } = seed;
    const user = newId();
    const tenants = [newId()];
    const asked = webApp.requests.length;
    const token = mint(server.secret, { sub: String(user), tenant_ids: tenants });
    const page = openPage(server, { token, tenants });
    const greeting = await connected(page, tenants);
    assert.equal(greeting.user_id, String(user));
    assert.equal(webApp.requests.length, asked, 'the connect proxy was asked');

    page.refreshTenants();
    const [refreshed] = await page.rec.next('data_refreshed');
    assert.equal(refreshed.data.user, String(user));
    assert.equal(refreshed.data.force_refresh, false);
    assert.deepEqual(refreshed.data.tenants.map((t) => t.id), tenants);
  });

  test("a page without a valid session is refused; the class's own retry connects once it is valid", async () => {
    const { server, webApp } = seed;
    const anonymous = openPage(server, { name: 'anonymous' });
    const [missing] = await anonymous.rec.next('connect_error');
    assert.equal(missing.message, 'authentication required');
    anonymous.close();

    // Another site's page, with the user's cookie: refused before the web app is asked.
    const user = newId();
    const tenants = [newId()];
    const cookie = webApp.login(user, tenants);
    const foreign = openPage(server, { cookie, tenants, origin: 'https://elsewhere.example', name: 'foreign' });
    const [foreignError] = await foreign.rec.next('connect_error');
    assert.equal(foreignError.message, 'origin not allowed');
    foreign.close();

    // A session the web app does not know (yet): refused with its message; the class retries
    // after its delay, and the user has logged in meanwhile.
    const session = randomBytes(12).toString('hex');
    const page = openPage(server, { cookie: `session_id=${session}`, tenants });
    const [expired] = await page.rec.next('connect_error');
    assert.equal(expired.message, 'session expired');
    assert.equal(page.reconnectAttempts, 1);
    webApp.login(user, tenants, session);
    const greeting = await connected(page, tenants);
    assert.equal(greeting.user_id, String(user));
    assert.equal(page.reconnectAttempts, 0);
  });

  // The file's header has Roomcast served on the web app's origin, so that the page's cookie
  // connects it with no CORS; a browser sends that Origin with the handshake.
  test("a page on the gateway's own origin connects with its session cookie", async () => {
    const { server, webApp } = seed;
    const user = newId();
    const tenants = [newId()];
    const page = openPage(server, { cookie: webApp.login(user, tenants), tenants, origin: server.url });
    const greeting = await connected(page, tenants);
    assert.equal(greeting.user_id, String(user));
  });

  test('the web app ends the sessions: the page reconnects by itself ("io server disconnect") and subscribes again', async () => {
    const { server, webApp } = seed;
    const user = newId();
    const tenants = [newId()];
    const page = openPage(server, { cookie: webApp.login(user, tenants), tenants });
    await connected(page, tenants);
    const firstId = page.socket.id;

    const res = await server.api('POST', '/api/disconnect', { tenant: TENANT, user: String(user) });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.disconnected, 1);
    assert.equal((await page.rec.next('disconnect'))[0], 'io server disconnect');
    assert.deepEqual(await page.ui.next('showConnectionStatus'), [false]);
    assert.equal(page.reconnectAttempts, 1, "the class's handleReconnection ran");

    // The class's socket.connect(), after its delay: a new connection, the session cookie
    // asked about again, its tenants subscribed again.
    await connected(page, tenants);
    assert.notEqual(page.socket.id, firstId);
    assert.equal(page.reconnectAttempts, 0);
    const update = { tenant: { id: tenants[0], name: 'My Company', status: 'active' }, message: 'back' };
    assert.equal(await publish(server, [`tenant:${tenants[0]}`], 'tenant_updated', update), 1);
    assert.deepEqual(await page.rec.next('tenant_updated'), [update]);
  });

  test('a dropped connection: socket.io-client reconnects by itself and the page subscribes again', async () => {
    const { server, webApp } = seed;
    const user = newId();
    const tenants = [newId()];
    const page = openPage(server, { cookie: webApp.login(user, tenants), tenants });
    await connected(page, tenants);

    // The connection drops under the page, as a network failure would.
    page.socket.io.engine.close();
    assert.equal((await page.rec.next('disconnect'))[0], 'forced close');
    await connected(page, tenants);
    assert.equal(page.reconnectAttempts, 0, "the class's own retry is not involved");
    const update = { tenant: { id: tenants[0], name: 'My Company', status: 'active' }, message: 'back' };
    assert.equal(await publish(server, [`tenant:${tenants[0]}`], 'tenant_updated', update), 1);
    assert.deepEqual(await page.rec.next('tenant_updated'), [update]);
  });
});

const databases = [
  { name: 'SQLite', env: {} },
  { name: 'PostgreSQL', env: { ROOMCAST_INBOX__DATABASE: postgres.url }, skip: postgres.absent },
];

for (const db of databases) {
  describe(`seed 000 notifications (${db.name})`, { skip: db.skip }, () => {
    const seed = useSeed(db.env);

    /** What the web app does: one notification for `user`, with the seed's example fields;
     * its id. */
    async function notify(user, fields = {}) {
      const res = await seed.server.api('POST', '/api/inbox/notifications', {
        tenant: TENANT,
        user: String(user),
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

    /** A tab of `user`'s (logged in with `cookie`), connected and shown its counts. */
    async function tab(cookie, tenants, name) {
      const page = openPage(seed.server, { cookie, tenants, name });
      await connected(page, tenants);
      return page;
    }

    test('new notifications, counts, read and dismiss answered from the inbox, the other tabs told', async () => {
      const { webApp, server } = seed;
      const [user, other] = [newId(), newId()];
      const tenants = [newId()];
      const cookie = webApp.login(user, tenants);
      const first = await tab(cookie, tenants, 'first tab');
      const second = await tab(cookie, tenants, 'second tab');
      const stranger = await tab(webApp.login(other, tenants), tenants, 'stranger');

      const id = await notify(user, { priority: 'high' });
      for (const t of [first, second]) {
        const [created] = await t.rec.next('new_notification');
        assert.deepEqual(Object.keys(created).sort(), [
          'action_label', 'action_url', 'created_at', 'data', 'dismissed_at', 'id', 'is_dismissed',
          'is_read', 'message', 'metadata', 'priority', 'read_at', 'title', 'type',
        ]);
        assert.deepEqual(
          {
            id: created.id, title: created.title, message: created.message, type: created.type,
            priority: created.priority, is_read: created.is_read, is_dismissed: created.is_dismissed,
            action_url: created.action_url, action_label: created.action_label, metadata: created.metadata,
          },
          {
            id, title: 'New Tenant Created', message: "Your tenant 'My Company' has been successfully created.",
            type: 'success', priority: 'high', is_read: false, is_dismissed: false,
            action_url: '/tenant/mycompany', action_label: 'Access Tenant', metadata: { tenant_name: 'My Company' },
          },
        );
        assert.match(created.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assert.deepEqual(await t.ui.next('addNotificationToUI'), [created]);
        await t.ui.next('playNotificationSound');
      }
      await heardNone(server, stranger, other, 'new_notification');

      first.getNotificationCounts();
      assert.deepEqual(await first.rec.next('notification_counts'), [{ total: 1, unread: 1, urgent: 1 }]);
      // The counts the page showed on connect (0), then these.
      assert.deepEqual(first.ui.all('#notification-count'), [[0], [1]]);
      assert.deepEqual(first.ui.all('#urgent-count'), [[0], [1]]);

      // A click on the notification: wsClient.markNotificationRead(parseInt(id)).
      first.markNotificationRead(id);
      assert.deepEqual(await first.rec.next('notification_action_completed'), [
        { action: 'read', notification_id: id, success: true },
      ]);
      assert.deepEqual(await second.rec.next('notification_read'), [{ notification_id: id }]);
      assert.deepEqual(await second.ui.next('markNotificationAsRead'), [id]);

      // Another user's notification: refused, and nothing changes.
      stranger.dismissNotification(id);
      const [refused] = await stranger.rec.next('notification_action_completed');
      assert.equal(refused.success, false);
      assert.equal(refused.action, 'dismiss');
      assert.equal(typeof refused.error, 'string');

      second.dismissNotification(id);
      assert.deepEqual(await second.rec.next('notification_action_completed'), [
        { action: 'dismiss', notification_id: id, success: true },
      ]);
      assert.deepEqual(await first.rec.next('notification_dismissed'), [{ notification_id: id }]);
      assert.deepEqual(await first.ui.next('removeNotification'), [id]);
      // The acting tab is answered, not told again.
      await heardNone(server, first, user, 'notification_read');
      await heardNone(server, second, user, 'notification_dismissed');

      // Two more, then the web app's mark-all: every tab is told the count.
      const more = [await notify(user), await notify(user, { priority: 'urgent' })];
      const res = await server.api('POST', `/api/inbox/users/${user}/read-all?tenant=${TENANT}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, { count: 2 });
      for (const t of [first, second]) {
        assert.deepEqual(await t.rec.next('all_notifications_read'), [{ count: 2 }]);
        assert.deepEqual(await t.ui.next('markAllNotificationsAsRead'), [2]);
      }
      await heardNone(server, stranger, other, 'all_notifications_read');

      // The page's refreshNotifications(): the web app answers from the inbox.
      first.refreshNotifications();
      const [refreshed] = await first.rec.next('data_refreshed');
      assert.equal(refreshed.type, 'notifications');
      assert.deepEqual(refreshed.data.counts, { total: 2, unread: 0, urgent: 0 });
      assert.deepEqual(refreshed.data.notifications.map((n) => n.id).sort(), [...more].sort());
      assert.deepEqual(await first.ui.next('updateNotificationsList'), [refreshed.data.notifications]);
      assert.deepEqual(first.ui.all('#notification-count').at(-1), [0]);
    });

    test('two tabs marking one notification at once change it once', async () => {
      const { webApp } = seed;
      const user = newId();
      const cookie = webApp.login(user, []);
      const first = await tab(cookie, [], 'first tab');
      const second = await tab(cookie, [], 'second tab');
      const id = await notify(user);
      await Promise.all([first, second].map((t) => t.rec.next('new_notification')));
      for (const t of [first, second]) t.markNotificationRead(id);
      for (const t of [first, second]) {
        assert.deepEqual(await t.rec.next('notification_action_completed'), [
          { action: 'read', notification_id: id, success: true },
        ]);
      }
      // One change, so one tab hears of it; a counts round trip orders what came before.
      for (const t of [first, second]) {
        t.getNotificationCounts();
        assert.deepEqual(await t.rec.next('notification_counts'), [{ total: 1, unread: 0, urgent: 0 }]);
      }
      const told = [first, second].map((t) => t.rec.all('notification_read').length);
      assert.deepEqual(told.sort(), [0, 1]);
    });
  });
}
