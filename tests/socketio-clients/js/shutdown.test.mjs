// Graceful shutdown (SIGTERM): Socket.IO clients are told to reconnect elsewhere. For
// socket.io-client that is a clean end of the transport ("transport close"), after which it
// reconnects by itself (socket.active stays true); "io server disconnect" would instead stop
// it for good, and anything that is not an Engine.IO packet is a "transport error".
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
});
