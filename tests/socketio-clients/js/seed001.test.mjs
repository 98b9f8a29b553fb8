// Seed 001 (TenantList's dashboard) on roomcast by configuration alone: the shipped
// examples/seeds/seed-001.toml, and the seed's own client code: io('.../dashboard') with
// `auth: { token }` and transports ['websocket', 'polling'], `request:current-state` on every
// connection, and the backend's KPI and business events for the user.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';

import { io } from 'socket.io-client';

import { closeTracked, mint, record, startRoomcast } from './harness.mjs';

let server;
before(async () => {
  server = await startRoomcast({ configFile: 'examples/seeds/seed-001.toml' });
});
afterEach(closeTracked);
after(async () => {
  await server?.stop();
});

describe('seed 001 configuration', () => {
  test('the dashboard gets reconnected, then its user\'s KPI and business events only', async () => {
    const dashboard = (userId) => {
      const socket = io(`${server.url}/dashboard`, {
        auth: { token: mint(server.secret, { userId }) },
        transports: ['websocket', 'polling'],
        reconnection: false,
      });
      const rec = record(socket, `dashboard of user ${userId}`);
      // The seed's connect handler.
      socket.on('connect', () => socket.emit('request:current-state'));
      return { socket, rec };
    };
    const mine = dashboard(42);
    const other = dashboard(43);
    try {
      for (const d of [mine, other]) {
        const [confirmed] = await d.rec.next('reconnected');
        assert.match(confirmed.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      }
      const kpis = {
        kpis: { activeBusinesses: 5, responseRate: 75.5, landlordViews: 1234, messagesTotal: 89 },
        timestamp: '2025-11-24T12:00:00.000Z',
      };
      const deleted = { businessId: 'b-1', timestamp: '2025-11-24T12:00:00.000Z' };
      for (const [event, data] of [['kpi:update', kpis], ['business:deleted', deleted]]) {
        const answer = await server.publish({
          tenant: 'tenantlist',
          namespace: '/dashboard',
          rooms: ['user:42'],
          event,
          data,
        });
        assert.equal(answer.delivered, 1);
        // With recovery on, an event carries its offset after the data (as socket.io sends it).
        assert.deepEqual((await mine.rec.next(event))[0], data);
      }
      assert.deepEqual(other.rec.all('kpi:update'), []);
    } finally {
      mine.socket.close();
      other.socket.close();
    }
  });
});
