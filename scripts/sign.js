#!/usr/bin/env node
'use strict';
// Prints the three HMAC headers (SPEC §5) for one request, as curl -H arguments.
// Usage: npm run -s sign -- --method POST --path /v1/chat/completions --body '{"model":...}'
//        [--client demo-client --secret ...]   (defaults: the development client of dev/demo-env.js)
const { createHash, createHmac } = require('node:crypto');
const { parseArgs } = require('node:util');
const { DEV_HMAC_CLIENT } = require('../dev/demo-env');

const { values } = parseArgs({
  options: {
    method: { type: 'string', default: 'POST' },
    path: { type: 'string', default: '/v1/chat/completions' },
    body: { type: 'string', default: '' },
    client: { type: 'string', default: DEV_HMAC_CLIENT.id },
    secret: { type: 'string', default: DEV_HMAC_CLIENT.secret },
  },
});
const timestamp = String(Math.floor(Date.now() / 1000));
const bodyHash = createHash('sha256').update(values.body, 'utf8').digest('hex');
const canonical = `${timestamp}\n${values.method.toUpperCase()}\n${values.path}\n${bodyHash}`;
const signature = createHmac('sha256', values.secret).update(canonical).digest('hex');
process.stdout.write(`-H X-Client-Id:${values.client} -H X-Timestamp:${timestamp} -H X-Signature:${signature}\n`);
