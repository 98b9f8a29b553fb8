// Seed 004 (an e-commerce platform on Node socket.io 4.6) on roomcast by configuration alone:
// the shipped examples/seeds/seed-004.toml and the seed's socket.io-client code, which tells
// refusals apart by `connect_error`'s `error.message`, subscribes to orders and products and
// relays `typing` to custom rooms; every backend path the seed describes: the services' events
// on RabbitMQ (published with amqplib, as the seed's services do), the HTTP API, and the Redis
// adapter's emitter (@socket.io/redis-emitter, with the file's commented [cluster] section
// switched on); and the seed's HTTP endpoints (/health, /connected-users, /user-status/:id).
//
// The marketplace is one tenant: a customer, the company's staff, a shop's staff and a
// super_admin, each with the seed's token, get what the seed says they get, and another
// company's staff nothing of it.
//
// Needs RabbitMQ at 127.0.0.1:5672 (guest/guest) and Redis at 127.0.0.1:6379: without them the
// tests that need them are skipped, and under CI=true they fail. The configuration is the
// shipped one with the exchange, the queue and the Redis prefix and emitter key renamed for
// this run (all deleted at the end), so that runs never share them.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';

import { Emitter } from '@socket.io/redis-emitter';
import amqp from 'amqplib';

import {
  REDIS_URL,
  REPO_ROOT,
  closeAll,
  closeTracked,
  connectRedis,
  connectSio,
  emitWithAck,
  mint,
  startRoomcast,
  unique,
} from './harness.mjs';

const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';
const RUN = unique('rc-seed004');
const EXCHANGE = `${RUN}-events`;
const QUEUE = `${RUN}-websocket.events`;
/** The emitter's key (its channels' prefix) and the cluster's key prefix in Redis. */
const EMITTER_KEY = `${RUN}-socket.io`;

const redis = await connectRedis();

/** The shipped configuration, its exchange and queue renamed for this run, and its Redis
 * adapter section switched on (when Redis is here) with this run's prefix and emitter key. */
