// Seed 002 (python-socketio mounted under /ws) on roomcast by configuration alone: the shipped
// examples/seeds/seed-002.toml. Its clients connect to "/ws/provisioning" (socket.io-client
// reads the URL's path as the namespace) while its backend publishes to "/provisioning".

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';

import { closeAll, closeTracked, connectSio, mint, startRoomcast } from './harness.mjs';

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
