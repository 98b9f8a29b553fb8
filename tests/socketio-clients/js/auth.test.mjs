// The JWT in the CONNECT packet's auth payload: accepted tokens get the namespace's greeting
// with their identity; refused ones get CONNECT_ERROR with a message, which socket.io-client
// reports as `connect_error` without retrying (socket.active is false).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { closeAll, connectSio, mint, unique, useRoomcast } from './harness.mjs';

const server = useRoomcast();

/** Connects with `auth` and expects a refusal; returns the connect_error's Error. */
async function refused(auth, transports = ['websocket']) {
  const { socket, rec } = connectSio(server, '/', undefined, { transports, auth });
  try {
    const [err] = await rec.next('connect_error');
    assert.ok(err instanceof Error);
    assert.equal(typeof err.message, 'string');
    assert.notEqual(err.message, '', 'CONNECT_ERROR carries a message');
    // A CONNECT_ERROR packet from the server (not a transport failure): the client does not
    // retry by itself, and it never connected nor got the greeting.
    assert.equal(socket.active, false, `refusal was not a CONNECT_ERROR packet: ${err.message}`);
    assert.equal(socket.connected, false);
    assert.deepEqual(rec.all('connect'), []);
    assert.deepEqual(rec.all('connected'), []);
    return err;
  } finally {
    closeAll(socket);
  }
}

describe('authentication', () => {
  for (const transports of [['websocket'], ['polling']]) {
    test(`a valid token is accepted and greeted with its identity (${transports})`, async () => {
      const user = unique('u');
      const { socket, rec } = connectSio(server, '/', server.token(user, 'acme'), { transports });
      try {
        await rec.next('connect');
        assert.equal(socket.connected, true);
        assert.equal(typeof socket.id, 'string');
        const [greeting] = await rec.next('connected');
        assert.deepEqual(greeting, { user_id: user, tenant_id: 'acme', socketId: socket.id });
      } finally {
        closeAll(socket);
      }
    });
  }

  test('each connection gets its own socket id in its greeting', async () => {
    const token = server.token(unique('u'), 'acme');
    const a = connectSio(server, '/', token, { transports: ['websocket'] });
    const b = connectSio(server, '/', token, { transports: ['websocket'] });
    try {
      const [ga] = await a.rec.next('connected');
      const [gb] = await b.rec.next('connected');
      assert.equal(ga.socketId, a.socket.id);
      assert.equal(gb.socketId, b.socket.id);
      assert.notEqual(ga.socketId, gb.socketId);
    } finally {
      closeAll(a.socket, b.socket);
    }
  });

  test('a token signed with another secret is refused', async () => {
    const token = mint('not-the-server-secret-0123456789abcdef', { sub: 'u1', tenant_id: 'acme' });
    await refused({ token });
  });

  test('a token signed with another secret is refused over polling too', async () => {
    const token = mint('not-the-server-secret-0123456789abcdef', { sub: 'u1', tenant_id: 'acme' });
    await refused({ token }, ['polling']);
  });

  test('an expired token is refused', async () => {
    const exp = Math.floor(Date.now() / 1000) - 3600;
    await refused({ token: server.token('u1', 'acme', { exp }) });
  });

  test('a malformed token is refused', async () => {
    await refused({ token: 'not.a.jwt' });
  });

  test('no token at all is refused', async () => {
    await refused(undefined);
  });

  test('a refused socket can connect afterwards with a good token', async () => {
    const user = unique('u');
    const { socket, rec } = connectSio(server, '/', undefined, {
      transports: ['websocket'],
      auth: { token: 'not.a.jwt' },
    });
    try {
      await rec.next('connect_error');
      socket.auth = { token: server.token(user, 'acme') };
      socket.connect();
      await rec.next('connect');
      const [greeting] = await rec.next('connected');
      assert.equal(greeting.user_id, user);
    } finally {
      closeAll(socket);
    }
  });
});
