// Binary events through a relay route: a Buffer emitted by one client reaches the others in
// the room as a Buffer, byte for byte, over WebSocket (binary frames) and over polling
// (base64 in the payload), and the sender is left out.

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

/** Every byte value, then some more: 300 bytes. */
const ALL_BYTES = Buffer.from(Array.from({ length: 300 }, (_, i) => i % 256));

/** The bytes of a received binary value (a Buffer in Node, whatever the transport). */
function bytes(value, what) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  assert.fail(`${what} arrived as ${JSON.stringify(value)}, not as binary`);
}

async function pair(senderTransports, receiverTransports) {
  const roomId = unique('bin');
  const sender = await connectedSio(server, server.token(unique('s'), 'acme'), {
    transports: senderTransports,
    name: 'sender',
  });
  const receiver = await connectedSio(server, server.token(unique('r'), 'acme'), {
    transports: receiverTransports,
    name: 'receiver',
  });
  await emitWithAck(sender.socket, 'join_room', { roomId });
  await emitWithAck(receiver.socket, 'join_room', { roomId });
  return { roomId, sender, receiver };
}

describe('binary', () => {
  for (const [from, to] of [
    [['websocket'], ['websocket']],
    [['websocket'], ['polling']],
    [['polling'], ['websocket']],
    [['polling'], ['polling']],
  ]) {
    test(`a Buffer relayed from ${from} to ${to} arrives intact`, async () => {
      const { roomId, sender, receiver } = await pair(from, to);
      try {
        const payload = {
          roomId,
          isTyping: true,
          blob: ALL_BYTES,
          nested: { parts: [Buffer.from([1, 2, 3]), 'text', Buffer.alloc(0)] },
        };
        // The ack comes once the relay is handed over; the sender is not among the receivers.
        assert.deepEqual(await emitWithAck(sender.socket, 'typing', payload, Buffer.from('second')), []);
        const args = await receiver.rec.next('typing');
        assert.equal(args.length, 2);
        const [got, second] = args;
        assert.equal(got.roomId, roomId);
        assert.equal(got.isTyping, true);
        assert.ok(bytes(got.blob, 'blob').equals(ALL_BYTES), 'blob bytes differ');
        assert.ok(bytes(got.nested.parts[0], 'parts[0]').equals(Buffer.from([1, 2, 3])));
        assert.equal(got.nested.parts[1], 'text');
        assert.equal(bytes(got.nested.parts[2], 'parts[2]').length, 0);
        assert.equal(bytes(second, 'second argument').toString(), 'second');

        // The sender's ack came after anything the relay would have queued to it.
        assert.deepEqual(sender.rec.all('typing'), [], 'the sender got its own relay');
      } finally {
        closeAll(sender.socket, receiver.socket);
      }
    });
  }

  test('a relay reaches every other member of the room, and not the sender', async () => {
    const { roomId, sender, receiver } = await pair(['websocket'], ['websocket']);
    const third = await connectedSio(server, server.token(unique('t'), 'acme'), {
      transports: ['websocket'],
      name: 'third',
    });
    const outsider = await connectedSio(server, server.token(unique('o'), 'acme'), {
      transports: ['websocket'],
      name: 'outsider',
    });
    try {
      await emitWithAck(third.socket, 'join_room', { roomId });
      await emitWithAck(sender.socket, 'typing', { roomId, isTyping: false });
      assert.deepEqual((await receiver.rec.next('typing'))[0], { roomId, isTyping: false });
      assert.deepEqual((await third.rec.next('typing'))[0], { roomId, isTyping: false });
      // Barrier for the outsider: an event of its own, published after the relay.
      await server.publish({
        tenant: 'acme',
        rooms: [`user:${outsider.greeting.user_id}`],
        namespace: '/',
        event: 'barrier',
        data: {},
      });
      await outsider.rec.next('barrier');
      assert.deepEqual(outsider.rec.all('typing'), [], 'a socket outside the room got the relay');
      assert.deepEqual(sender.rec.all('typing'), []);
    } finally {
      closeAll(sender.socket, receiver.socket, third.socket, outsider.socket);
    }
  });
});
