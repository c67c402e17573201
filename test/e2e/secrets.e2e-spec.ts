/**
 * Secret Manager and rotation, black box: the built gateway reads its three secrets from a local
 * Secret Manager (the real client library over an insecure gRPC channel to
 * FakeSecretManagerServer) and re-reads them every second. Requests flow continuously while each
 * secret is rotated, and none of them may fail; a new JWT kid or HMAC client must verify within
 * about one interval, a removed one must stop, a new provider key must be used by the next
 * request. A bad version is refused, and Secret Manager going away changes nothing. Finally, no
 * line the gateway printed carries a secret value.
 */
import { createHash, createHmac, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { FakeSecretManagerServer } from '../../libs/secrets/src/testing/fake-secret-manager.server';
import {
  baseGatewayEnv,
  cleanupTempFiles,
  freePort,
  mintToken,
  mintedTokens,
  runGatewayExpectingExit,
  sleep,
  startGateway,
  startMock,
  waitFor,
  writeTempFile,
  type Gateway,
  type MockUpstream,
} from './harness';

const RUN = randomBytes(4).toString('hex');
/** Provider keys: the mock takes any `sk-mock…` key and records the one it got. */
const PROVIDER_KEY_1 = `sk-mock-rotation-one-${RUN}`;
const PROVIDER_KEY_2 = `sk-mock-rotation-two-${RUN}`;
const PROVIDER_KEY_3 = `sk-mock-rotation-three-${RUN}`;
/** Lives only in a refused version. */
const PROVIDER_KEY_BAD = `sk-mock-refused-version-${RUN}`;
/** Given as API_KEY_SERVER_PRODUCT_KEYS next to Secret Manager. */
const PROVIDER_KEY_ENV = `sk-mock-from-environment-${RUN}`;
const HMAC_SECRET_1 = `hmac-rotation-one-${RUN}-${randomBytes(16).toString('hex')}`;
const HMAC_SECRET_2 = `hmac-rotation-two-${RUN}-${randomBytes(16).toString('hex')}`;

const pair = (): { privateKey: KeyObject; publicKey: KeyObject } => generateKeyPairSync('rsa', { modulusLength: 2048 });
const KID_A = pair();
const KID_B = pair();
const pem = (key: KeyObject): string => key.export({ type: 'spki', format: 'pem' }).toString();
/** The base64 lines of a PEM: what a leaked key would look like in a log. */
const pemBody = (key: KeyObject, type: 'spki' | 'pkcs8'): string[] =>
  key
    .export({ type, format: 'pem' })
    .toString()
    .split('\n')
    .filter((l) => l && !l.startsWith('-----'));

/** The time a new version may take to be in force: one 1 s interval, a check, and slack for a loaded CI machine. */
const WITHIN_MS = 2_500;
const MODEL = 'gpt-4o-mini';
const CHAT_PATH = '/v1/chat/completions';

let mock: MockUpstream;
let fake: FakeSecretManagerServer;
let gw: Gateway;
let policyFile: string;

const productsWith = (apiKey: string): string =>
  JSON.stringify({ demo: { providers: { openai: { api_key: apiKey, models: [MODEL], base_url: `${mock.url}/v1` } } } });
const jwtKeysWith = (keys: Record<string, KeyObject>): string =>
  JSON.stringify(Object.fromEntries(Object.entries(keys).map(([kid, key]) => [kid, pem(key)])));
const hmacWith = (clients: Record<string, string>): string =>
  JSON.stringify(Object.fromEntries(Object.entries(clients).map(([id, secret]) => [id, { secret, product: 'demo' }])));

/** The Secret Manager settings of SPEC §2, pointed at the fake; the secrets' variables removed so Secret Manager is read. */
function secretManagerEnv(port: number): Record<string, string | undefined> {
  return {
    USE_SECRET_MANAGER: 'true',
    GOOGLE_CLOUD_PROJECT: 'test',
    API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: `127.0.0.1:${port}`,
    API_KEY_SERVER_SECRET_REFRESH_SECONDS: '1',
    API_KEY_SERVER_PRODUCT_KEYS: undefined,
    API_KEY_SERVER_JWT_PUBLIC_KEYS: undefined,
    API_KEY_SERVER_POLICY_FILE: policyFile,
  };
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

type Credential = { kind: 'jwt'; token: string } | { kind: 'hmac'; clientId: string; secret: string };

let sequence = 0;

/** One chat completion with a credential; resolves with the status (never throws on HTTP errors). */
async function chat(credential: Credential): Promise<{ status: number; body: string }> {
  const body = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: `rotation ${RUN} ${++sequence}` }] });
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (credential.kind === 'jwt') {
    headers.authorization = `Bearer ${credential.token}`;
  } else {
    // SPEC §5; every body is unique, so no two signatures are equal (each is accepted once).
    const timestamp = String(Math.floor(Date.now() / 1000));
    const canonical = `${timestamp}\nPOST\n${CHAT_PATH}\n${createHash('sha256').update(body).digest('hex')}`;
    headers['x-client-id'] = credential.clientId;
    headers['x-timestamp'] = timestamp;
    headers['x-signature'] = createHmac('sha256', credential.secret).update(canonical).digest('hex');
  }
  try {
    const res = await gw.fetch(CHAT_PATH, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) });
    return { status: res.status, body: await res.text() };
  } catch (error) {
    return { status: 0, body: String(error) };
  }
}

