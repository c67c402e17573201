#!/usr/bin/env node
'use strict';
// Mints a short-lived JWT with the development key pair (dev/), for `npm start` and Swagger UI.
// Usage: npm run token -- --product demo --user alice [--ttl 900] [--alg RS256|ES256] [--scope keygate.admin]
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const { parseArgs } = require('node:util');
const jwt = require('jsonwebtoken');
const { DEV_ISSUER } = require('../dev/demo-env');

const { values } = parseArgs({
  options: {
    product: { type: 'string', default: 'demo' },
    user: { type: 'string', default: 'dev-user' },
    ttl: { type: 'string', default: '900' },
    alg: { type: 'string', default: 'RS256' },
    scope: { type: 'string' },
    audience: { type: 'string', default: 'keygate' },
    issuer: { type: 'string', default: DEV_ISSUER },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write('npm run token -- --product P --user U [--ttl S] [--alg RS256|ES256] [--scope S] [--issuer I] [--audience A]\n');
  process.exit(0);
}
const ttl = Number(values.ttl);
if (!Number.isInteger(ttl) || ttl < 1) {
  process.stderr.write('--ttl must be a whole number of seconds\n');
  process.exit(2);
}
const alg = values.alg.toUpperCase();
if (alg !== 'RS256' && alg !== 'ES256') {
  process.stderr.write('--alg must be RS256 or ES256\n');
  process.exit(2);
}
const kid = alg === 'RS256' ? 'dev-rs256' : 'dev-es256';
const key = readFileSync(join(__dirname, '..', 'dev', `${kid}.key.pem`), 'utf8');
const claims = { product: values.product, ...(values.scope ? { scope: values.scope } : {}) };
const token = jwt.sign(claims, key, {
  algorithm: alg,
  keyid: kid,
  subject: values.user,
  issuer: values.issuer,
  audience: values.audience,
  expiresIn: ttl,
});
process.stdout.write(token + '\n');
