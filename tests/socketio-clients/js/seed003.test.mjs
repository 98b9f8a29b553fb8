// Seed 003 (a team status page on Node socket.io, port 5000) on roomcast by configuration alone:
// the shipped examples/seeds/seed-003.toml and the seed's client code from its document:
// io(url) with its default reconnection, `authenticate` on connect, join-organization and
// leave-organization, ping, and the service-update / incident-update / status-update events.
// The one change the file's header states: the client passes a token in `auth`, and its
// `authenticate` ids are not believed (the token's are). The backend paths: the seed's
// POST /api/websocket/broadcast and GET /api/websocket/info (both behind the API key, as the
// header says) and the controllers' publishes through POST /api/publish.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';

import { io } from 'socket.io-client';

import { closeTracked, mint, record, startRoomcast, unique } from './harness.mjs';

let server;
before(async () => {
  server = await startRoomcast({ configFile: 'examples/seeds/seed-003.toml' });
});
afterEach(closeTracked);
after(async () => {
  await server?.stop();
});

const sockets = [];
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.close();
});

/** The seed's client: io(url) with its defaults (reconnection on), plus the token, and its
 * `authenticate` emitted on every connect with the user's self-declared ids. */
async function seedClient(claims) {
  const socket = io(server.url, { auth: { token: mint(server.secret, claims) } });
  sockets.push(socket);
  const rec = record(socket, `seed-003 ${claims.sub}`);
  socket.on('connect', () => {
    socket.emit('authenticate', {
      userId: claims.sub,
      organizationId: claims.organization_id,
      tenantId: claims.tenant_id,
      userRole: claims.roles,
    });
  });
  await rec.next('connect');
  const [authenticated] = await rec.next('authenticated');
  return { socket, rec, authenticated };
}

/** A user of organization `org` (also allowed `others`) in tenant `tenant`. */
function user(org, tenant, others = []) {
  return {
    sub: unique('user'),
    organization_id: org,
    organization_ids: [org, ...others],
    tenant_id: tenant,
    roles: 'admin',
  };
}

/** The seed's POST /api/websocket/broadcast, with the API key. */
function broadcast(body) {
  return server.api('POST', '/api/websocket/broadcast', body);
}

/** Whether a client got no more than `count` of `event` before a barrier sent to it
 * afterwards. */
async function heardNone(client, userId, event, count = 0) {
  await server.publish({ tenant: 'status', rooms: [`user:${userId}`], event: 'barrier', data: 1 });
  await client.rec.next('barrier');
  assert.equal(client.rec.all(event).length, count, event);
}

describe('seed 003 client', () => {
  test('authenticate, ping, and organizations joined and left', async () => {
    const org = unique('org');
    const extra = unique('org');
    const claims = user(org, unique('tenant'), [extra]);
    const client = await seedClient(claims);
    assert.equal(client.authenticated.success, true);
    assert.equal(client.authenticated.clientId, client.socket.id);
    assert.ok(!Number.isNaN(Date.parse(client.authenticated.timestamp)));

    client.socket.emit('ping', {});
    const [pong] = await client.rec.next('pong');
    assert.ok(!Number.isNaN(Date.parse(pong.timestamp)));

    client.socket.emit('join-organization', { organizationId: extra });
    const [joined] = await client.rec.next('joined-organization');
    assert.equal(joined.organizationId, extra);
    let res = await broadcast({ type: 'incident-update', data: { id: 'i-1' }, organizationId: extra });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const [incident] = await client.rec.next('incident-update');
    assert.equal(incident.type, 'incident-update');
    assert.deepEqual(incident.data, { id: 'i-1' });

    client.socket.emit('leave-organization', { organizationId: extra });
    const [left] = await client.rec.next('left-organization');
    assert.equal(left.organizationId, extra);
    res = await broadcast({ type: 'incident-update', data: { id: 'i-2' }, organizationId: extra });
    assert.equal(res.status, 200);
    await heardNone(client, claims.sub, 'incident-update', 1);

    // An organization the token does not list: the seed's `error` event.
    client.socket.emit('join-organization', { organizationId: unique('org') });
    const [error] = await client.rec.next('error');
    assert.equal(typeof error.message, 'string');
  });

  test('the token decides the rooms, not the ids authenticate declares', async () => {
    const org = unique('org');
    const honest = await seedClient(user(org, unique('tenant')));
    // A client declaring someone else's organization in authenticate is not placed there.
    const liarClaims = user(unique('org'), unique('tenant'));
    const socket = io(server.url, { auth: { token: mint(server.secret, liarClaims) } });
    sockets.push(socket);
    const liar = { socket, rec: record(socket, 'liar') };
    socket.on('connect', () => socket.emit('authenticate', { userId: 'x', organizationId: org, tenantId: 't', userRole: 'admin' }));
    await liar.rec.next('authenticated');
    await broadcast({ type: 'service-update', data: { id: 's-1' }, organizationId: org });
    await honest.rec.next('service-update');
    await heardNone(liar, liarClaims.sub, 'service-update');
  });
});