const jwtFor = (kid: string, privateKey: KeyObject): Credential => ({
  kind: 'jwt',
  token: mintToken({ kid, privateKey, alg: 'RS256', ttlSeconds: 600 }),
});

/** Sends with a fresh credential until one is answered `status`; resolves with the time it took. */
async function untilAnswered(status: number, credential: () => Credential, what: string, timeoutMs = WITHIN_MS + 2_000): Promise<number> {
  const started = Date.now();
  await waitFor(what, async () => (await chat(credential())).status === status, timeoutMs, 50);
  return Date.now() - started;
}

/**
 * Requests sent continuously (a few at a time, bounded in number) with whatever credential
 * {@link RequestFlow.credential} holds at the moment each is sent.
 */
class RequestFlow {
  /** Flows not stopped yet: a failed assertion must not leave one running into the next test. */
  static readonly running = new Set<RequestFlow>();
  readonly failures: Array<{ status: number; body: string }> = [];
  sent = 0;
  private stopped = false;
  private readonly loops: Array<Promise<void>>;

  constructor(
    public credential: Credential,
    concurrency = 3,
    private readonly max = 4_000,
  ) {
    this.loops = Array.from({ length: concurrency }, () => this.loop());
    RequestFlow.running.add(this);
  }

  private async loop(): Promise<void> {
    while (!this.stopped && this.sent < this.max) {
      this.sent += 1;
      const outcome = await chat(this.credential);
      if (outcome.status !== 200) this.failures.push({ status: outcome.status, body: outcome.body.slice(0, 300) });
      await sleep(5);
    }
  }

  /** Stops the flow and resolves once the requests in flight are answered. */
  async stop(): Promise<this> {
    RequestFlow.running.delete(this);
    this.stopped = true;
    await Promise.all(this.loops);
    return this;
  }
}

/** The provider key of the last chat completion that reached the mock upstream. */
async function lastProviderKey(): Promise<string | undefined> {
  const header = (await mock.stats()).last['openai.chat']?.headers.authorization;
  return typeof header === 'string' ? header.replace(/^Bearer /, '') : undefined;
}

