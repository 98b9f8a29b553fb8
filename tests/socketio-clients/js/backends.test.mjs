// Seed 000 (examples/seeds/seed-000.toml, as shipped) with its web app played by a real HTTP
// backend started here: the browser page connects unchanged with its Odoo session cookie
// (the connect proxy), and `request_data_refresh` is answered by `data_refreshed` through the
// RPC proxy. The backend checks every request's signature as the README tells backends to.

import assert from 'node:assert/strict';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { after, afterEach, before, describe, test } from 'node:test';

import { closeTracked, connectSio, mint, startRoomcast } from './harness.mjs';

const SECRET = randomBytes(24).toString('hex');

/** Whether a request's signature is the HMAC-SHA256 of "<timestamp>.<body>" and recent. */
function verified(headers, body) {
  const timestamp = headers['x-roomcast-timestamp'] ?? '';
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false;
  const expected = Buffer.from(
    'sha256=' + createHmac('sha256', SECRET).update(`${timestamp}.`).update(body).digest('hex'),
  );
  const given = Buffer.from(headers['x-roomcast-signature'] ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The web app: `/roomcast/connect` reads the session cookie, `/roomcast/rpc/data-refresh`
 * answers the refreshed data for the caller. */
function answer(path, posted) {
  if (path === '/roomcast/connect') {
    const session = posted.cookies?.session_id;
    if (session === undefined) return [401, { error: { message: 'not logged in' } }];
    if (session !== 'odoo-session-123') return [403, { error: { message: 'session expired' } }];
    return [200, { user: '123', claims: { tenant_ids: [1, 2] }, expires_at: Date.now() / 1000 + 3600 }];
  }
  if (path === '/roomcast/rpc/data-refresh') {
    const [request] = posted.args;
    if (request?.type !== 'tenants') return [404, { error: { code: 'unknown_type', message: 'no such data' } }];
    return [200, {
      type: 'tenants',
      data: { user: posted.user, tenant_ids: posted.claims.tenant_ids },
      timestamp: '2024-01-20T14:30:00Z',
    }];
  }
  return [500, { error: 'no such path' }];
}

let backend;
let server;
before(async () => {
  backend = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const [status, json] = verified(req.headers, body)
        ? answer(req.url, JSON.parse(body.toString('utf8')))
        : [401, { error: { message: 'bad signature' } }];
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(json));
    });
  });
  await new Promise((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${backend.address().port}`;
  server = await startRoomcast({
    configFile: 'examples/seeds/seed-000.toml',
    env: {
      ROOMCAST_AUTH__CONNECT_PROXY__URL: `${url}/roomcast/connect`,
      ROOMCAST_AUTH__CONNECT_PROXY__SECRET: SECRET,
      ROOMCAST_RPC__BACKENDS__ODOO__URL: `${url}/roomcast/rpc`,
      ROOMCAST_RPC__BACKENDS__ODOO__SECRET: SECRET,
    },
  });
});
afterEach(closeTracked);
after(async () => {
  await server?.stop();
  backend?.close();
});

/** The seed's page, as it connects: no token, its cookies sent along by the browser. */
function page(cookie, transports = ['websocket', 'polling']) {
  return connectSio(server, '/', undefined, {
    transports,
    extraHeaders: cookie === undefined ? {} : { cookie },
    name: `page (${cookie})`,
  });
}

describe('seed 000 with its web app as backend', () => {
  for (const transports of [['websocket'], ['polling']]) {
    test(`the session cookie connects the page and data refreshes are answered (${transports})`, async () => {
      const { socket, rec } = page('frontend_lang=en_US; session_id=odoo-session-123', transports);
      await rec.next('connect');
      const [greeting] = await rec.next('connected');
      assert.equal(greeting.user_id, '123');

      socket.emit('request_data_refresh', { type: 'tenants', force_refresh: true });
      const [refreshed] = await rec.next('data_refreshed');
      assert.deepEqual(refreshed, {
        type: 'tenants',
        data: { user: '123', tenant_ids: [1, 2] },
        timestamp: '2024-01-20T14:30:00Z',
      });

      // The backend's refusal is the seed's error event.
      socket.emit('request_data_refresh', { type: 'admin_stats' });
      const [refused] = await rec.next('error');
      assert.deepEqual(refused, { message: 'Request refused', error: 'no such data' });

      // The identity from the cookie joins the rooms its claims allow.
      socket.emit('subscribe_tenant_updates', { tenant_id: 2 });
      await rec.next('subscribed');
    });
  }

  test('a stale session or no session is refused with connect_error', async () => {
    const stale = page('session_id=logged-out');
    const [err] = await stale.rec.next('connect_error');
    assert.equal(err.message, 'session expired');
    const anonymous = page(undefined);
    const [missing] = await anonymous.rec.next('connect_error');
    assert.equal(missing.message, 'authentication required');
  });

  test('a token still connects without asking the web app', async () => {
    const token = mint(server.secret, { sub: '124', tenant_ids: [3] });
    const { socket, rec } = connectSio(server, '/', token, { transports: ['websocket'] });
    await rec.next('connect');
    socket.emit('request_data_refresh', { type: 'tenants' }, );
    const [refreshed] = await rec.next('data_refreshed');
    assert.deepEqual(refreshed.data, { user: '124', tenant_ids: [3] });
  });
});
