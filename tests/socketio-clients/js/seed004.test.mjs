// Seed 004 (an e-commerce platform on Node socket.io 4.6) on roomcast by configuration alone:
// the shipped examples/seeds/seed-004.toml and the seed's socket.io-client code, which tells
// refusals apart by `connect_error`'s `error.message` and relays `typing` to custom rooms.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';

import { closeAll, closeTracked, connectSio, emitWithAck, mint, startRoomcast } from './harness.mjs';

let server;
before(async () => {
  server = await startRoomcast({ configFile: 'examples/seeds/seed-004.toml' });
});
afterEach(closeTracked);
after(async () => {
  await server?.stop();
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
