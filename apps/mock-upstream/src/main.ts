import type { AddressInfo } from 'node:net';
import { closeMockServer, createMockServer } from './mock.server';

/**
 * Entry point: `PORT` (default 8090, 0 = pick a free port), `HOST` (default
 * 127.0.0.1), `MOCK_ACCEPT_ANY_KEY=true` to accept any non-empty API key.
 * Prints exactly one JSON line once listening so scripts can wait for it.
 */
function main(): void {
  const port = Number.parseInt(process.env.PORT ?? '8090', 10);
  const host = process.env.HOST ?? '127.0.0.1';
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    process.stderr.write(`${JSON.stringify({ message: 'mock-upstream invalid PORT', port: process.env.PORT })}\n`);
    process.exit(1);
  }

  const server = createMockServer({ acceptAnyKey: process.env.MOCK_ACCEPT_ANY_KEY === 'true' });

  server.on('error', (err) => {
    process.stderr.write(`${JSON.stringify({ message: 'mock-upstream failed', error: err.message })}\n`);
    process.exit(1);
  });

  server.listen(port, host, () => {
    const { port: actual } = server.address() as AddressInfo;
    process.stdout.write(`${JSON.stringify({ message: 'mock-upstream listening', port: actual })}\n`);
  });

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    // Stalled test streams never finish on their own, so connections are dropped, not drained.
    closeMockServer(server).then(
      () => process.exit(0),
      () => process.exit(0),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
