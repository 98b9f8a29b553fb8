// Graceful shutdown (SIGTERM): Socket.IO clients are told to reconnect elsewhere. For
// socket.io-client that is a clean end of the transport ("transport close"), after which it
// reconnects by itself (socket.active stays true); "io server disconnect" would instead stop
// it for good, and anything that is not an Engine.IO packet is a "transport error".
// Over long-polling the server stops accepting, so a session whose client has no GET pending
// could only be reached by a request that cannot arrive: such sessions end at once, pending
// GETs get the close packet, and the server exits without waiting out its grace period.
// Each test starts its own server, since it stops it.

import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { closeTracked, connectedSio, connectNative, startRoomcast, unique } from './harness.mjs';

afterEach(closeTracked);

describe('graceful shutdown', () => {
  for (const transports of [['websocket'], ['polling']]) {
    test(`SIGTERM ends the transport cleanly; the client will reconnect (${transports})`, async () => {
      const server = await startRoomcast();
      try {
        const user = unique('u');
        const token = server.token(user, 'acme');
        const { socket, rec } = await connectedSio(server, token, { transports, reconnection: true });
        const native = await connectNative(server, token);
        const stopped = server.stop();
        const [reason] = await rec.next('disconnect');
        assert.equal(reason, 'transport close');
        assert.equal(socket.active, true, 'the client was told not to reconnect');
        // The native client of the same server is told to go elsewhere with close code 1001.
        const [code] = await native.rec.next('close');
        assert.equal(code, 1001);
        await stopped;
      } finally {
        await server.stop();
      }
    });
  }

  test('SIGTERM with many polling clients does not wait out the grace period', async () => {
    // A grace period far longer than the harness's stop timeout: needing it fails the test.
    const server = await startRoomcast({ env: { ROOMCAST_SHUTDOWN__GRACE_MS: '600000' } });
    try {
      const clients = [];
      for (let i = 0; i < 8; i++) {
        const token = server.token(unique('p'), 'acme');
        clients.push(await connectedSio(server, token, { transports: ['polling'], reconnection: true }));
      }
      // A handshake that never connects to a namespace counts and ends too.
      const bare = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
      assert.equal(bare.status, 200);
      await bare.text();

      const exit = await server.stop();
      assert.deepEqual(exit, { code: 0, signal: null }, 'the server exited by itself');
      assert.match(server.log(), /all connections drained/);
      assert.doesNotMatch(server.log(), /grace period over/);
      for (const { socket, rec } of clients) {
        const [reason] = await rec.next('disconnect');
        assert.ok(['transport close', 'transport error'].includes(reason), reason);
        assert.equal(socket.active, true, 'the client reconnects by itself');
      }
    } finally {
      await server.stop();
    }
  });
});
