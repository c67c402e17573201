'use strict';
// The HMAC request signature of SPEC §5, for the development tools (scripts/sign.js, the bench):
// hex HMAC-SHA256 over "<unix seconds>\n<METHOD>\n<path with query>\n<hex SHA-256 of the body>".
const { createHash, createHmac } = require('node:crypto');

/** The X-Client-Id, X-Timestamp and X-Signature headers for one request. */
function hmacHeaders(client, method, path, body, nowMs = Date.now()) {
  const timestamp = String(Math.floor(nowMs / 1000));
  const bodyHash = createHash('sha256').update(body, 'utf8').digest('hex');
  const signature = createHmac('sha256', client.secret).update(`${timestamp}\n${method.toUpperCase()}\n${path}\n${bodyHash}`).digest('hex');
  return { 'x-client-id': client.id, 'x-timestamp': timestamp, 'x-signature': signature };
}

module.exports = { hmacHeaders };
