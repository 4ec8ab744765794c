'use strict';

// A broadcast server on Node.js `ws`, as a fan-out peer for roomcast's benchmarks.
//
// The broadcast from the ws README ("Server broadcast"): every text frame one
// client sends is written to every open client, the sender included, with
// `client.send()` inside `wss.clients.forEach`. send() never waits: ws queues
// the frame in the socket's write buffer (no backpressure; a slow client's
// buffer grows, which `ws.bufferedAmount` would show).
//
// Contract (see benchmarks/README.md): WebSocket endpoint /ws; right after a
// connection is accepted (ws adds it to wss.clients before the 'connection'
// event) it is sent {"type":"ready"}.
//
// Settings: no per-message compression; everything else is ws's default (ws
// sends no pings of its own).
//
// Run:
//
//     npm ci --prefix benchmarks/peers/node-ws
//     node benchmarks/peers/node-ws/server.js --port 8005

const { parseArgs } = require('node:util');
const { WebSocketServer, WebSocket } = require('ws');

const READY = '{"type":"ready"}';
const CLOSE_GRACE_MS = 2000;

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8005' },
  },
});

const wss = new WebSocketServer({
  port: Number(values.port),
  host: values.host,
  perMessageDeflate: false,
  path: '/ws',
});

wss.on('connection', (ws) => {
  ws.on('error', () => {}); // a client's socket error closes that socket; nothing else to do
  ws.on('message', (data, isBinary) => {
    if (isBinary) return; // the contract broadcasts text frames only
    wss.clients.forEach((client) => {
      if (client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: false });
      }
    });
  });
  ws.send(READY);
});

function shutdown() {
  // Stop accepting, say goodbye to every client, and let the process end once the
  // last socket is gone; terminate stragglers that do not finish the closing handshake.
  wss.close();
  for (const client of wss.clients) client.close(1001, 'server shutdown');
  setTimeout(() => {
    for (const client of wss.clients) client.terminate();
  }, CLOSE_GRACE_MS).unref();
}

process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
