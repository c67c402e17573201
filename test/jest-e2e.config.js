'use strict';
// Black-box e2e: the built gateway and mock upstream run as real processes (dist/ must be built).
const { join } = require('node:path');

module.exports = {
  rootDir: join(__dirname, '..'),
  testEnvironment: 'node',
  testMatch: ['<rootDir>/test/e2e/**/*.e2e-spec.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json', isolatedModules: true }] },
  setupFiles: ['<rootDir>/test/setup-env.js'],
  globalSetup: '<rootDir>/test/redis-global-setup.js',
  globalTeardown: '<rootDir>/test/redis-global-teardown.js',
  testTimeout: 60000,
};