describe("seed 003's backend", () => {
  test('broadcast goes to the organization, the tenant, or everyone, once each', async () => {
    const org = unique('org');
    const tenant = unique('tenant');
    const inBoth = await seedClient(user(org, tenant));
    const orgOnly = await seedClient(user(org, unique('tenant')));
    const tenantOnlyClaims = user(unique('org'), tenant);
    const tenantOnly = await seedClient(tenantOnlyClaims);
    const outsiderClaims = user(unique('org'), unique('tenant'));
    const outsider = await seedClient(outsiderClaims);

    let res = await broadcast({ type: 'service-update', data: { id: 's-1', status: 'degraded' }, organizationId: org, tenantId: tenant });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.success, true);
    for (const client of [inBoth, orgOnly, tenantOnly]) {
      const [update] = await client.rec.next('service-update');
      assert.deepEqual(update.data, { id: 's-1', status: 'degraded' });
      assert.equal(update.type, 'service-update');
      assert.ok(!Number.isNaN(Date.parse(update.timestamp)));
    }
    await heardNone(outsider, outsiderClaims.sub, 'service-update');

    res = await broadcast({ type: 'status-update', data: { overall: 'operational' }, tenantId: tenant });
    assert.equal(res.status, 200);
    await tenantOnly.rec.next('status-update');
    await inBoth.rec.next('status-update');
    await heardNone(outsider, outsiderClaims.sub, 'status-update');

    // Neither id: every client (global broadcast).
    res = await broadcast({ type: 'status-update', data: { overall: 'maintenance' } });
    assert.equal(res.status, 200);
    for (const client of [orgOnly, outsider]) {
      const [update] = await client.rec.next('status-update');
      assert.equal(update.data.overall, 'maintenance');
    }
    // A client in both targeted rooms got the first broadcast once.
    await heardNone(outsider, outsiderClaims.sub, 'incident-update');
    assert.equal(inBoth.rec.all('service-update').length, 1);

    // Only the seed's three types; the endpoint needs the API key.
    res = await broadcast({ type: 'delete-everything', data: {} });
    assert.equal(res.status, 400);
    const anonymous = await fetch(`${server.url}/api/websocket/broadcast`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'status-update', data: {} }),
    });
    assert.equal(anonymous.status, 401);
  });

  test('info counts connections, and the organization and tenant rooms', async () => {
    const org = unique('org');
    const tenant = unique('tenant');
    await seedClient(user(org, tenant));
    await seedClient(user(org, unique('tenant')));
    const res = await server.api('GET', `/api/websocket/info?organizationId=${org}&tenantId=${tenant}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.success, true);
    assert.deepEqual(res.body.data.rooms, { [`org:${org}`]: 2, [`tenant:${tenant}`]: 1 });
    assert.ok(res.body.data.totalConnections >= 2);
    assert.equal(res.body.data.organizationId, org);
  });

  test("the controllers' publishes reach the organization", async () => {
    const org = unique('org');
    const client = await seedClient(user(org, unique('tenant')));
    await server.publish({
      tenant: 'status',
      rooms: [`org:${org}`],
      event: 'service-update',
      data: { type: 'service-update', data: { name: 'Test Service', status: 'degraded' }, timestamp: new Date().toISOString() },
    });
    const [update] = await client.rec.next('service-update');
    assert.equal(update.data.name, 'Test Service');
  });

  test('a client that reconnects by itself gets what it missed (connection state recovery)', async () => {
    const org = unique('org');
    const client = await seedClient(user(org, unique('tenant')));
    // The connection drops under the client, as a network failure would; the client
    // reconnects on its own (its default reconnection), the update published meanwhile.
    client.socket.io.engine.close();
    await client.rec.next('disconnect');
    await server.publish({ tenant: 'status', rooms: [`org:${org}`], event: 'incident-update', data: { type: 'incident-update', data: { id: 'missed' } } });
    await client.rec.next('connect');
    const [missed] = await client.rec.next('incident-update');
    assert.equal(missed.data.id, 'missed');
    assert.equal(client.socket.recovered, true);
  });
});
