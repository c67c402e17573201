'use strict';
// SPEC §8: Redis-backed suites use API_KEY_SERVER_REDIS_URL, else a Redis on 127.0.0.1:6379, else
// a private redis-server started here from PATH, else fail with a message saying how to get one.
const { spawn, spawnSync } = require('node:child_process');
const net = require('node:net');

function reachable(host, port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, timeout: 500 }, () => {
      socket.write('PING\r\n');
    });
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('timeout', () => (socket.destroy(), resolve(false)));
    socket.once('error', () => resolve(false));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.once('error', reject);
  });
}

module.exports = async function redisGlobalSetup() {
  if (process.env.API_KEY_SERVER_REDIS_URL) return;
  if (await reachable('127.0.0.1', 6379)) {
    process.env.API_KEY_SERVER_REDIS_URL = 'redis://127.0.0.1:6379';
    return;
  }
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    throw new Error(
      'The Redis-backed tests need a Redis: set API_KEY_SERVER_REDIS_URL, run one on 127.0.0.1:6379, or install redis-server (Debian: apt-get install redis-server; macOS: brew install redis).',
    );
  }
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
    detached: false,
  });
  for (let i = 0; i < 50 && !(await reachable('127.0.0.1', port)); i++) await new Promise((r) => setTimeout(r, 100));
  if (!(await reachable('127.0.0.1', port))) throw new Error(`a private redis-server on port ${port} did not start`);
  process.env.API_KEY_SERVER_REDIS_URL = `redis://127.0.0.1:${port}`;
  globalThis.__KEYGATE_PRIVATE_REDIS__ = child;
};
