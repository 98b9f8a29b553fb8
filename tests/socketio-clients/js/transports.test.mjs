// Engine.IO transports with socket.io-client 4.8: WebSocket only, HTTP long-polling only, and
// the default polling start upgraded to WebSocket.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  closeAll,
  connectSio,
  emitWithAck,
  enginePings,
  nextUpgrade,
  unique,
  useRoomcast,
} from './harness.mjs';

const server = useRoomcast();

/** Connects with `transports`, checks the greeting, a ping -> pong and an ack round trip. */
async function roundTrip(transports) {
  const user = unique('u');
  const { socket, rec } = connectSio(server, '/', server.token(user, 'acme'), { transports });
  try {
    await rec.next('connect');
    const [greeting] = await rec.next('connected');
    assert.equal(greeting.user_id, user);
    assert.equal(greeting.socketId, socket.id);

    socket.emit('ping');
    const [pong] = await rec.next('pong');
    assert.equal(typeof pong.timestamp, 'string');

    const [ack] = await emitWithAck(socket, 'ping');
    assert.equal(typeof ack.timestamp, 'string');

    // A server push over this transport: an API publish to the user's own room.
    const data = { transports: transports.join('+'), n: 1 };
    const res = await server.publish({
      tenant: 'acme',
      rooms: [`user:${user}`],
      namespace: '/',
      event: 'transport:check',
      data,
    });
    assert.equal(res.delivered, 1);
    const [received] = await rec.next('transport:check');
    assert.deepEqual(received, data);
    return socket;
  } catch (err) {
    closeAll(socket);
    throw err;
  }
}

describe('transports', () => {
  test('WebSocket only', async () => {
    const socket = await roundTrip(['websocket']);
    assert.equal(socket.io.engine.transport.name, 'websocket');
    closeAll(socket);
  });

  test('HTTP long-polling only', async () => {
    const socket = await roundTrip(['polling']);
    assert.equal(socket.io.engine.transport.name, 'polling');
    closeAll(socket);
  });

  for (const transports of [['websocket'], ['polling']]) {
    test(`heartbeats keep the session alive (${transports})`, async () => {
      const user = unique('u');
      const { socket, rec } = connectSio(server, '/', server.token(user, 'acme'), { transports });
      try {
        await rec.next('connect');
        const sessionId = socket.io.engine.id;
        // The client answers every ping with a pong; the session outlives several rounds.
        await enginePings(socket.io.engine, 4);
        assert.equal(socket.connected, true);
        assert.equal(socket.io.engine.id, sessionId);
        const [ack] = await emitWithAck(socket, 'ping');
        assert.equal(typeof ack.timestamp, 'string');
        assert.deepEqual(rec.all('disconnect'), []);
      } finally {
        closeAll(socket);
      }
    });
  }

  test('polling upgraded to WebSocket (default transports)', async () => {
    const user = unique('u');
    const { socket, rec } = connectSio(server, '/', server.token(user, 'acme'), {});
    const engine = socket.io.engine;
    const upgraded = nextUpgrade(engine);
    try {
      assert.equal(engine.transport.name, 'polling', 'the default transports start with polling');

      await rec.next('connect');
      await rec.next('connected');
      // Acks asked for around the upgrade are all answered: nothing is lost in the switch.
      const early = Array.from({ length: 5 }, () => emitWithAck(socket, 'ping'));

      assert.equal(await upgraded, 'websocket');
      assert.equal(socket.io.engine.transport.name, 'websocket');
      assert.equal((await Promise.all(early)).length, 5);

      const [ack] = await emitWithAck(socket, 'ping');
      assert.equal(typeof ack.timestamp, 'string');
      const data = { after: 'upgrade' };
      await server.publish({
        tenant: 'acme',
        rooms: [`user:${user}`],
        namespace: '/',
        event: 'transport:check',
        data,
      });
      assert.deepEqual((await rec.next('transport:check'))[0], data);
    } finally {
      closeAll(socket);
    }
  });
});
