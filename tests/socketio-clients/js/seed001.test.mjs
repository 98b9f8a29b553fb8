// Seed 001 (TenantList's dashboard) on roomcast by configuration alone: the shipped
// examples/seeds/seed-001.toml and the seed's client code from its document: io(url +
// '/dashboard', { auth: { token: accessToken }, transports: ['websocket', 'polling'] }) with
// socket.io-client's built-in reconnection, `request:current-state` on every connect, its
// listeners of kpi:update, business:created / updated / deleted and `reconnected` (after which
// the page fetches its dashboard from the web app), and its connect_error counting towards the
// polling fallback. The backend path the file's header describes: POST /api/publish to
// "user:<userId>" of "/dashboard", with the seed's payloads.
//
// The document's polling fallback polls the web app's /api/dashboard/tenant/kpis, not Roomcast;
// here the page records that it would start or stop polling.
//
// Connection state recovery ("event buffering for offline users") is tested as the file ships
// it: off, a page that reconnects gets nothing of what was published meanwhile and fetches its
// dashboard; the recovery test runs when the file turns [socketio.recovery] on.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';

import { io } from 'socket.io-client';

import { Recorder, mint, record, startRoomcast, unique } from './harness.mjs';

const SEED_FILE = 'examples/seeds/seed-001.toml';
const TENANT = 'tenantlist';

let server;
before(async () => {
  server = await startRoomcast({ configFile: SEED_FILE });
});
const dashboards = [];
afterEach(() => {
  for (const d of dashboards.splice(0)) d.cleanup();
});
after(async () => {
  await server?.stop();
});

/**
 * The seed's dashboard for the user of `accessToken`: its code from the document, sections 1
 * to 4, with the page's functions (updateDashboardKPIs, addBusinessToList, ...) recording what
 * the page shows in `ui`. `transports` replaces the seed's only where a test says the network
 * blocks WebSocket. Returns { socket, rec (every event the socket got), ui, cleanup }.
 */
function dashboard(accessToken, { transports, name = 'dashboard' } = {}) {
  const ui = new Recorder(`${name} UI`);
  const updateDashboardKPIs = (kpis) => ui.push('updateDashboardKPIs', [kpis]);
  const addBusinessToList = (business) => ui.push('addBusinessToList', [business]);
  const updateBusinessInList = (business) => ui.push('updateBusinessInList', [business]);
  const removeBusinessFromList = (businessId) => ui.push('removeBusinessFromList', [businessId]);
  const fetchDashboardData = () => ui.push('fetchDashboardData', []);

  // 1. WebSocket Connection
  const socket = io(`${server.url}/dashboard`, {
    auth: {
      token: accessToken
    },
    transports: transports ?? ['websocket', 'polling']
  });
  const rec = record(socket, name);

  // Handle connection
  socket.on('connect', () => {
    // Request current state after reconnection
    socket.emit('request:current-state');
  });

  // 2. Event Listeners
  socket.on('kpi:update', (data) => {
    updateDashboardKPIs(data.kpis);
  });

  socket.on('business:created', (data) => {
    addBusinessToList(data.business);
  });

  socket.on('business:updated', (data) => {
    updateBusinessInList(data.business);
  });

  socket.on('business:deleted', (data) => {
    removeBusinessFromList(data.businessId);
  });

  // Handle reconnection
  socket.on('reconnected', () => {
    // Fetch full dashboard state via HTTP
    fetchDashboardData();
  });

  // 4. Polling Fallback Mechanism (the poll itself is the web app's: recorded, not sent)
  const state = { reconnectionAttempts: 0, pollingInterval: null };

  socket.on('connect_error', () => {
    state.reconnectionAttempts++;

    // After 3 failed attempts, start polling
    if (state.reconnectionAttempts >= 3 && !state.pollingInterval) {
      startPolling();
    }
  });

  socket.on('connect', () => {
    state.reconnectionAttempts = 0;

    // Stop polling if WebSocket reconnects
    if (state.pollingInterval) {
      stopPolling();
    }
  });

  function startPolling() {
    ui.push('startPolling', []);
    state.pollingInterval = setInterval(() => ui.push('poll', []), 30000);
  }

  function stopPolling() {
    if (state.pollingInterval) {
      ui.push('stopPolling', []);
      clearInterval(state.pollingInterval);
      state.pollingInterval = null;
    }
  }

  // Clean up on component unmount
  function cleanup() {
    stopPolling();
    socket.disconnect();
  }

  const d = { socket, rec, ui, state, cleanup };
  dashboards.push(d);
  return d;
}

