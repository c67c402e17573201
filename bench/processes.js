'use strict';
// What bench.js and profile.js both need to start keygate's processes the same way.
const net = require('node:net');

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** The environment without the caller's keygate configuration, which must not leak into a measurement. */
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(API_KEY_SERVER_|USE_SECRET_MANAGER$|GOOGLE_|LOG_LEVEL$|PORT$|HOST$|MOCK_|UPSTREAM$)/.test(k)) continue;
    env[k] = v;
  }
  return env;
}

/**
 * The policy file of a measured gateway: rate limits, daily caps and token quotas far above any
 * load, so every request pays for its counters and its token reservation but none is refused.
 */
const UNREACHABLE_LIMITS_POLICY = [
  'defaults:',
  '  limits:',
  '    requests_per_second: 1000000',
  '    user_requests_per_second: 1000000',
  '    daily_requests: 1000000000',
  '    user_daily_requests: 1000000000',
  '    daily_tokens: 100000000000',
  '    user_daily_tokens: 100000000000',
  '',
].join('\n');

module.exports = { freePort, cleanEnv, UNREACHABLE_LIMITS_POLICY };
