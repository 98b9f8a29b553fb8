// Acknowledgements asked for by the client, answered by configured routes: a reply route
// (ping), a join route (join_room) and its refusal. Acks the server asks of the client are
// in fixture.test.mjs: no configured route makes roomcast ask for one.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  closeAll,
  connectedSio,
  emitWithAck,
  unique,
  useRoomcast,
} from './harness.mjs';

const server = useRoomcast();

describe('acks from client to server', () => {
  for (const transports of [['websocket'], ['polling']]) {
    test(`a reply route answers the ack with its data, not the event (${transports})`, async () => {
      const { socket, rec } = await connectedSio(server, server.token(unique('u'), 'acme'), {
        transports,
      });
      try {
        const ackArgs = await emitWithAck(socket, 'ping');
        assert.equal(ackArgs.length, 1);
        assert.match(ackArgs[0].timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        // Without an ack the same route emits `pong`; the ack above was instead of it.
        socket.emit('ping');
        await rec.next('pong');
        assert.equal(rec.all('pong').length, 1);
      } finally {
        closeAll(socket);
      }
    });
  }

  test('socket.emitWithAck resolves with the ack', async () => {
    const { socket } = await connectedSio(server, server.token(unique('u'), 'acme'), {
      transports: ['websocket'],
    });
    try {
      const answer = await socket.timeout(10_000).emitWithAck('ping');
      assert.equal(typeof answer.timestamp, 'string');
    } finally {
      closeAll(socket);
    }
  });

  test('a join route acks with its reply data once joined', async () => {
    const roomId = unique('room');
    const a = await connectedSio(server, server.token(unique('a'), 'acme'), {
      transports: ['websocket'],
      name: 'joiner',
    });
    const b = await connectedSio(server, server.token(unique('b'), 'acme'), {
      transports: ['websocket'],
      name: 'sender',
    });
    try {
      const ackArgs = await emitWithAck(a.socket, 'join_room', { roomId });
      assert.deepEqual(ackArgs, [{ roomId, room: `custom:${roomId}` }]);
      assert.deepEqual(a.rec.all('room_joined'), [], 'the ack answers instead of the event');
      // Joined: a relay to the room reaches it.
      await emitWithAck(b.socket, 'typing', { roomId, isTyping: true });
      assert.deepEqual((await a.rec.next('typing'))[0], { roomId, isTyping: true });
    } finally {
      closeAll(a.socket, b.socket);
    }
  });

  test('a join route without an ack emits its reply event', async () => {
    const roomId = unique('room');
    const { socket, rec } = await connectedSio(server, server.token(unique('u'), 'acme'), {
      transports: ['websocket'],
    });
    try {
      socket.emit('join_room', { roomId });
      const [reply] = await rec.next('room_joined');
      assert.deepEqual(reply, { roomId, room: `custom:${roomId}` });
    } finally {
      closeAll(socket);
    }
  });

  test('a relay route acks with no arguments once the event is handed over', async () => {
    const { socket } = await connectedSio(server, server.token(unique('u'), 'acme'), {
      transports: ['websocket'],
    });
    try {
      const ackArgs = await emitWithAck(socket, 'typing', { roomId: unique('room'), isTyping: true });
      assert.deepEqual(ackArgs, []);
    } finally {
      closeAll(socket);
    }
  });

  test('a refused join answers the ack with the error data', async () => {
    const { socket, rec } = await connectedSio(server, server.token(unique('u'), 'acme'), {
      transports: ['websocket'],
    });
    try {
      // No roomId: the room cannot be named, so the join is refused.
      const ackArgs = await emitWithAck(socket, 'join_room', {});
      assert.equal(ackArgs.length, 1);
      assert.equal(typeof ackArgs[0].message, 'string');
      assert.notEqual(ackArgs[0].message, '');
      assert.deepEqual(rec.all('room_joined'), []);
      // Without an ack, the refusal is the namespace's `error` event.
      socket.emit('join_room', {});
      const [error] = await rec.next('error');
      assert.equal(typeof error.message, 'string');
      assert.equal(socket.connected, true);
    } finally {
      closeAll(socket);
    }
  });
});
