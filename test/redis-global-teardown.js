'use strict';
// Stops the private redis-server the global setup started, if any.
module.exports = async function redisGlobalTeardown() {
  const child = globalThis.__KEYGATE_PRIVATE_REDIS__;
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  }
};
