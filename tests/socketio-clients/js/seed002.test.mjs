// Seed 002 (python-socketio mounted under /ws) on roomcast by configuration alone: the shipped
// examples/seeds/seed-002.toml. Its clients connect to "/ws/provisioning" (socket.io-client
// reads the URL's path as the namespace) while its backend publishes to "/provisioning"; or,
// written after the seed's Endpoint line, on the path /ws/socket.io to "/provisioning" itself.
// Both forms are served at once: the seed's browser code in each form, and its Flutter client
// as Dart's socket_io_client speaks on the wire.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';

import { io } from 'socket.io-client';
import WebSocket from 'ws';

import {
  closeAll,
  closeTracked,
  connectSio,
  emitWithAck,
  mint,
  record,
  Recorder,
  startRoomcast,
} from './harness.mjs';

let server;
before(async () => {
  server = await startRoomcast({ configFile: 'examples/seeds/seed-002.toml' });
});
afterEach(closeTracked);
after(async () => {
  await server?.stop();
});

describe('seed 002 configuration', () => {
  for (const transports of [['websocket'], ['polling']]) {
    test(`publishes to /provisioning reach clients of /ws/provisioning (${transports})`, async () => {
      const token = mint(server.secret, { user_id: 7, tenant_id: 'acme' });
      const { socket, rec } = connectSio(server, '/ws/provisioning', token, { transports });
      try {
        await rec.next('connect');
        for (const target of [{ users: ['7'] }, { rooms: ['tenant:acme'] }]) {
          await server.publish({
            tenant: 'acme',
            namespace: '/provisioning',
            event: 'status:update',
            data: { progress: 60 },
            ...target,
          });
          const [update] = await rec.next('status:update');
          assert.deepEqual(update, { progress: 60 });
        }
      } finally {
        closeAll(socket);
      }
    });
  }
});

// The two ways the seed writes its browser client: its examples' io('http://host/ws',
// { path: '/socket.io' }), and its Endpoint line, ws://host/ws/socket.io, with the namespaces
// themselves in the URL.
const FORMS = [
  { name: 'the client examples', path: '/socket.io', prefix: '/ws' },
  { name: 'the Endpoint line', path: '/ws/socket.io', prefix: '' },
];

/**
 * The seed's browser client: `io(url, { path, auth: { token } })` for its root, provisioning
 * and billing namespaces. socket.io-client multiplexes the sockets of one host over one
 * Manager (one Engine.IO connection) from a process-wide cache; here the first io() makes the
 * Manager (forceNew, so that no test takes another's, which may have another path) and the
 * next namespaces take it as io() does, with `manager.socket(namespace, opts)`. `transports`
 * and `reconnection: false` are the test's; the rest is the seed's.
 */
function seedBrowserClient(form, token, transports) {
  const root = io(`${server.url}${form.prefix || '/'}`, {
    path: form.path,
    auth: { token },
    transports,
    reconnection: false,
    forceNew: true,
  });
  const sockets = {
    root,
    provisioning: root.io.socket(`${form.prefix}/provisioning`, { auth: { token } }),
    billing: root.io.socket(`${form.prefix}/billing`, { auth: { token } }),
  };
  // Each socket connects by itself (autoConnect); its first packets come after this turn.
  const recs = {};
  for (const [name, socket] of Object.entries(sockets)) {
    recs[name] = record(socket, `${form.name}: ${name} socket`);
  }
  return {
    recs,
    sockets,
    close: () => closeAll(...Object.values(sockets)),
  };
}