/** Gateway lines (parsed) after `from`, matching `message` and the secret. */
function linesAbout(from: number, message: RegExp, secret: string): Array<Record<string, unknown>> {
  return gw.proc.lines
    .slice(from)
    .map((l) => l.json)
    .filter(
      (j): j is Record<string, unknown> =>
        j !== null && typeof j.message === 'string' && message.test(j.message) && j.secretName === secret,
    );
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  mock = await startMock();
  fake = await FakeSecretManagerServer.start();
  // Limits far above what the flows send: this suite is about secrets.
  policyFile = writeTempFile(
    'policy.yaml',
    [
      'defaults:',
      '  limits:',
      '    requests_per_second: 100000',
      '    user_requests_per_second: 100000',
      '    daily_requests: 100000000',
      '    user_daily_requests: 100000000',
      '    daily_tokens: 100000000000',
      '    user_daily_tokens: 100000000000',
      '',
    ].join('\n'),
  );
  fake.addVersion('openai-api-keys', productsWith(PROVIDER_KEY_1));
  fake.addVersion('jwt-public-keys', jwtKeysWith({ 'rot-a': KID_A.publicKey }));
  fake.addVersion('hmac-secrets', hmacWith({ 'batch-v1': HMAC_SECRET_1 }));
  // The product keys are readable with roles/secretmanager.secretAccessor only (no metadata), the
  // least privilege the README grants: their rotation, refusal and outage tests run that way.
  fake.denyMetadata('openai-api-keys');
  gw = await startGateway({ mockUrl: mock.url, env: secretManagerEnv(fake.port) });
}, 30_000);

afterEach(async () => {
  await Promise.all([...RequestFlow.running].map((flow) => flow.stop()));
});

afterAll(async () => {
  await gw?.stop();
  await mock?.stop();
  await fake?.stop();
  cleanupTempFiles();
});

describe('the gateway boots from Secret Manager', () => {
  it('is ready with the three secrets and logs where each came from', async () => {
    const res = await gw.fetch('/readyz');
    expect(res.status).toBe(200);
    const loaded = gw.proc.lines.find((l) => l.json?.message === 'secrets loaded')?.json;
    expect(loaded?.secrets).toEqual([
      {
        kind: 'productKeys',
        name: 'openai-api-keys',
        source: 'secret-manager',
        version: fake.versionName('openai-api-keys', 1),
        checkedBy: 'payload',
      },
      {
        kind: 'jwtPublicKeys',
        name: 'jwt-public-keys',
        source: 'secret-manager',
        version: fake.versionName('jwt-public-keys', 1),
        checkedBy: 'metadata',
      },
      {
        kind: 'hmacSecrets',
        name: 'hmac-secrets',
        source: 'secret-manager',
        version: fake.versionName('hmac-secrets', 1),
        checkedBy: 'metadata',
      },
    ]);
    expect((await chat(jwtFor('rot-a', KID_A.privateKey))).status).toBe(200);
    expect(await lastProviderKey()).toBe(PROVIDER_KEY_1);
  });
});

