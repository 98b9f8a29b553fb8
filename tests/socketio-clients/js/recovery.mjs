// What the connection state recovery tests share (recovery.test.mjs, one node;
// recovery-cluster.test.mjs, two nodes over Redis).

import assert from 'node:assert/strict';

import { io } from 'socket.io-client';

import { Recorder, suiteConfig } from './harness.mjs';

/** The suite's configuration with recovery on, sessions kept `ms` after a disconnection. */
export function recoveryConfig(ms) {
  return `${suiteConfig()}
[socketio.recovery]
enabled = true
max_disconnection_ms = ${ms}
`;
}

/**
 * A socket with recovery's auth (socket.io-client adds pid and offset itself), no automatic
 * reconnection (the test reconnects when it has published what the client misses), and a
 * recorder that survives disconnections.
 */
export function recoverable(server, user, transports, url = server.url) {
  const socket = io(`${url}/`, {
    path: '/socket.io/',
    auth: { token: server.token(user, 'acme') },
    forceNew: true,
    reconnection: false,
    autoConnect: false,
    transports,
  });
  const rec = new Recorder(`${user} socket`, ['connect_error']);
  socket.onAny((event, ...args) => rec.push(event, args));
  for (const event of ['connect', 'connect_error', 'disconnect']) {
    socket.on(event, (...args) => rec.push(event, args));
  }
  socket.connect();
  return { socket, rec };
}

/** Closes the connection under the socket, without leaving the namespace (as a network
 * failure would): the server sees the transport close. */
export async function drop(socket, rec) {
  socket.io.engine.close();
  const [reason] = await rec.next('disconnect');
  assert.equal(reason, 'forced close');
}

/** The data of every `name` event received, without the offset argument. */
export function received(rec, name) {
  return rec.all(name).map((args) => args[0]);
}

