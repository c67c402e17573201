/**
 * Boot-time configuration checks, black box: the built gateway is started with one bad setting
 * at a time and must exit non-zero within seconds, naming the variable (or the policy file's JSON
 * path) and never printing a secret value.
 */
import { createServer, type AddressInfo } from 'node:net';
import {
  baseGatewayEnv,
  cleanupTempFiles,
  freePort,
  GATEWAY_MAIN,
  ManagedProcess,
  runGatewayExpectingExit,
  startGateway,
  within,
  writeTempFile,
  type BootResult,
} from './harness';

/** Product keys that boot fine; nothing in this file calls an upstream. */
const PRODUCTS = { demo: { providers: { openai: { api_key: 'sk-mock-boot', models: ['gpt-4o'], base_url: 'http://127.0.0.1:9/v1' } } } };
const SECRET = 'sk-live-DO-NOT-PRINT-5b1f0c9e';
/** A failed boot must end well within this. */
const EXIT_WITHIN_MS = 8_000;

async function boot(overrides: Record<string, string | undefined>): Promise<BootResult> {
  const env = baseGatewayEnv(await freePort(), PRODUCTS);
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  const started = Date.now();
  const result = await runGatewayExpectingExit(env, EXIT_WITHIN_MS);
  expect({ timedOut: result.timedOut, output: result.timedOut ? result.output.slice(-2000) : '' }).toEqual({ timedOut: false, output: '' });
  expect(Date.now() - started).toBeLessThan(EXIT_WITHIN_MS);
  expect(result.code).not.toBe(0);
  expect(result.code).not.toBeNull();
  return result;
}

/**
 * The output of a boot refused for configuration: exit 1 and one structured CRITICAL line naming
 * `variable`, with no stack and no trace of `secret` anywhere.
 */
function expectOneConfigRefusal(result: BootResult, variable: string, secret: string): void {
  expect(result.code).toBe(1);
  const lines = result.output.split('\n').filter((line) => line.trim() !== '');
  expect(lines.filter((line) => !line.startsWith('{'))).toEqual([]);
  const critical = lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((l) => l.severity === 'CRITICAL');
  expect(critical).toHaveLength(1);
  expect(critical[0].message).toContain(`${variable}: `);
  expect(critical[0]).not.toHaveProperty('stack');
  expect(result.output).not.toContain(secret);
}

afterAll(() => cleanupTempFiles());

describe('the gateway boots from a valid environment', () => {
  it('starts with the base environment these tests modify, and exits 0 on SIGTERM', async () => {
    const gateway = await startGateway({ products: PRODUCTS });
    const exit = await gateway.stop();
    expect(exit).toEqual({ code: 0, signal: null });
  }, 30_000);

  it.each(['SIGTERM', 'SIGINT'] as const)(
    'exits 0 with one NOTICE line on %s while still starting (nothing in flight), not killed by the signal',
    async (signal) => {
      // A Secret Manager endpoint nothing listens on: the boot waits for the product keys (up to 30 s).
      const env: Record<string, string> = {
        ...baseGatewayEnv(await freePort(), PRODUCTS),
        USE_SECRET_MANAGER: 'true',
        GOOGLE_CLOUD_PROJECT: 'boot-signal-test',
        API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: `127.0.0.1:${await freePort()}`,
      };
      delete env.API_KEY_SERVER_PRODUCT_KEYS;
      const proc = new ManagedProcess('gateway', GATEWAY_MAIN, env);
      try {
        await proc.waitForLine('the boot to begin', (l) => l.json?.message === 'Starting Nest application...', 15_000);
        expect(proc.lines.some((l) => l.json?.message === 'keygate listening' || l.json?.message === 'secrets loaded')).toBe(false);
        proc.signal(signal);
        expect(await within(proc.exited, 5_000)).toEqual({ code: 0, signal: null });
        const notice = proc.lines.filter((l) => l.json?.message === 'shutdown during start-up: no request was in flight');
        expect(notice).toHaveLength(1);
        expect(notice[0]).toMatchObject({ stream: 'stdout', json: { severity: 'NOTICE', signal } });
      } finally {
        await proc.stop();
      }
    },
    30_000,
  );

  it('listens on API_KEY_SERVER_LISTEN_ADDRESS (127.0.0.1: this machine only, as npm start does)', async () => {
    const gateway = await startGateway({ products: PRODUCTS, env: { API_KEY_SERVER_LISTEN_ADDRESS: '127.0.0.1' } });
    try {
      const listening = gateway.proc.lines.find((l) => l.json?.message === 'keygate listening');
      expect(listening?.json).toMatchObject({ address: '127.0.0.1', port: gateway.port });
      expect((await fetch(`http://127.0.0.1:${gateway.port}/healthz`)).status).toBe(200);
    } finally {
      await gateway.stop();
    }
  }, 30_000);
});