describe('rotation while requests flow', () => {
  it('JWT keys: a new kid verifies within one interval, a removed kid stops, no request fails', async () => {
    const flow = new RequestFlow(jwtFor('rot-a', KID_A.privateKey));
    await sleep(300);
    fake.addVersion('jwt-public-keys', jwtKeysWith({ 'rot-a': KID_A.publicKey, 'rot-b': KID_B.publicKey }));
    const added = await untilAnswered(200, () => jwtFor('rot-b', KID_B.privateKey), 'the new kid rot-b to verify');
    expect(added).toBeLessThan(WITHIN_MS);

    // Clients move to the new key, then the old one is removed.
    const oldToken = flow.credential;
    flow.credential = jwtFor('rot-b', KID_B.privateKey);
    await sleep(300);
    fake.addVersion('jwt-public-keys', jwtKeysWith({ 'rot-b': KID_B.publicKey }));
    // The old token was verified (and cached) many times: it must stop too, not only fresh ones.
    const removed = await untilAnswered(401, () => oldToken, 'the removed kid rot-a to stop verifying');
    expect(removed).toBeLessThan(WITHIN_MS);
    expect((await chat(jwtFor('rot-a', KID_A.privateKey))).status).toBe(401);

    await sleep(300);
    await flow.stop();
    expect(flow.failures).toEqual([]);
    expect(flow.sent).toBeGreaterThan(20);
  }, 30_000);

  it('product keys: the next request after the rotation uses the new provider key, no request fails', async () => {
    const flow = new RequestFlow(jwtFor('rot-b', KID_B.privateKey));
    await sleep(300);
    expect(await lastProviderKey()).toBe(PROVIDER_KEY_1);
    const mark = gw.proc.lines.length;
    const started = Date.now();
    fake.addVersion('openai-api-keys', productsWith(PROVIDER_KEY_2));
    await gw.proc.waitForLine(
      'the product keys rotation line',
      (l) => l.json?.secretName === 'openai-api-keys' && /rotated/.test(String(l.json?.message)),
      WITHIN_MS + 1_000,
    );
    expect(Date.now() - started).toBeLessThan(WITHIN_MS);
    expect(linesAbout(mark, /rotated/, 'openai-api-keys')[0]).toMatchObject({ version: fake.versionName('openai-api-keys', 2) });
    // Every request from now on, the flow's included, carries the new key.
    expect((await chat(jwtFor('rot-b', KID_B.privateKey))).status).toBe(200);
    expect(await lastProviderKey()).toBe(PROVIDER_KEY_2);
    await sleep(300);
    expect(await lastProviderKey()).toBe(PROVIDER_KEY_2);
    await flow.stop();
    expect(flow.failures).toEqual([]);
  }, 30_000);

  it('HMAC secrets: a new client verifies within one interval, a removed one stops, no request fails', async () => {
    const v1: Credential = { kind: 'hmac', clientId: 'batch-v1', secret: HMAC_SECRET_1 };
    const v2: Credential = { kind: 'hmac', clientId: 'batch-v2', secret: HMAC_SECRET_2 };
    expect((await chat(v1)).status).toBe(200);
    const flow = new RequestFlow(v1);
    await sleep(300);
    fake.addVersion('hmac-secrets', hmacWith({ 'batch-v1': HMAC_SECRET_1, 'batch-v2': HMAC_SECRET_2 }));
    expect(await untilAnswered(200, () => v2, 'the new HMAC client to verify')).toBeLessThan(WITHIN_MS);
    flow.credential = v2;
    await sleep(300);
    fake.addVersion('hmac-secrets', hmacWith({ 'batch-v2': HMAC_SECRET_2 }));
    expect(await untilAnswered(401, () => v1, 'the removed HMAC client to stop')).toBeLessThan(WITHIN_MS);
    await sleep(300);
    await flow.stop();
    expect(flow.failures).toEqual([]);
  }, 30_000);
});

