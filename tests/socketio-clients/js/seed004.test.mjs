// Seed 004 (an e-commerce platform on Node socket.io 4.6) on roomcast by configuration alone:
// the shipped examples/seeds/seed-004.toml and the seed's socket.io-client code, which tells
// refusals apart by `connect_error`'s `error.message` and relays `typing` to custom rooms; and
// the services' events on RabbitMQ, published with amqplib as the seed's services do, reaching
// the customer, the company, the shop and the order's watchers.
//
// The RabbitMQ test needs the broker at 127.0.0.1:5672 (guest/guest): skipped without it, a
// failure under CI=true. The configuration is the shipped one with the exchange and queue
// renamed for this run (deleted at the end), so that runs never share them.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';

import amqp from 'amqplib';

import {
  REPO_ROOT,
  closeAll,
  closeTracked,
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

/** The shipped configuration, its exchange and queue renamed for this run. */
function seedConfig() {
  return readFileSync(path.join(REPO_ROOT, 'examples/seeds/seed-004.toml'), 'utf8')
    .replace('exchange = { name = "events"', `exchange = { name = "${EXCHANGE}"`)
    .replace('queue = { name = "websocket.events"', `queue = { name = "${QUEUE}"`);
}

let server;
let broker;
before(async () => {
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
});

/** The seed's client: io(url, { auth: { token } }), over both transports. */
function seedClient(token, transports) {
  return connectSio(server, '/', token, { transports });
}

describe('seed 004 configuration', () => {
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
        const { socket, rec } = seedClient(token, transports);
        try {
          const [error] = await rec.next('connect_error');
          assert.equal(error.message, message);
        } finally {
          closeAll(socket);
        }
      }
    });
  }

  test('typing reaches the others in a custom room, with the sender id', async () => {
    const a = seedClient(mint(server.secret, { sub: 1, company_id: 7 }), ['websocket']);
    const b = seedClient(mint(server.secret, { sub: 2, company_id: 7 }), ['websocket']);
    await a.rec.next('connected');
    await b.rec.next('connected');
    // With an ack, a join is answered once done (the seed's joins have no reply event).
    await emitWithAck(a.socket, 'join_room', 'chat-room');
    await emitWithAck(b.socket, 'join_room', 'chat-room');
    a.socket.emit('typing', { roomId: 'chat-room', isTyping: true });
    const [typing] = await b.rec.next('typing');
    assert.deepEqual(typing, { userId: 1, roomId: 'chat-room', isTyping: true });
  });
});

describe('seed 004 presence', () => {
  test('a colleague going online and offline is shown to the company', async () => {
    const staff = connectSio(server, '/', mint(server.secret, { sub: 11, company_id: 70 }));
    await staff.rec.next('connected');
    const [own] = await staff.rec.next('user:online');
    assert.equal(own.userId, '11');
    const colleague = connectSio(server, '/', mint(server.secret, { sub: 12, company_id: 70 }));
    await colleague.rec.next('connected');
    const [online] = await staff.rec.next('user:online');
    assert.equal(online.userId, '12');
    assert.equal(online.online, true);
    // A second tab of the same colleague: already online.
    const tab = connectSio(server, '/', mint(server.secret, { sub: 12, company_id: 70 }));
    await tab.rec.next('connected');
    closeAll(colleague.socket);
    closeAll(tab.socket);
    const [offline] = await staff.rec.next('user:offline');
    assert.deepEqual([offline.userId, offline.online], ['12', false]);
    assert.equal(staff.rec.all('user:online').length, 2);
  });
});

describe('seed 004 events from RabbitMQ', () => {
  /** Waits until the server consumes its queue (GET /health lists the source as up). */
  async function consuming() {
    for (let i = 0; i < 200; i += 1) {
      const { body } = await server.api('GET', '/health');
      if (body.ingest?.every((source) => source.state === 'up')) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error('the ingest source never connected');
  }

  test('order.shipped reaches the customer, the company, the shop and the order watchers', async (t) => {
    if (broker.absent) {
      t.skip(`${broker.absent}: skipping`);
      return;
    }
    await consuming();
    // A customer (no company: the marketplace tenant) tracking the order, company staff, the
    // shop's staff, and staff tracking the order.
    const customer = connectSio(server, '/', mint(server.secret, { sub: 42 }));
    const company = connectSio(server, '/', mint(server.secret, { sub: 1, company_id: 7 }));
    const shop = connectSio(server, '/', mint(server.secret, { sub: 2, company_id: 7, shop_ids: [3] }));
    const watcher = connectSio(server, '/', mint(server.secret, { sub: 5, company_id: 7 }));
    const other = connectSio(server, '/', mint(server.secret, { sub: 9, company_id: 8 }));
    for (const c of [customer, company, shop, watcher, other]) await c.rec.next('connected');
    await emitWithAck(customer.socket, 'subscribe_order', 'o-1');
    await emitWithAck(watcher.socket, 'subscribe_order', 'o-1');

    const channel = await broker.createConfirmChannel();
    const order = { orderId: 'o-1', orderNumber: 'ORD-1', status: 'shipped', customerId: 42, companyId: 7, shopId: 3 };
    channel.publish(EXCHANGE, 'order.shipped', Buffer.from(JSON.stringify(order)), { persistent: true });
    await channel.waitForConfirms();
    await channel.close();

    const [status] = await customer.rec.next('order:status_updated');
    assert.equal(status.message, 'Your order #ORD-1 is now shipped');
    assert.equal(status.orderId, 'o-1');
    const [customerUpdate] = await customer.rec.next('order:update');
    assert.equal(customerUpdate.orderId, 'o-1');
    const [newOrder] = await company.rec.next('order:new_order');
    assert.deepEqual(newOrder, order);
    const [shopOrder] = await shop.rec.next('order:shop_order');
    assert.equal(shopOrder.orderNumber, 'ORD-1');
    const [update] = await watcher.rec.next('order:update');
    assert.equal(update.status, 'shipped');
    // Another company hears nothing: a barrier published to it comes first.
    await server.publish({ tenant: '8', rooms: ['company:8'], event: 'barrier', data: 1 });
    await other.rec.next('barrier');
    assert.deepEqual(other.rec.all('order:new_order'), []);
  });
});