describe('the gateway refuses to boot on invalid configuration', () => {
  it('names API_KEY_SERVER_LISTEN_ADDRESS when it is not an IP address', async () => {
    const { output } = await boot({ API_KEY_SERVER_LISTEN_ADDRESS: 'everywhere' });
    expect(output).toContain('API_KEY_SERVER_LISTEN_ADDRESS: must be an IP address');
  });

  it('names PORT when it is not a number', async () => {
    const { output } = await boot({ PORT: 'eighty' });
    expect(output).toMatch(/PORT\b/);
  });

  it('names PORT when it is out of range', async () => {
    const { output } = await boot({ PORT: '70000' });
    expect(output).toMatch(/PORT\b/);
  });

  it('names API_KEY_SERVER_JWT_ISSUER when JWT keys are configured without it', async () => {
    const { output } = await boot({ API_KEY_SERVER_JWT_ISSUER: undefined });
    expect(output).toContain('API_KEY_SERVER_JWT_ISSUER');
  });

  it('names API_KEY_SERVER_PRODUCT_KEYS when it is missing', async () => {
    const { output } = await boot({ API_KEY_SERVER_PRODUCT_KEYS: undefined });
    expect(output).toContain('API_KEY_SERVER_PRODUCT_KEYS');
  });

  it('names API_KEY_SERVER_PRODUCT_KEYS for malformed JSON without printing the secret in it', async () => {
    const { output } = await boot({ API_KEY_SERVER_PRODUCT_KEYS: `{"demo": "${SECRET}", ` });
    expect(output).toContain('API_KEY_SERVER_PRODUCT_KEYS');
    expect(output).not.toContain(SECRET);
    expect(output).not.toContain('DO-NOT-PRINT');
  });

  it('names the product-keys path of a structural mistake without printing the secret next to it', async () => {
    const { output } = await boot({
      API_KEY_SERVER_PRODUCT_KEYS: JSON.stringify({ demo: { providers: { openai: { api_key: SECRET, models: 'gpt-4o' } } } }),
    });
    expect(output).toContain('API_KEY_SERVER_PRODUCT_KEYS');
    expect(output).toContain('demo.providers.openai.models');
    expect(output).not.toContain('DO-NOT-PRINT');
  });

  it('reports a bad secret as structured JSON lines only (no framework banner or raw stack trace)', async () => {
    const { output } = await boot({ API_KEY_SERVER_PRODUCT_KEYS: `{"demo": "${SECRET}", ` });
    const lines = output.split('\n').filter((line) => line.trim() !== '');
    const unstructured = lines.filter((line) => {
      try {
        return typeof JSON.parse(line) !== 'object';
      } catch {
        return true;
      }
    });
    expect(unstructured).toEqual([]);
    expect(lines.some((line) => line.includes('API_KEY_SERVER_PRODUCT_KEYS'))).toBe(true);
    // Found by the same label filter as every other line of the service.
    for (const line of lines) expect(JSON.parse(line)).toMatchObject({ 'logging.googleapis.com/labels': { service: 'keygate' } });
  });

  it('exits 1 with one structured line when its port is taken (not an unhandled rejection)', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '0.0.0.0', () => r()));
    try {
      const { output } = await boot({ PORT: String((taken.address() as AddressInfo).port) });
      const lines = output.split('\n').filter((line) => line.trim() !== '');
      expect(lines.filter((line) => !line.startsWith('{'))).toEqual([]);
      expect(lines.some((line) => line.includes('"severity":"CRITICAL"') && line.includes('EADDRINUSE'))).toBe(true);
      for (const line of lines) expect(JSON.parse(line)).toMatchObject({ 'logging.googleapis.com/labels': { service: 'keygate' } });
    } finally {
      taken.close();
    }
  });

  it('names API_KEY_SERVER_JWT_PUBLIC_KEYS when a key is not a PEM public key', async () => {
    const { output } = await boot({ API_KEY_SERVER_JWT_PUBLIC_KEYS: JSON.stringify({ 'dev-rs256': 'not a pem' }) });
    expect(output).toContain('API_KEY_SERVER_JWT_PUBLIC_KEYS');
  });

  it('names an upstream timeout variable that is not a number', async () => {
    const { output } = await boot({ API_KEY_SERVER_UPSTREAM_TTFB_TIMEOUT_MS: 'soon' });
    expect(output).toContain('API_KEY_SERVER_UPSTREAM_TTFB_TIMEOUT_MS');
  });

  it('names API_KEY_SERVER_POLICY_FILE when the file does not exist', async () => {
    const { output } = await boot({ API_KEY_SERVER_POLICY_FILE: '/nonexistent/keygate-policy.yaml' });
    expect(output).toContain('API_KEY_SERVER_POLICY_FILE');
  });

  it.each([
    ['API_KEY_SERVER_JWKS_URLS', `http://keygate:${SECRET}@127.0.0.1:9/jwks`],
    ['API_KEY_SERVER_IAP_JWKS_URL', `https://keygate:${SECRET}@keys.example/jwk`],
    ['API_KEY_SERVER_PUBLIC_URL', `https://keygate:${SECRET}@gw.example/keygate`],
    ['API_KEY_SERVER_AUTHORIZATION_SERVERS', `https://keygate:${SECRET}@idp.example`],
  ])('refuses %s with a password in it, in one line that does not print the password', async (name, value) => {
    expectOneConfigRefusal(
      await boot({ [name]: value, API_KEY_SERVER_IAP_AUDIENCE: '/projects/1/global/backendServices/2' }),
      name,
      SECRET,
    );
  });

  it.each(['/abc', '?db=abc'])(
    'refuses a Redis URL whose database (%s) is not a whole number in one line, not a Redis reply stack, without its password',
    async (db) => {
      // A reachable Redis: the raw stack came from its reply to SELECT.
      const reachable = new URL(process.env.API_KEY_SERVER_REDIS_URL ?? 'redis://127.0.0.1:6379');
      const url = `redis://:${SECRET}@${reachable.host}${db}`;
      expectOneConfigRefusal(await boot({ API_KEY_SERVER_REDIS_URL: url }), 'API_KEY_SERVER_REDIS_URL', SECRET);
    },
  );

  it('refuses a Redis URL whose path and db parameter name different databases (/2?db=3 used database 2), in one line', async () => {
    const reachable = new URL(process.env.API_KEY_SERVER_REDIS_URL ?? 'redis://127.0.0.1:6379');
    const result = await boot({ API_KEY_SERVER_REDIS_URL: `redis://:${SECRET}@${reachable.host}/2?db=3` });
    expectOneConfigRefusal(result, 'API_KEY_SERVER_REDIS_URL', SECRET);
    expect(result.output).toContain(
      'API_KEY_SERVER_REDIS_URL: the database index is given more than once with different values (/2 and db=3)',
    );
  });

  it('names the JSON path of a misspelt policy field', async () => {
    const file = writeTempFile('typo.yaml', 'defaults:\n  policy:\n    max_tokenz: 100\n');
    const { output } = await boot({ API_KEY_SERVER_POLICY_FILE: file });
    expect(output).toContain('API_KEY_SERVER_POLICY_FILE');
    expect(output).toContain('defaults.policy.max_tokenz');
  });

  it('names the JSON path of a misspelt field under a product', async () => {
    const file = writeTempFile('typo-product.yaml', 'products:\n  demo:\n    limits:\n      request_per_second: 5\n');
    const { output } = await boot({ API_KEY_SERVER_POLICY_FILE: file });
    expect(output).toContain('products.demo.limits.request_per_second');
  });

  it('names the JSON path of a negative max_tokens', async () => {
    const file = writeTempFile('negative.yaml', 'defaults:\n  policy:\n    max_tokens: -1\n');
    const { output } = await boot({ API_KEY_SERVER_POLICY_FILE: file });
    expect(output).toContain('API_KEY_SERVER_POLICY_FILE');
    expect(output).toContain('defaults.policy.max_tokens');
  });

  it('names the JSON path of a price tier out of order and of a threshold that is not a whole token count', async () => {
    const file = writeTempFile(
      'tiers.yaml',
      [
        'prices:',
        '  gemini-2.5-pro:',
        '    input: 1.25',
        '    output: 10',
        '    tiers:',
        '      - {above_prompt_tokens: 500000, input: 3, output: 20}',
        '      - {above_prompt_tokens: 200000, input: 2.5, output: 15}',
        '  claude-sonnet-4-5: {input: 3, output: 15, tiers: [{above_prompt_tokens: 200k, input: 6, output: 22.5}]}',
        '',
      ].join('\n'),
    );
    const { output } = await boot({ API_KEY_SERVER_POLICY_FILE: file });
    expect(output).toContain('API_KEY_SERVER_POLICY_FILE');
    expect(output).toContain(
      'prices.gemini-2.5-pro.tiers[1].above_prompt_tokens: must be above prices.gemini-2.5-pro.tiers[0].above_prompt_tokens (500000)',
    );
    expect(output).toContain('prices.claude-sonnet-4-5.tiers[0].above_prompt_tokens: must be a whole number of prompt tokens');
  });

  it('names the policy file when it is not valid YAML or JSON', async () => {
    const file = writeTempFile('broken.yaml', 'defaults: [unclosed\n');
    const { output } = await boot({ API_KEY_SERVER_POLICY_FILE: file });
    expect(output).toContain('API_KEY_SERVER_POLICY_FILE');
  });
});
