'use strict';
// Deployment checks: Kubernetes manifests, Terraform, the Dockerfile and the workflows
// (`npm run test:deploy`). Needs kubectl (with kustomize) and terraform on PATH.
const { join } = require('node:path');

module.exports = {
  rootDir: join(__dirname, '..', '..'),
  testEnvironment: 'node',
  testMatch: ['<rootDir>/test/deploy/**/*.spec.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json', isolatedModules: true }] },
  setupFiles: ['<rootDir>/test/setup-env.js'],
  testTimeout: 120000,
  // @cdktf/hcl2json runs Go compiled to WebAssembly, whose scheduler leaves a timer behind for
  // about a second after the last parse; don't report it as a leak.
  openHandlesTimeout: 5000,
};
