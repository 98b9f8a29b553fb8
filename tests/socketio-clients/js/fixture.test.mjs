// socket.io-client 4.8 against the library fixture `sio-fixture` (examples/src/bin), the
// Socket.IO runtime of roomcast-socketio driven by handlers in code, as the official protocol
// test suite expects it: `message` comes back as `message-back`, `message-with-ack` is acked
// with its own arguments, binary included.
//
// The server-to-client ack belongs here: roomcast's configuration has no way to make the
// server ask a client for an ack, only a program using the library can; the fixture's extra
// `ask-ack` event does.
//
// Without the fixture (its source not written yet, or not built) every test here is skipped
// and says why.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';

import {
  closeAll,
  closeTracked,
  connectSio,
  emitWithAck,
  enginePings,
  nextUpgrade,
  startFixture,
} from './harness.mjs';

let fixture;
let skip = false;
before(async () => {
  fixture = await startFixture();
  if (fixture.skip) skip = `sio-fixture unavailable: ${fixture.skip}`;
});
afterEach(closeTracked);
after(async () => {
  if (!skip) await fixture?.stop();
});

/** The fixture speaks to whoever connects; the suite's `auth` is just echoed back. */
function connect(ns, transports) {
  return connectSio({ url: fixture.url }, ns, 'fixture-token', { transports });
}

const BYTES = Buffer.from([0, 1, 2, 3, 250, 255]);

function bytes(value) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  assert.fail(`${JSON.stringify(value)} is not binary`);
}

describe('sio-fixture (the roomcast-socketio library)', () => {
  for (const transports of [['websocket'], ['polling']]) {
    test(`binary message -> message-back (${transports})`, async (t) => {
      if (skip) return t.skip(skip);
      const { socket, rec } = connect('/', transports);
      try {
        await rec.next('connect');
        socket.emit('message', 'text', 1, { a: BYTES }, BYTES);
        const [text, one, obj, buf] = await rec.next('message-back');
        assert.equal(text, 'text');
        assert.equal(one, 1);
        assert.ok(bytes(obj.a).equals(BYTES));
        assert.ok(bytes(buf).equals(BYTES));
      } finally {
        closeAll(socket);
      }
    });

    test(`client-to-server ack with binary (message-with-ack) (${transports})`, async (t) => {
      if (skip) return t.skip(skip);
      const { socket, rec } = connect('/', transports);
      try {
        await rec.next('connect');
        assert.deepEqual(await emitWithAck(socket, 'message-with-ack', 1, '2', { 3: [4] }), [
          1,
          '2',
          { 3: [4] },
        ]);
        const [buf, text] = await emitWithAck(socket, 'message-with-ack', BYTES, 'x');
        assert.ok(bytes(buf).equals(BYTES), 'a binary ack came back changed');
        assert.equal(text, 'x');
      } finally {
        closeAll(socket);
      }
    });
  }

  test('the CONNECT auth payload reaches the handler (auth event)', async (t) => {
    if (skip) return t.skip(skip);
    const { socket, rec } = connect('/custom', ['websocket']);
    try {
      await rec.next('connect');
      const [auth] = await rec.next('auth');
      assert.deepEqual(auth, { token: 'fixture-token' });
    } finally {
      closeAll(socket);
    }
  });

  for (const transports of [['websocket'], ['polling']]) {
    test(`heartbeats keep the session alive (${transports})`, async (t) => {
      if (skip) return t.skip(skip);
      const { socket, rec } = connect('/', transports);
      try {
        await rec.next('connect');
        const sessionId = socket.io.engine.id;
        await enginePings(socket.io.engine, 5);
        assert.equal(socket.connected, true);
        assert.equal(socket.io.engine.id, sessionId);
        socket.emit('message', 'still here');
        assert.deepEqual(await rec.next('message-back'), ['still here']);
        assert.deepEqual(rec.all('disconnect'), []);
      } finally {
        closeAll(socket);
      }
    });
  }

  test('polling upgraded to WebSocket, binary before and after', async (t) => {
    if (skip) return t.skip(skip);
    const { socket, rec } = connect('/', ['polling', 'websocket']);
    const upgraded = nextUpgrade(socket.io.engine);
    try {
      await rec.next('connect');
      socket.emit('message', BYTES, 'before');
      assert.equal(await upgraded, 'websocket');
      assert.equal(socket.io.engine.transport.name, 'websocket');
      socket.emit('message', BYTES, 'after');
      for (const when of ['before', 'after']) {
        const [buf, text] = await rec.next('message-back');
        assert.ok(bytes(buf).equals(BYTES));
        assert.equal(text, when);
      }
    } finally {
      closeAll(socket);
    }
  });

  test('an unknown namespace gets connect_error "Invalid namespace"', async (t) => {
    if (skip) return t.skip(skip);
    const { socket, rec } = connect('/nope', ['websocket']);
    try {
      const [err] = await rec.next('connect_error');
      assert.equal(err.message, 'Invalid namespace');
      assert.equal(socket.active, false);
    } finally {
      closeAll(socket);
    }
  });

  for (const transports of [['websocket'], ['polling']]) {
    test(`server-to-client ack (${transports})`, async (t) => {
      if (skip) return t.skip(skip);
      const { socket, rec } = connect('/', transports);
      try {
        // The client's handler answers the server's question through its ack callback.
        socket.on('question', (...args) => {
          const answer = args.pop();
          answer('answer', ...args);
        });
        await rec.next('connect');
        socket.emit('ask-ack', 1, { two: 2 });
        assert.deepEqual(await rec.next('acked'), ['answer', 1, { two: 2 }]);
      } finally {
        closeAll(socket);
      }
    });
  }
});
