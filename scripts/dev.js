#!/usr/bin/env node
'use strict';
// `npm start`: runs the bundled mock upstream and the gateway (demo product, development keys,
// in-memory limits) from the build in dist/. Ctrl-C stops both.
const { spawn } = require('node:child_process');
const { join } = require('node:path');
const { demoEnv } = require('../dev/demo-env');

const root = join(__dirname, '..');
const mockPort = Number(process.env.MOCK_PORT ?? 8090);
const port = Number(process.env.PORT ?? 8080);
const children = [];

function run(name, script, env) {
  const child = spawn(process.execPath, [join(root, script)], { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit'] });
  child.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`${name} exited (${signal ?? code}); stopping\n`);
      stop(code ?? 1);
    }
  });
  children.push(child);
}

let stopping = false;
function stop(code = 0) {
  stopping = true;
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 500).unref();
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

run('mock-upstream', 'dist/apps/mock-upstream/main.js', { PORT: String(mockPort) });
// This machine only: the development keys are public, so anyone who can reach the port can mint tokens.
run('gateway', 'dist/apps/gateway/main.js', {
  PORT: String(port),
  API_KEY_SERVER_LISTEN_ADDRESS: process.env.API_KEY_SERVER_LISTEN_ADDRESS ?? '127.0.0.1',
  ...demoEnv(mockPort),
});
process.stderr.write(
  [
    '',
    `keygate on http://127.0.0.1:${port} (Swagger UI: http://127.0.0.1:${port}/docs), mock upstream on :${mockPort}`,
    'Mint a token:  npm run token -- --product demo --user alice',
    '',
  ].join('\n'),
);