describe('seed 002 clients, both forms in one deployment', () => {
  for (const form of FORMS) {
    for (const transports of [['websocket'], ['polling']]) {
      test(`${form.name} (path ${form.path}, ${transports}): greeting, ping, the backend's events`, async () => {
        const token = mint(server.secret, { user_id: 7, tenant_id: 'acme' });
        const client = seedBrowserClient(form, token, transports);
        try {
          const { recs, sockets } = client;
          for (const rec of Object.values(recs)) await rec.next('connect');
          assert.equal(sockets.root.io.engine.transport.name, transports[0]);
          // Namespace "/" under either name: the greeting and the keepalive.
          const [greeting] = await recs.root.next('connected');
          assert.deepEqual(greeting, { message: 'Connected', user_id: 7, tenant_id: 'acme' });
          sockets.root.emit('ping');
          assert.deepEqual(await recs.root.next('pong'), []);

          // The backend's events, to the user's and the tenant's rooms, each in its namespace.
          const sent = [
            ['/', 'user:7', 'error', { message: 'Provisioning quota exceeded' }],
            ['/provisioning', 'tenant:acme', 'status:update',
              { tenant_id: 'acme', status: 'installing', progress: 60, message: 'Installing apps' }],
            ['/provisioning', 'tenant:acme', 'status:completed',
              { tenant_id: 'acme', erpnext_url: 'https://acme.erpmax.com' }],
            ['/provisioning', 'user:7', 'status:failed', { tenant_id: 'acme', error: 'timeout' }],
            ['/billing', 'tenant:acme', 'subscription:updated', { subscription: { plan: 'pro' } }],
            ['/billing', 'tenant:acme', 'subscription:expiring', { days_left: 3 }],
            ['/billing', 'user:7', 'payment:received', { amount: 49, currency: 'EUR' }],
          ];
          const recOf = { '/': recs.root, '/provisioning': recs.provisioning, '/billing': recs.billing };
          for (const [namespace, room, event, data] of sent) {
            const answer = await server.publish({ tenant: 'acme', namespace, rooms: [room], event, data });
            assert.equal(answer.delivered, 1, `${event} in ${namespace}`);
            assert.deepEqual(await recOf[namespace].next(event), [data], `${event} in ${namespace}`);
          }
          // Each event reached its own namespace only.
          for (const [namespace, rec] of Object.entries(recOf)) {
            const expected = sent.filter(([ns]) => ns === namespace).map(([, , event]) => event);
            const own = ['connect', 'connected', 'pong', 'user:online', 'user:offline'];
            const got = rec.names().filter((e) => !own.includes(e));
            assert.deepEqual(got, expected, namespace);
          }
        } finally {
          client.close();
        }
      });
    }
  }

  test('a client of either form gets what is published to the other\'s rooms', async () => {
    const examples = connectSio(server, '/ws/provisioning',
      mint(server.secret, { user_id: 8, tenant_id: 'globex' }), { path: '/socket.io' });
    const endpoint = connectSio(server, '/provisioning',
      mint(server.secret, { user_id: 9, tenant_id: 'globex' }), { path: '/ws/socket.io' });
    try {
      await examples.rec.next('connect');
      await endpoint.rec.next('connect');
      const data = { tenant_id: 'globex', status: 'queued', progress: 0, message: 'Queued' };
      const answer = await server.publish({
        tenant: 'globex',
        namespace: '/provisioning',
        rooms: ['tenant:globex'],
        event: 'status:update',
        data,
      });
      assert.equal(answer.delivered, 2);
      assert.deepEqual(await examples.rec.next('status:update'), [data]);
      assert.deepEqual(await endpoint.rec.next('status:update'), [data]);
    } finally {
      closeAll(examples.socket, endpoint.socket);
    }
  });
});

describe("seed 002's next steps, switched on", () => {
  test("presence: a user's first and last connection reach the tenant's clients", async () => {
    const watcher = connectSio(server, '/ws', mint(server.secret, { user_id: 20, tenant_id: 'initech' }));
    // In its rooms once greeted (its own user:online may come before that, or not at all).
    await watcher.rec.next('connected');
    const first = connectSio(server, '/ws', mint(server.secret, { user_id: 21, tenant_id: 'initech' }));
    const second = connectSio(server, '/ws/billing', mint(server.secret, { user_id: 21, tenant_id: 'initech' }));
    const outsider = connectSio(server, '/ws', mint(server.secret, { user_id: 22, tenant_id: 'hooli' }));
    await first.rec.next('connect');
    await second.rec.next('connect');
    await outsider.rec.next('connect');
    const online = (await watcher.rec.nextWhere('user:online', (e) => e.user_id === '21'))[0];
    assert.equal(online.online, true);
    closeAll(first.socket);
    closeAll(second.socket);
    const [offline] = await watcher.rec.next('user:offline');
    assert.deepEqual([offline.user_id, offline.online], ['21', false]);
    // Once online for its two connections; nothing of another tenant's users, nor to them.
    const of = (rec, user) => rec.all('user:online').filter(([e]) => e.user_id === user);
    assert.equal(of(watcher.rec, '21').length, 1);
    assert.equal(of(watcher.rec, '22').length, 0);
    await server.publish({ tenant: 'hooli', users: ['22'], event: 'barrier', data: 1 });
    await outsider.rec.next('barrier');
    assert.equal(of(outsider.rec, '21').length, 0);
  });

  test('message acknowledgments: an emit with a callback is acknowledged', async () => {
    const client = connectSio(server, '/ws', mint(server.secret, { user_id: 23, tenant_id: 'initech' }));
    await client.rec.next('connect');
    // socket.io-client's emit with a callback (emitWithAck rejects without an ack).
    await emitWithAck(client.socket, 'ping');
  });
});

