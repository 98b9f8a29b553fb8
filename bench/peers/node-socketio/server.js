// A minimal socket.io 4.8 server for Roomcast's benchmark (bench/run.sh): every connection
// presents an HS256 token in its connect auth ({"token": "..."}), which is checked with the
// secret from BENCH_JWT_SECRET, and joins the room named by the token's `room` claim.
// `POST /api/publish` with Roomcast's body ({"rooms": [...], "event": "...", "data": ...})
// emits the event to those rooms. Binds 127.0.0.1 only; the port comes from argv[2] or PORT
// (0 for any), and the bound address is printed as "node-socketio listening on HOST:PORT".
//
// With BENCH_REDIS_URL set (redis://HOST:PORT/DB), it runs as one process of several sharing
// that Redis through @socket.io/redis-adapter: a publish posted to any of them reaches the
// subscribers of all. BENCH_REDIS_KEY names the adapter's channels (default "socket.io"), so
// that runs sharing a Redis do not hear each other.
"use strict";

const crypto = require("node:crypto");
const http = require("node:http");
const { Server } = require("socket.io");

const secret = process.env.BENCH_JWT_SECRET;
if (!secret) {
  console.error("BENCH_JWT_SECRET is not set");
  process.exit(2);
}
const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const redisUrl = process.env.BENCH_REDIS_URL;
const redisKey = process.env.BENCH_REDIS_KEY || "socket.io";

/** The claims of a valid, unexpired HS256 token, or null. */
function verify(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  let header;
  let claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], "base64url").toString("utf8"));
    claims = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
  } catch {
    return null;
  }
  if (header.alg !== "HS256") return null;
  const expected = crypto.createHmac("sha256", secret).update(`${parts[0]}.${parts[1]}`).digest();
  const given = Buffer.from(parts[2], "base64url");
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return null;
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) return null;
  return claims;
}

const httpServer = http.createServer((req, res) => {
  if (req.method !== "POST" || req.url !== "/api/publish") {
    res.writeHead(404, { "content-type": "application/json" });
    res.end('{"error":"not found"}');
    return;
  }
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      res.writeHead(400, { "content-type": "application/json" });
      res.end('{"error":"bad json"}');
      return;
    }
    io.to(body.rooms).emit(body.event, body.data);
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"ok":true}');
  });
});
// The publisher keeps its connections open between steps.
httpServer.keepAliveTimeout = 120_000;

const io = new Server(httpServer, { serveClient: false });

io.use((socket, next) => {
  const claims = verify(socket.handshake.auth && socket.handshake.auth.token);
  if (!claims) {
    next(new Error("invalid token"));
    return;
  }
  socket.data.room = typeof claims.room === "string" ? claims.room : "bench";
  next();
});

io.on("connection", (socket) => {
  socket.join(socket.data.room);
});

/** Puts the Redis adapter in place: one client publishes, a second one subscribes. */
async function useRedis(url, key) {
  const { createClient } = require("redis");
  const { createAdapter } = require("@socket.io/redis-adapter");
  const pubClient = createClient({ url });
  const subClient = pubClient.duplicate();
  for (const client of [pubClient, subClient]) {
    client.on("error", (e) => console.error(`redis: ${e.message}`));
  }
  await Promise.all([pubClient.connect(), subClient.connect()]);
  io.adapter(createAdapter(pubClient, subClient, { key }));
}

async function main() {
  if (redisUrl) {
    await useRedis(redisUrl, redisKey);
  }
  httpServer.listen(port, "127.0.0.1", () => {
    const { address, port: bound } = httpServer.address();
    console.log(`node-socketio listening on ${address}:${bound}`);
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
