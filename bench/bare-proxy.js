#!/usr/bin/env node
'use strict';
// The benchmark's baseline: the cheapest honest HTTP pass-through we can write in Node. A node:http
// server forwards method, path, headers and body to one upstream over an undici keep-alive pool and
// pipes the answer back (streamed responses included) without parsing either side. Whatever the
// gateway costs beyond this is the gateway's own overhead.
//
// Env: UPSTREAM (default http://127.0.0.1:8090), PORT (default 0 = any free port), HOST (127.0.0.1).
// Prints one JSON line containing "listening" once it accepts connections.
const http = require('node:http');
const { Pool } = require('undici');

const upstream = process.env.UPSTREAM ?? 'http://127.0.0.1:8090';
const port = Number.parseInt(process.env.PORT ?? '0', 10);
const host = process.env.HOST ?? '127.0.0.1';

// Hop-by-hop headers belong to one connection, not to the message (RFC 9110 §7.6.1); undici also
// refuses some of them on a request.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'expect',
]);

function strip(headers) {
  const out = {};
  for (const name in headers) if (!HOP_BY_HOP.has(name)) out[name] = headers[name];
  return out;
}

const pool = new Pool(upstream, {
  pipelining: 1,
  keepAliveTimeout: 60_000,
  keepAliveMaxTimeout: 600_000,
  headersTimeout: 60_000,
  bodyTimeout: 60_000,
});

const server = http.createServer({ noDelay: true, keepAliveTimeout: 65_000 }, (req, res) => {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool
    .stream(
      {
        path: req.url,
        method: req.method,
        headers: strip(req.headers),
        body: hasBody ? req : null,
      },
      // undici watches the writable it is handed: a client that goes away aborts the upstream request.
      ({ statusCode, headers }) => {
        res.writeHead(statusCode, strip(headers));
        return res;
      },
    )
    .catch((err) => {
      if (res.destroyed) return;
      if (!res.headersSent) {
        const text = JSON.stringify({ error: { message: `bare proxy: upstream failed: ${err.message}`, type: 'bare_proxy_error' } });
        res.writeHead(502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      } else {
        res.destroy(err);
      }
      process.stderr.write(`${JSON.stringify({ message: 'bare-proxy upstream error', error: err.message })}\n`);
    });
});
server.headersTimeout = 66_000;

server.on('error', (err) => {
  process.stderr.write(`${JSON.stringify({ message: 'bare-proxy failed', error: err.message })}\n`);
  process.exit(1);
});

server.listen(port, host, () => {
  process.stdout.write(`${JSON.stringify({ message: 'bare-proxy listening', port: server.address().port, upstream })}\n`);
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.closeAllConnections();
  server.close(() => {
    pool.close().finally(() => process.exit(0));
  });
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Started by the bench with an IPC channel: never outlive it.
if (process.send) process.on('disconnect', stop);