describe('environment variables and pinned versions', () => {
  let other: FakeSecretManagerServer;
  let side: Gateway | undefined;

  beforeAll(async () => {
    other = await FakeSecretManagerServer.start();
    other.addVersion('openai-api-keys', productsWith(PROVIDER_KEY_1));
    other.addVersion('jwt-public-keys', jwtKeysWith({ 'rot-a': KID_A.publicKey }));
    other.addVersion('jwt-public-keys', jwtKeysWith({ 'rot-b': KID_B.publicKey }));
    other.addVersion('hmac-secrets', '{}');
  });
  afterEach(async () => {
    await side?.stop();
    side = undefined;
  });
  afterAll(() => other.stop());

  /** Sends one request through the side gateway and returns its status. */
  async function sideChat(kid: string, key: KeyObject): Promise<number> {
    const body = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: `side ${RUN}` }] });
    const token = mintToken({ kid, privateKey: key, alg: 'RS256' });
    const res = await side!.fetch(CHAT_PATH, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body,
    });
    await res.arrayBuffer();
    return res.status;
  }

  it('a variable that is set wins over its secret, which is then never read', async () => {
    side = await startGateway({
      mockUrl: mock.url,
      env: { ...secretManagerEnv(other.port), API_KEY_SERVER_PRODUCT_KEYS: productsWith(PROVIDER_KEY_ENV) },
    });
    expect(await sideChat('rot-b', KID_B.privateKey)).toBe(200);
    expect(await lastProviderKey()).toBe(PROVIDER_KEY_ENV);
    other.addVersion('openai-api-keys', productsWith(PROVIDER_KEY_2));
    await sleep(2_000);
    expect(await sideChat('rot-b', KID_B.privateKey)).toBe(200);
    expect(await lastProviderKey()).toBe(PROVIDER_KEY_ENV);
    expect(other.calls.filter((c) => c.name.includes('/openai-api-keys/'))).toEqual([]);
    await side.stop();
    expect(side.proc.output).not.toContain(PROVIDER_KEY_ENV);
  }, 30_000);

  it('API_KEY_SERVER_SECRET_JWT_PUBLIC_KEYS_VERSION pins a version: newer ones are not used', async () => {
    side = await startGateway({
      mockUrl: mock.url,
      env: { ...secretManagerEnv(other.port), API_KEY_SERVER_SECRET_JWT_PUBLIC_KEYS_VERSION: '1' },
    });
    expect(await sideChat('rot-a', KID_A.privateKey)).toBe(200);
    expect(await sideChat('rot-b', KID_B.privateKey)).toBe(401);
    other.addVersion('jwt-public-keys', jwtKeysWith({ 'rot-b': KID_B.publicKey }));
    await sleep(2_000);
    expect(await sideChat('rot-a', KID_A.privateKey)).toBe(200);
    const loaded = side.proc.lines.find((l) => l.json?.message === 'secrets loaded')?.json;
    expect(loaded?.secrets).toEqual(
      expect.arrayContaining([expect.objectContaining({ kind: 'jwtPublicKeys', version: other.versionName('jwt-public-keys', 1) })]),
    );
  }, 30_000);
});

describe('a bad version', () => {
  it('is refused: the old keys stay in force, an ERROR line names the secret and the problem, no request fails', async () => {
    const flow = new RequestFlow(jwtFor('rot-b', KID_B.privateKey));
    const mark = gw.proc.lines.length;
    const bad = fake.addVersion(
      'openai-api-keys',
      JSON.stringify({ demo: { providers: { openai: { api_key: PROVIDER_KEY_BAD, models: MODEL, base_url: `${mock.url}/v1` } } } }),
    );
    const line = await gw.proc.waitForLine(
      'the refusal',
      (l) => l.json?.severity === 'ERROR' && l.json.secretName === 'openai-api-keys',
      WITHIN_MS + 1_000,
    );
    expect(line.json).toMatchObject({ version: fake.versionName('openai-api-keys', bad), inForce: fake.versionName('openai-api-keys', 2) });
    expect(line.raw).toContain('demo.providers.openai.models');
    await sleep(1_500);
    // Refused once, not again on every interval.
    expect(linesAbout(mark, /refused/, 'openai-api-keys')).toHaveLength(1);
    expect((await chat(jwtFor('rot-b', KID_B.privateKey))).status).toBe(200);
    expect(await lastProviderKey()).toBe(PROVIDER_KEY_2);
    await flow.stop();
    expect(flow.failures).toEqual([]);
  }, 30_000);
});

describe('Secret Manager going away', () => {
  it('keeps the last good values in force with a WARNING, and picks up new versions once it is back', async () => {
    const flow = new RequestFlow(jwtFor('rot-b', KID_B.privateKey));
    const mark = gw.proc.lines.length;
    await fake.stop();
    await gw.proc.waitForLine(
      'the unreachable warning',
      (l) => l.json?.severity === 'WARNING' && /unreachable/.test(String(l.json.message)),
      WITHIN_MS + 1_000,
    );
    await sleep(2_000);
    expect((await gw.fetch('/readyz')).status).toBe(200);
    expect((await chat(jwtFor('rot-b', KID_B.privateKey))).status).toBe(200);
    expect(await lastProviderKey()).toBe(PROVIDER_KEY_2);
    // One warning per secret for the whole outage, not one per interval.
    expect(linesAbout(mark, /unreachable/, 'openai-api-keys')).toHaveLength(1);

    fake.addVersion('openai-api-keys', productsWith(PROVIDER_KEY_3));
    await fake.listen();
    // gRPC reconnects with backoff, so coming back may take a few intervals.
    await waitFor(
      'the new provider key after Secret Manager came back',
      async () => (await lastProviderKey()) === PROVIDER_KEY_3,
      15_000,
      100,
    );
    expect(linesAbout(mark, /reachable again/, 'openai-api-keys')).toHaveLength(1);
    await flow.stop();
    expect(flow.failures).toEqual([]);
  }, 40_000);
});