/** A user's access token: { userId, exp }, as the web app mints it. */
function accessToken(userId) {
  return mint(server.secret, { userId });
}

/** POST /api/publish to the user's room of "/dashboard", as the header's curl does; the
 * number of connections it reached. */
async function publish(userId, event, data) {
  const res = await server.api('POST', '/api/publish', {
    tenant: TENANT,
    namespace: '/dashboard',
    rooms: [`user:${userId}`],
    event,
    data,
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.delivered;
}

/** Waits for the dashboard's `reconnected` and the fetch it makes; the reply's data. */
async function reconnected(d) {
  const [confirmed] = await d.rec.next('reconnected');
  await d.ui.next('fetchDashboardData');
  return confirmed;
}

/** Whether a dashboard got no more than `count` of `event`: a barrier published to its user
 * after them arrives first (one node: deliveries keep the publishes' order). */
async function heardNone(d, userId, event, count = 0) {
  await publish(userId, 'barrier', 1);
  await d.rec.next('barrier');
  assert.equal(d.rec.all(event).length, count, event);
}

const timestamp = '2025-11-24T12:00:00.000Z';
const business = (id, userId, fields = {}) => ({
  id,
  user_id: userId,
  name: 'Business Name',
  category: 'F&B',
  status: 'active',
  is_verified: true,
  ...fields,
});

describe('seed 001 dashboard', () => {
  for (const transports of [undefined, ['polling']]) {
    const how = transports ? 'WebSocket blocked: polling' : "the seed's transports";
    test(`reconnected on connect, then its user's KPI, business and metrics events only (${how})`, async () => {
      const [userId, otherId] = [unique('user'), unique('user')];
      const mine = dashboard(accessToken(userId), { transports });
      const other = dashboard(accessToken(otherId), { transports, name: 'other dashboard' });
      for (const d of [mine, other]) {
        await d.rec.next('connect');
        const confirmed = await reconnected(d);
        assert.deepEqual(Object.keys(confirmed), ['timestamp']);
        assert.match(confirmed.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      }

      const kpis = {
        kpis: { activeBusinesses: 5, responseRate: 75.5, landlordViews: 1234, messagesTotal: 89 },
        timestamp,
      };
      assert.equal(await publish(userId, 'kpi:update', kpis), 1);
      assert.deepEqual((await mine.rec.next('kpi:update'))[0], kpis);
      assert.deepEqual(await mine.ui.next('updateDashboardKPIs'), [kpis.kpis]);

      const created = { business: business(unique('b'), userId), timestamp };
      assert.equal(await publish(userId, 'business:created', created), 1);
      assert.deepEqual((await mine.rec.next('business:created'))[0], created);
      assert.deepEqual(await mine.ui.next('addBusinessToList'), [created.business]);

      const updated = { business: { ...created.business, name: 'Renamed Business' }, timestamp };
      assert.equal(await publish(userId, 'business:updated', updated), 1);
      assert.deepEqual((await mine.rec.next('business:updated'))[0], updated);
      assert.deepEqual(await mine.ui.next('updateBusinessInList'), [updated.business]);

      // The document gives no payload for metrics:updated, nor a listener: it arrives as sent.
      const metrics = { businessId: created.business.id, metrics: { landlordViews: 1235 }, timestamp };
      assert.equal(await publish(userId, 'metrics:updated', metrics), 1);
      assert.deepEqual((await mine.rec.next('metrics:updated'))[0], metrics);

      const deleted = { businessId: created.business.id, timestamp };
      assert.equal(await publish(userId, 'business:deleted', deleted), 1);
      assert.deepEqual((await mine.rec.next('business:deleted'))[0], deleted);
      assert.deepEqual(await mine.ui.next('removeBusinessFromList'), [created.business.id]);

      // The other user's dashboard, in a room of its own, got none of it.
      for (const event of ['kpi:update', 'business:created', 'business:updated', 'metrics:updated', 'business:deleted']) {
        await heardNone(other, otherId, event);
      }
    });
  }

  test('a publish to a user who is not connected reaches nobody', async () => {
    assert.equal(await publish(unique('user'), 'kpi:update', { kpis: { activeBusinesses: 1 }, timestamp }), 0);
  });

  test('tokens: none, invalid or expired refused with connect_error, no polling; other namespaces are not the dashboard', async () => {
    const expired = mint(server.secret, { userId: unique('user'), exp: Math.floor(Date.now() / 1000) - 3600 });
    const cases = [
      [undefined, 'authentication required'],
      [mint('another-secret-0123456789abcdef', { userId: unique('user') }), 'invalid signature'],
      [expired, 'token expired'],
    ];
    for (const [token, message] of cases) {
      const d = dashboard(token, { name: `dashboard (${message})` });
      const [error] = await d.rec.next('connect_error');
      assert.equal(error.message, message);
      assert.equal(d.state.reconnectionAttempts, 1);
      assert.deepEqual(d.ui.all('startPolling'), []);
      d.cleanup();
    }
    // The main namespace is not configured: the dashboard namespace is the only one.
    const socket = io(server.url, { auth: { token: accessToken(unique('user')) }, reconnection: false });
    const rec = record(socket, 'main namespace');
    try {
      const [error] = await rec.next('connect_error');
      assert.equal(error.message, 'Invalid namespace');
    } finally {
      socket.close();
    }
  });
});

describe('seed 001 reconnection', () => {
  test('a page whose connection drops reconnects by itself, rejoins its room and asks for the current state again', async () => {
    const userId = unique('user');
    const d = dashboard(accessToken(userId));
    await d.rec.next('connect');
    await reconnected(d);

    // The connection drops under the page, as a network failure would; socket.io-client
    // reconnects by itself.
    d.socket.io.engine.close();
    assert.equal((await d.rec.next('disconnect'))[0], 'forced close');
    await d.rec.next('connect');
    const confirmed = await reconnected(d);
    assert.match(confirmed.timestamp, /^\d{4}-\d\d-\d\dT/);
    assert.equal(d.ui.all('fetchDashboardData').length, 2);

    const kpis = { kpis: { activeBusinesses: 6 }, timestamp };
    assert.equal(await publish(userId, 'kpi:update', kpis), 1);
    assert.deepEqual((await d.rec.next('kpi:update'))[0], kpis);
  });

  test('a page that reconnects by itself gets what it missed (connection state recovery)', async () => {
    const userId = unique('user');
    const d = dashboard(accessToken(userId));
    await d.rec.next('connect');
    await reconnected(d);
    const seen = { kpis: { activeBusinesses: 7 }, timestamp };
    assert.equal(await publish(userId, 'kpi:update', seen), 1);
    await d.rec.next('kpi:update');
    const firstId = d.socket.id;

    d.socket.io.engine.close();
    await d.rec.next('disconnect');
    const missed = { kpis: { activeBusinesses: 8 }, timestamp };
    await publish(userId, 'kpi:update', missed);
    assert.equal(d.rec.all('connect').length, 1, 'the page was back before the publish');
    await d.rec.next('connect');
    assert.equal(d.socket.recovered, true);
    assert.equal(d.socket.id, firstId);
    assert.deepEqual((await d.rec.next('kpi:update'))[0], missed);
    assert.deepEqual(await d.ui.next('updateDashboardKPIs'), [seen.kpis]);
    assert.deepEqual(await d.ui.next('updateDashboardKPIs'), [missed.kpis]);
    // The page still asks for the current state on connect, and is answered.
    await reconnected(d);
    await heardNone(d, userId, 'kpi:update', 2);
  });
});