// The seed's Flutter client, socket_io_client (Dart) 3.x:
//     IO.io('http://localhost:8000/ws', {'path': '/socket.io', 'transports': ['websocket'],
//                                       'auth': {'token': token}})
// Dart does not run here, so this test speaks what that package sends, read from its source:
// it takes the URL's path "/ws" as the namespace; its engine adds a trailing slash to `path`
// and opens ws://host/socket.io/?EIO=4&transport=websocket (no polling, so no upgrade); once
// the Engine.IO open packet is in, the socket sends CONNECT with `auth` as its data,
// `40/ws,{"token":"..."}` (JSON without spaces, from dart:convert); it answers each ping "2"
// with "3", and reads events as `42/ws,[name, data]`. It stands in for the Dart client.
describe('seed 002 Flutter client, as socket_io_client speaks', () => {
  let quick;
  before(async () => {
    // The seed's configuration with a heartbeat quick enough to see pings within a test.
    quick = await startRoomcast({
      configFile: 'examples/seeds/seed-002.toml',
      name: 'roomcast-quick-heartbeat',
      env: {
        ROOMCAST_SOCKETIO__PING_INTERVAL_MS: '200',
        ROOMCAST_SOCKETIO__PING_TIMEOUT_MS: '200',
      },
    });
  });
  after(async () => {
    await quick?.stop();
  });

  test('connects to /ws over a raw WebSocket, answers pings, gets status:update', async () => {
    const ws = new WebSocket(`ws://${quick.addr}/socket.io/?EIO=4&transport=websocket`);
    const rec = new Recorder('Dart-shaped client', ['close', 'error', 'other']);
    let pings = 0;
    ws.on('message', (data, isBinary) => {
      const text = data.toString('utf8');
      if (isBinary) {
        rec.push('binary', [text]);
      } else if (text === '2') {
        // The package's engine answers every ping at once.
        pings += 1;
        ws.send('3');
        rec.push('ping', [pings]);
      } else if (text.startsWith('0')) {
        rec.push('open', [JSON.parse(text.slice(1))]);
      } else if (text.startsWith('40/ws,')) {
        rec.push('connect', [JSON.parse(text.slice('40/ws,'.length))]);
      } else if (text.startsWith('42/ws,')) {
        const [event, ...args] = JSON.parse(text.slice('42/ws,'.length));
        rec.push(event, args);
      } else {
        rec.push('other', [text]);
      }
    });
    ws.on('close', (code, reason) => rec.push('close', [code, reason.toString()]));
    ws.on('error', (err) => rec.push('error', [err]));
    try {
      const [open] = await rec.next('open');
      assert.equal(typeof open.sid, 'string');
      assert.deepEqual(open.upgrades, []);
      assert.equal(open.pingInterval, 200);

      const token = mint(quick.secret, { user_id: 7, tenant_id: 'acme' });
      ws.send(`40/ws,${JSON.stringify({ token })}`);
      const [connected] = await rec.next('connect');
      assert.equal(typeof connected.sid, 'string');
      const [greeting] = await rec.next('connected');
      assert.deepEqual(greeting, { message: 'Connected', user_id: 7, tenant_id: 'acme' });

      // Three pings answered: the session outlives more than one interval plus timeout, which
      // an unanswered ping would not.
      for (let n = 1; n <= 3; n += 1) assert.deepEqual(await rec.next('ping'), [n]);

      // The Flutter example listens for status:update on its "/ws" socket: namespace "/".
      const data = { tenant_id: 'acme', status: 'installing', progress: 80, message: 'Almost' };
      const answer = await quick.publish({
        tenant: 'acme',
        namespace: '/',
        rooms: ['tenant:acme'],
        event: 'status:update',
        data,
      });
      assert.equal(answer.delivered, 1);
      assert.deepEqual(await rec.next('status:update'), [data]);
      assert.deepEqual(rec.all('other'), []);
      assert.deepEqual(rec.all('close'), []);
    } finally {
      ws.terminate();
    }
  });
});
