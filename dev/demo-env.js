'use strict';
// The environment `npm start` runs the gateway with: a demo product whose three providers all
// point at the bundled mock upstream, the development key pair, and in-memory limits.
const { readFileSync } = require('node:fs');
const { join } = require('node:path');

const DEV_ISSUER = 'keygate-dev';
/** Development HMAC client (public, like the key pair): `npm run sign` uses it by default. */
const DEV_HMAC_CLIENT = { id: 'demo-client', secret: 'keygate-development-hmac-secret-not-for-production', product: 'demo' };

function demoEnv(mockPort = 8090) {
  const mock = `http://127.0.0.1:${mockPort}`;
  return {
    API_KEY_SERVER_PRODUCT_KEYS: JSON.stringify({
      demo: {
        providers: {
          openai: { api_key: 'sk-mock-demo', models: ['gpt-4o', 'gpt-4o-mini', 'text-embedding-3-small'], base_url: `${mock}/v1` },
          anthropic: { api_key: 'sk-ant-mock-demo', models: ['claude-3-5-sonnet-20241022'], base_url: mock },
          gemini: { api_key: 'AIza-mock-demo', models: ['gemini-1.5-pro', 'gemini-2.5-flash', 'text-embedding-004'], base_url: mock },
        },
      },
    }),
    API_KEY_SERVER_JWT_PUBLIC_KEYS: JSON.stringify({
      'dev-rs256': readFileSync(join(__dirname, 'dev-rs256.pub.pem'), 'utf8'),
      'dev-es256': readFileSync(join(__dirname, 'dev-es256.pub.pem'), 'utf8'),
    }),
    API_KEY_SERVER_JWT_ISSUER: DEV_ISSUER,
    API_KEY_SERVER_HMAC_SECRETS: JSON.stringify({
      [DEV_HMAC_CLIENT.id]: { secret: DEV_HMAC_CLIENT.secret, product: DEV_HMAC_CLIENT.product },
    }),
  };
}

module.exports = { demoEnv, DEV_ISSUER, DEV_HMAC_CLIENT };
