#!/usr/bin/env node
'use strict';
// Prints the three HMAC headers (SPEC §5) for one request, as curl -H arguments.
// Usage: npm run -s sign -- --method POST --path /v1/chat/completions --body '{"model":...}'
//        [--client demo-client --secret ...]   (defaults: the development client of dev/demo-env.js)
const { parseArgs } = require('node:util');
const { DEV_HMAC_CLIENT } = require('../dev/demo-env');
const { hmacHeaders } = require('../dev/hmac-sign');

const { values } = parseArgs({
  options: {
    help: { type: 'boolean', short: 'h' },
    method: { type: 'string', default: 'POST' },
    path: { type: 'string', default: '/v1/chat/completions' },
    body: { type: 'string', default: '' },
    client: { type: 'string', default: DEV_HMAC_CLIENT.id },
    secret: { type: 'string', default: DEV_HMAC_CLIENT.secret },
  },
});
if (values.help) {
  process.stdout.write(
    [
      'Prints the X-Client-Id, X-Timestamp and X-Signature headers (SPEC §5) of one request, as curl -H arguments.',
      '',
      'npm run -s sign -- [--method POST] [--path /v1/chat/completions] [--body JSON] [--client ID] [--secret SECRET]',
      '',
      '  --path    the request target exactly as it will be sent, query string included',
      '  --body    the exact body bytes that will be sent (sign and send the same string)',
      '  --client, --secret   default: the development client of dev/demo-env.js',
      '',
    ].join('\n'),
  );
  process.exit(0);
}
const h = hmacHeaders({ id: values.client, secret: values.secret }, values.method, values.path, values.body);
process.stdout.write(`-H X-Client-Id:${h['x-client-id']} -H X-Timestamp:${h['x-timestamp']} -H X-Signature:${h['x-signature']}\n`);