function seedConfig() {
  let text = readFileSync(path.join(REPO_ROOT, 'examples/seeds/seed-004.toml'), 'utf8')
    .replace('exchange = { name = "events"', `exchange = { name = "${EXCHANGE}"`)
    .replace('queue = { name = "websocket.events"', `queue = { name = "${QUEUE}"`);
  if (!redis.absent) {
    const commented = text.slice(text.indexOf('# [cluster]'));
    const section = commented
      .split('\n')
      .map((line) => line.replace(/^# ?/, ''))
      .join('\n')
      .replace('redis = "redis://127.0.0.1:6379/0"', `redis = "${REDIS_URL}/0"\nprefix = "${RUN}"`)
      .replace('channel = "socket.io"', `channel = "${EMITTER_KEY}"`);
    text = `${text}\n${section}\n`;
  }
  return text;
}

let server;
let broker;
before(async () => {
  if (redis.absent && process.env.CI === 'true') {
    throw new Error(`${redis.absent} (CI=true: an absent service is a failure)`);
  }
  const secret = randomBytes(32).toString('hex');
  const apiKey = `test-${randomBytes(16).toString('hex')}`;
  server = await startRoomcast({
    configText: seedConfig(),
    secret,
    apiKey,
    env: { ROOMCAST_LISTEN: '127.0.0.1:0', ROOMCAST_JWT_SECRET: secret, ROOMCAST_API_KEY: apiKey },
  });
  try {
    broker = await amqp.connect(AMQP_URL, { timeout: 2_000 });
  } catch (err) {
    broker = { absent: `the RabbitMQ at ${AMQP_URL} is absent (${err.message})` };
    if (process.env.CI === 'true') {
      throw new Error(`${broker.absent} (CI=true: an absent service is a failure)`);
    }
  }
});
afterEach(closeTracked);
after(async () => {
  await server?.stop();
  if (broker && !broker.absent) {
    const channel = await broker.createChannel();
    for (const queue of [QUEUE, `${QUEUE}.dead`]) await channel.deleteQueue(queue);
    for (const exchange of [EXCHANGE, `${QUEUE}.dead`]) await channel.deleteExchange(exchange);
    await broker.close();
  }
  if (!redis.absent) {
    for await (const keys of redis.client.scanIterator({ MATCH: `${RUN}*`, COUNT: 500 })) {
      for (const key of [keys].flat()) await redis.client.del(key);
    }
    await redis.client.quit();
  }
});

/** The seed's client: io(url, { auth: { token } }), waiting for its `connected` greeting. */
async function seedClient(claims, transports = ['websocket']) {
  const client = connectSio(server, '/', mint(server.secret, claims), { transports });
  await client.rec.next('connected');
  return client;
}

/** The seed's cast, each with a token of its own; ids unique to the test. */
async function cast() {
  const id = unique('u');
  const people = {
    customer: await seedClient({ sub: `${id}-customer` }),
    company: await seedClient({ sub: `${id}-staff`, company_id: `${id}-c7`, roles: ['company_admin'] }),
    shop: await seedClient({ sub: `${id}-shop`, company_id: `${id}-c7`, shop_ids: [`${id}-s3`] }),
    admin: await seedClient({ sub: `${id}-admin`, roles: ['super_admin'] }),
    other: await seedClient({ sub: `${id}-other`, company_id: `${id}-c8` }),
  };
  return { id, ...people };
}

/** Whether a client got nothing of `events`: a barrier published to it after them arrives
 * first (one node: deliveries keep the publishes' order). */
async function heardNone(client, user, events) {
  await server.publish({ tenant: 'marketplace', users: [user], event: 'barrier', data: 1 });
  await client.rec.next('barrier');
  for (const event of events) assert.deepEqual(client.rec.all(event), [], event);
}

describe('seed 004 clients', () => {
  for (const transports of [['websocket'], ['polling']]) {
    test(`connect_error messages are the seed's (${transports})`, async () => {
      const expired = mint(server.secret, { sub: 1, company_id: 7, exp: Math.floor(Date.now() / 1000) - 3600 });
      const cases = [
        [undefined, 'Authentication required'],
        ['not.a.jwt', 'Invalid or expired token'],
        [mint('another-secret-0123456789abcdef', { sub: 1, company_id: 7 }), 'Invalid or expired token'],
        [expired, 'Invalid or expired token'],
      ];
      for (const [token, message] of cases) {
        const { socket, rec } = connectSio(server, '/', token, { transports });
        try {
          const [error] = await rec.next('connect_error');
          assert.equal(error.message, message);
        } finally {
          closeAll(socket);
        }
      }
    });
  }

  test('connected greets with the socket id; typing reaches the others in a custom room', async () => {
    const a = connectSio(server, '/', mint(server.secret, { sub: 1, company_id: 7 }));
    const [greeting] = await a.rec.next('connected');
    assert.equal(greeting.message, 'Connected to WebSocket service');
    assert.equal(greeting.socketId, a.socket.id);
    const b = await seedClient({ sub: 2, company_id: 7 });
    // With an ack, a join is answered once done (the seed's joins have no reply event).
    await emitWithAck(a.socket, 'join_room', 'chat-room');
    await emitWithAck(b.socket, 'join_room', 'chat-room');
    a.socket.emit('typing', { roomId: 'chat-room', isTyping: true });
    const [typing] = await b.rec.next('typing');
    assert.deepEqual(typing, { userId: 1, roomId: 'chat-room', isTyping: true });
    assert.deepEqual(a.rec.all('typing'), []);
  });

  test("a super_admin is told of users' first and last sessions", async () => {
    const id = unique('p');
    const admin = await seedClient({ sub: `${id}-admin`, roles: ['super_admin'] });
    const staff = await seedClient({ sub: `${id}-staff`, company_id: 70 });
    const [online] = await admin.rec.nextWhere('user:online', (e) => e.userId === `${id}-staff`);
    assert.equal(online.online, true);
    // A second tab of the same user: already online.
    const tab = await seedClient({ sub: `${id}-staff`, company_id: 70 });
    closeAll(staff.socket);
    closeAll(tab.socket);
    const [offline] = await admin.rec.nextWhere('user:offline', (e) => e.userId === `${id}-staff`);
    assert.equal(offline.online, false);
    const onlines = admin.rec.all('user:online').filter(([e]) => e.userId === `${id}-staff`);
    assert.equal(onlines.length, 1);
    // The staff's own connection is not an admin's: it hears no presence.
    assert.deepEqual(staff.rec.all('user:online'), []);
  });
});

describe("seed 004's HTTP endpoints", () => {
  test('GET /health answers the seed\'s body without a key', async () => {
    const res = await fetch(`${server.url}/health`);
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.status, 'OK');
    assert.equal(body.service, 'websocket-service');
    assert.ok(!Number.isNaN(Date.parse(body.timestamp)), body.timestamp);
  });

  test('GET /connected-users and /user-status/:userId see the marketplace', async () => {
    const id = unique('h');
    const customer = await seedClient({ sub: `${id}-customer` });
    await seedClient({ sub: `${id}-staff`, company_id: 7 });
    const users = await server.api('GET', '/connected-users');
    assert.equal(users.status, 200);
    assert.equal(users.body.success, true);
    assert.ok(users.body.data.users.includes(`${id}-customer`), JSON.stringify(users.body));
    assert.ok(users.body.data.users.includes(`${id}-staff`), JSON.stringify(users.body));
    assert.equal(users.body.data.count, users.body.data.users.length);

    const online = await server.api('GET', `/user-status/${id}-customer`);
    assert.deepEqual(online.body, { success: true, data: { userId: `${id}-customer`, isConnected: true } });
    closeAll(customer.socket);
    for (;;) {
      const status = await server.api('GET', `/user-status/${id}-customer`);
      if (status.body.data.isConnected === false) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // These list who is online: they need the API key (the seed's had none; see the file).
    const anonymous = await fetch(`${server.url}/connected-users`);
    assert.equal(anonymous.status, 401);
  });
});

describe('seed 004 events from its backends', () => {
  /** Waits until the server consumes its queue (the health report lists the source as up). */
  async function consuming() {
    for (let i = 0; i < 200; i += 1) {
      const res = await fetch(`${server.url}/health`);
      const { roomcast } = await res.json();
      if (roomcast.ingest?.every((source) => source.state === 'up')) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error('the ingest source never connected');
  }

  /** Publishes the services' events as they do, and waits for RabbitMQ's confirms. */
  async function publishAmqp(messages) {
    const channel = await broker.createConfirmChannel();
    for (const [key, payload] of messages) {
      channel.publish(EXCHANGE, key, Buffer.from(JSON.stringify(payload)), { persistent: true });
    }
    await channel.waitForConfirms();
    await channel.close();
  }

  function amqpTest(name, fn) {
    test(name, async (t) => {
      if (broker.absent) {
        t.skip(`${broker.absent}: skipping`);
        return;
      }
      await consuming();
      await fn();
    });
  }

  amqpTest('order.shipped reaches the customer, the company, the admins, the shop and the watchers', async () => {
    const { id, customer, company, shop, admin, other } = await cast();
    const watcher = await seedClient({ sub: `${id}-watcher`, company_id: `${id}-c7` });
    const orderId = `${id}-o1`;
    // The customer and a colleague of the company track the same order.
    await emitWithAck(customer.socket, 'subscribe_order', orderId);
    await emitWithAck(watcher.socket, 'subscribe_order', orderId);

    const order = {
      orderId, orderNumber: 'ORD-1', status: 'shipped',
      customerId: `${id}-customer`, companyId: `${id}-c7`, shopId: `${id}-s3`,
    };
    await publishAmqp([['order.shipped', order]]);

    const [status] = await customer.rec.next('order:status_updated');
    assert.equal(status.message, 'Your order #ORD-1 is now shipped');
    assert.equal(status.orderId, orderId);
    // One order's update reaches both its customer and its company's watcher.
    const [customerUpdate] = await customer.rec.next('order:update');
    assert.deepEqual(customerUpdate, order);
    const [watcherUpdate] = await watcher.rec.next('order:update');
    assert.deepEqual(watcherUpdate, order);
    const [newOrder] = await company.rec.next('order:new_order');
    assert.deepEqual(newOrder, order);
    const [observed] = await admin.rec.next('order:new_order');
    assert.deepEqual(observed, order);
    const [shopOrder] = await shop.rec.next('order:shop_order');
    assert.equal(shopOrder.orderNumber, 'ORD-1');
    await heardNone(other, `${id}-other`, ['order:new_order', 'order:update', 'order:shop_order']);
    await heardNone(customer, `${id}-customer`, ['order:new_order', 'order:shop_order']);
  });

  amqpTest('payments, stock, transfers and notifications reach whom the seed says', async () => {
    const { id, customer, company, shop, admin, other } = await cast();
    const productId = `${id}-p1`;
    await emitWithAck(company.socket, 'subscribe_inventory', productId);
    await emitWithAck(customer.socket, 'subscribe_order', `${id}-o2`);
    const stock = { productId, productName: 'iPhone 15', quantity: 5, threshold: 10, companyId: `${id}-c7`, shopId: `${id}-s3` };
    await publishAmqp([
      ['payment.success', { paymentId: 'pay-1', orderId: `${id}-o2`, customerId: `${id}-customer`, status: 'paid' }],
      ['inventory.low_stock', { ...stock, severity: 'warning', message: 'iPhone 15 is running low (5 remaining)' }],
      ['inventory.updated', { ...stock, quantity: 4 }],
      ['inventory.out_of_stock', { ...stock, quantity: 0 }],
      ['transfer.completed', { transferId: 't-1', companyId: `${id}-c7`, status: 'completed' }],
      ['notification.user', { userId: `${id}-shop`, type: 'info', subject: 'Hello', content: 'Welcome' }],
      ['notification.announcement', { type: 'info', priority: 'high', subject: 'System Maintenance', content: 'Tonight at 2 AM' }],
    ]);

    assert.equal((await customer.rec.next('payment:status_updated'))[0].paymentId, 'pay-1');
    assert.equal((await customer.rec.next('payment:update'))[0].status, 'paid');
    const [low] = await company.rec.next('inventory:low_stock_alert');
    assert.equal(low.message, 'iPhone 15 is running low (5 remaining)');
    assert.equal((await shop.rec.next('inventory:low_stock_alert'))[0].quantity, 5);
    assert.equal((await company.rec.next('inventory:updated'))[0].quantity, 4);
    assert.equal((await shop.rec.next('inventory:shop_update'))[0].quantity, 4);
    assert.equal((await company.rec.next('inventory:stock_changed'))[0].quantity, 4);
    // Out of stock: an alert to everyone, the customer and another company included.
    for (const client of [customer, company, shop, admin, other]) {
      assert.equal((await client.rec.next('inventory:alert'))[0].quantity, 0);
    }
    assert.equal((await company.rec.next('transfer:status_update'))[0].transferId, 't-1');
    assert.equal((await shop.rec.next('notification:new'))[0].subject, 'Hello');
    for (const client of [customer, company, shop, admin, other]) {
      assert.equal((await client.rec.next('announcement:new'))[0].subject, 'System Maintenance');
    }
    await heardNone(other, `${id}-other`, ['inventory:low_stock_alert', 'inventory:updated', 'transfer:status_update', 'notification:new']);
    await heardNone(customer, `${id}-customer`, ['inventory:updated', 'notification:new']);
  });

  test('the HTTP API reaches the company and the admins', async () => {
    const { id, company, admin, other } = await cast();
    const data = { orderId: `${id}-o3`, orderNumber: 'ORD-3' };
    await server.publish({ tenant: 'marketplace', rooms: [`company:${id}-c7`, 'super_admin'], event: 'order:new_order', data });
    assert.deepEqual((await company.rec.next('order:new_order'))[0], data);
    assert.deepEqual((await admin.rec.next('order:new_order'))[0], data);
    await heardNone(other, `${id}-other`, ['order:new_order']);
  });

  test("the Redis adapter's emitter reaches users, companies and everyone", async (t) => {
    if (redis.absent) {
      t.skip(`${redis.absent}: skipping`);
      return;
    }
    const { id, customer, company, shop, other } = await cast();
    const emitter = new Emitter(redis.client, { key: EMITTER_KEY });
    // The seed's utility functions: emitToUser, emitToCompany, emitToShop, broadcastToAll.
    emitter.to(`user:${id}-customer`).emit('order:status_updated', { orderId: 'o-4', status: 'delivered' });
    emitter.to(`company:${id}-c7`).emit('inventory:updated', { productId: 'p-4', quantity: 9 });
    emitter.to(`shop:${id}-s3`).emit('inventory:shop_update', { productId: 'p-4', quantity: 9 });
    emitter.emit('notification:broadcast', { subject: 'Hello all' });
    assert.equal((await customer.rec.next('order:status_updated'))[0].status, 'delivered');
    assert.equal((await company.rec.next('inventory:updated'))[0].quantity, 9);
    assert.equal((await shop.rec.next('inventory:shop_update'))[0].quantity, 9);
    for (const client of [customer, company, shop, other]) {
      assert.equal((await client.rec.next('notification:broadcast'))[0].subject, 'Hello all');
    }
    await heardNone(other, `${id}-other`, ['order:status_updated', 'inventory:updated', 'inventory:shop_update']);
  });
});