describe('the gateway refuses to boot on a broken secret', () => {
  let boot: FakeSecretManagerServer;

  beforeAll(async () => {
    boot = await FakeSecretManagerServer.start();
    boot.addVersion('jwt-public-keys', jwtKeysWith({ 'rot-a': KID_A.publicKey }));
  });
  afterAll(() => boot.stop());

  async function bootWith(): Promise<string> {
    const env = { ...baseGatewayEnv(await freePort(), {}), ...secretManagerEnv(boot.port) };
    for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key];
    const result = await runGatewayExpectingExit(env as Record<string, string>, 15_000);
    expect(result.timedOut).toBe(false);
    expect(result.code).not.toBe(0);
    for (const value of [PROVIDER_KEY_BAD, HMAC_SECRET_1, ...pemBody(KID_A.publicKey, 'spki')]) expect(result.output).not.toContain(value);
    // One line says why (README: "one line naming each secret"), not that line plus Nest's copy.
    const failures = result.output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { severity?: string; message?: string })
      .filter((line) => line.severity === 'ERROR' || line.severity === 'CRITICAL');
    expect(failures).toEqual([expect.objectContaining({ severity: 'CRITICAL' })]);
    return result.output;
  }

  it('names a missing secret', async () => {
    boot.addVersion('openai-api-keys', productsWith(PROVIDER_KEY_BAD));
    const output = await bootWith();
    expect(output).toContain('hmac-secrets');
    expect(output).toContain('API_KEY_SERVER_SECRET_HMAC_SECRETS_NAME');
  }, 20_000);

  it('names a malformed secret, its version and the JSON path, never the value', async () => {
    boot.addVersion('hmac-secrets', hmacWith({ 'batch-v1': HMAC_SECRET_1 }));
    boot.addVersion(
      'openai-api-keys',
      JSON.stringify({ demo: { providers: { openai: { api_key: PROVIDER_KEY_BAD, models: [MODEL], base_url: 'ftp://x' } } } }),
    );
    const output = await bootWith();
    expect(output).toContain('openai-api-keys (version 2)');
    expect(output).toContain('demo.providers.openai.base_url');
  }, 20_000);
});

describe('no secret value in any line the gateway printed', () => {
  it('holds for provider keys, HMAC secrets, JWT keys and tokens', async () => {
    await gw.stop();
    const output = gw.proc.output;
    expect(gw.proc.lines.length).toBeGreaterThan(100);
    const values = [
      PROVIDER_KEY_1,
      PROVIDER_KEY_2,
      PROVIDER_KEY_3,
      PROVIDER_KEY_BAD,
      PROVIDER_KEY_ENV,
      HMAC_SECRET_1,
      HMAC_SECRET_2,
      ...pemBody(KID_A.publicKey, 'spki'),
      ...pemBody(KID_B.publicKey, 'spki'),
      ...pemBody(KID_A.privateKey, 'pkcs8'),
      ...pemBody(KID_B.privateKey, 'pkcs8'),
      ...mintedTokens,
    ];
    const leaked = values.filter((value) => output.includes(value));
    expect(leaked).toEqual([]);
    // Not even a recognisable piece of a key.
    for (const value of [PROVIDER_KEY_1, PROVIDER_KEY_2, HMAC_SECRET_1, HMAC_SECRET_2]) expect(output).not.toContain(value.slice(-16));
  });
});
