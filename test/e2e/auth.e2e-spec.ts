/**
 * Authentication, black box (issue 3, items 1-7): the built gateway, the mock upstream, a local
 * key server (JWKS / IAP keys / attacker URLs, counting every fetch) and a real Redis. Every
 * refused request is checked for its status, its `error.code`, that the mock upstream saw nothing,
 * and its one audit line.
 *
 * Gateways (all on the mock upstream, products demo / other / team, generous limits):
 *   gw    static dev keys + HMAC (Redis replay cache) + IAP + CORS + RFC 9728 settings
 *   jw    remote JWKS (two issuers + a shared URL), 2 s cooldown, 1 s fetch timeout,
 *         `token_use=access` rule, HMAC on the same Redis as gw (a second replica)
 *   cold  remote JWKS whose endpoint never answers (cold cache, IdP down), 5 s cooldown
 *   ttl   remote JWKS with a 2 s cache TTL and a 1 s cooldown
 *   mem   HMAC with the in-memory replay cache; no CORS, no public URL (defaults); beside the dev
 *         keys, a static key bound to one of its two issuers (`{"pem", "issuer"}`); the JWT
 *         audience read from `client_id`, as Amazon Cognito's access tokens carry it
 *   down  HMAC with an unreachable Redis
 *
 * The JWKS tests run in order and depend on the key server's history (fetch counts, cooldowns).
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { STATUS_CODES, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import {
  DEV_ISSUER,
  HOST,
  cleanupTempFiles,
  devJwtPublicKeys,
  mintToken,
  mintedTokens,
  nowSeconds,
  sleep,
  startGateway,
  startMock,
  uniqueId,
  waitFor,
  writeTempFile,
  type AuditRecord,
  type Gateway,
  type MockUpstream,
} from './harness';
import {
  IAP_ISSUER,
  KeyServer,
  b64url,
  claims,
  devSigningKey,
  forgeJwt,
  mintIapAssertion,
  newSigningKey,
  rawRequest,
  socketExchange,
  resolveRedis,
  signHmac,
  signedJwt,
  startGatewayListening,
  x5cFor,
  type RedisHandle,
  type SigningKey,
} from './auth-fixtures';

// ---------------------------------------------------------------------------------------------
// fixtures
// ---------------------------------------------------------------------------------------------

const RUN = randomBytes(4).toString('hex');
/** Random per run: replay keys in the shared Redis never collide with an earlier run's. */
const CLIENT = `e2e-client-${RUN}`;
const CLIENT_SECRET = `hmac-secret-${RUN}-${randomBytes(16).toString('hex')}`;
const OTHER_CLIENT = `e2e-other-${RUN}`;
const OTHER_SECRET = `hmac-other-${RUN}-${randomBytes(16).toString('hex')}`;
const HMAC_SECRETS = JSON.stringify({
  [CLIENT]: { secret: CLIENT_SECRET, product: 'demo' },
  [OTHER_CLIENT]: { secret: OTHER_SECRET, product: 'other' },
});

const IAP_AUD = '/projects/123456789/global/backendServices/987654321';
const PUBLIC_URL = 'https://keygate.example.com';
const PATH_PUBLIC_URL = 'https://gw.example.com/keygate/';
const AUTH_SERVERS = ['https://idp.example.com', 'https://login.example.org'];
const ALLOWED_ORIGINS = ['https://app.example.com', 'https://console.example.com'];
const METADATA_URL = `${PUBLIC_URL}/.well-known/oauth-protected-resource`;

const JW_COOLDOWN_MS = 2_000;
const COLD_COOLDOWN_MS = 5_000;

// Key server paths.
const IDP_A_JWKS = '/idp-a/.well-known/jwks.json';
const IDP_B_JWKS = '/idp-b/jwks.json';
const SHARED_JWKS = '/shared/jwks.json';
const COLD_JWKS = '/cold/jwks.json';
const TTL_JWKS = '/ttl/jwks.json';
/** The API key the cold gateway's JWKS URL carries in its query. */
const COLD_JWKS_QUERY_KEY = 'jwks-query-key-0123456789';
const IAP_JWKS = '/iap/public_key-jwk';
const ATTACKER_JKU = '/attacker/jku.json';
const ATTACKER_X5U = '/attacker/x5u.pem';
const JW_PATHS = [IDP_A_JWKS, IDP_B_JWKS, SHARED_JWKS];

const keyA1 = newSigningKey('RS256', 'idp-a-1');
const keyA2 = newSigningKey('RS256', 'idp-a-2');
const keyB1 = newSigningKey('ES256', 'idp-b-1');
const keyS1 = newSigningKey('ES256', 'shared-1');
/** Amazon Cognito's kids are standard base64 (`+`, `/`, `=` padding): this one is a real pool's. */
const keyCognito = newSigningKey('RS256', 'vyVQH7UMjwYboVvyFf+zd4KHZfgc+RtmU/A2vHhgITI=');
const keyCold = newSigningKey('RS256', 'cold-1');
const keyTtl1 = newSigningKey('ES256', 'ttl-1');
const keyTtl2 = newSigningKey('ES256', 'ttl-2');
const iapKey = newSigningKey('ES256', 'iap-key-1');
const iapRsaKey = newSigningKey('RS256', 'iap-rsa-1');
const attacker = newSigningKey('RS256', 'attacker-1');
const attackerEc = newSigningKey('ES256', 'attacker-ec-1');
const devRs = devSigningKey('dev-rs256');
/** A static key of `mem` bound to BOUND_ISSUER, which may not sign for mem's other issuer (DEV_ISSUER). */
const boundKey = newSigningKey('ES256', 'bound-1');
const BOUND_ISSUER = 'https://bound.example.com';
/** mem's JWT audience, which it reads from `client_id` (API_KEY_SERVER_JWT_AUDIENCE_CLAIM). */
const MEM_CLIENT_ID = 'cognito-app-client-1';
/** Claims for mem: the audience in `client_id`, and no `aud`, as in a Cognito access token. */
function memClaims(opts: { iss: string; sub: string; clientId?: unknown }): Record<string, unknown> {
  const { aud: _aud, ...rest } = claims({ iss: opts.iss, sub: opts.sub });
  return 'clientId' in opts
    ? opts.clientId === undefined
      ? rest
      : { ...rest, client_id: opts.clientId }
    : { ...rest, client_id: MEM_CLIENT_ID };
}

/** What the IdP-A endpoint serves now (rotation = changing this list). */
let keysA: SigningKey[] = [keyA1];
let keysTtl: SigningKey[] = [keyTtl1];

let keys: KeyServer;
let redis: RedisHandle;
let mock: MockUpstream;
let gw: Gateway;
let jw: Gateway;
let cold: Gateway;
let mem: Gateway;
let down: Gateway;
let ttl: Gateway;
let idpA: string;
let idpB: string;
let coldIssuer: string;
let ttlIssuer: string;

/** Every gateway that came up, so afterAll stops them even when another one failed to boot. */
const started: Gateway[] = [];

/**
 * Boots gateways two at a time (Nest boots are CPU-bound: six at once on a busy two-core runner
 * can miss the harness's 15 s boot bound), waits for every start to settle so none is left
 * booting unseen, then fails with the first error. Results keep the order of `starts`.
 */
async function allStarted(starts: Array<() => Promise<Gateway>>, concurrency = 2): Promise<Gateway[]> {
  const results: Array<PromiseSettledResult<Gateway>> = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < starts.length) {
      const index = next++;
      try {
        const g = await starts[index]();
        started.push(g);
        results[index] = { status: 'fulfilled', value: g };
      } catch (reason) {
        results[index] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<Gateway>).value);
}

beforeAll(async () => {
  keys = new KeyServer();
  await keys.start();
  idpA = `${keys.url}/idp-a`;
  idpB = `${keys.url}/idp-b`;
  coldIssuer = `${keys.url}/cold`;
  ttlIssuer = `${keys.url}/ttl`;
  const idpAUrl = keys.jwks(IDP_A_JWKS, () => keysA);
  const idpBUrl = keys.jwks(IDP_B_JWKS, () => [keyB1, keyCognito]);
  const sharedUrl = keys.jwks(SHARED_JWKS, () => [keyS1]);
  const coldUrl = keys.jwks(COLD_JWKS, () => [keyCold], 'hang');
  const ttlUrl = keys.jwks(TTL_JWKS, () => keysTtl);
  const iapUrl = keys.jwks(IAP_JWKS, () => [iapKey, iapRsaKey]);
  // An attacker's key URLs: served (so a gateway that followed them would succeed), never fetched.
  keys.jwks(ATTACKER_JKU, () => [attacker]);
  keys.document(ATTACKER_X5U, () => ({ note: 'an attacker certificate would be here' }));

  [redis, mock] = await Promise.all([resolveRedis(), startMock()]);
  const product = (key: string): Record<string, unknown> => ({
    providers: { openai: { api_key: key, models: ['gpt-4o', 'gpt-4o-mini'], base_url: `${mock.url}/v1` } },
  });
  const products = { demo: product('sk-mock-demo'), other: product('sk-mock-other'), team: product('sk-mock-team') };
  const policyFile = writeTempFile(
    'policy.yaml',
    [
      'defaults:',
      '  limits:',
      '    requests_per_second: 100000',
      '    user_requests_per_second: 100000',
      '    daily_requests: 100000000',
      '    user_daily_requests: 100000000',
      '    daily_tokens: 10000000000',
      '    user_daily_tokens: 10000000000',
      'products:',
      '  demo:',
      '    iap_members: ["user:alice@example.com", "domain:corp.example"]',
      '  other:',
      '    iap_members: ["user:multi@example.com"]',
      '  team:',
      '    iap_members: ["user:multi@example.com"]',
      '',
    ].join('\n'),
  );
  const common = { API_KEY_SERVER_POLICY_FILE: policyFile };
  // cold first: its boot mostly waits on the hanging IdP, so it overlaps the others well.
  [cold, gw, jw, mem, down, ttl] = await allStarted([
    () =>
      startGateway({
        products,
        env: {
          ...common,
          API_KEY_SERVER_JWT_PUBLIC_KEYS: undefined,
          API_KEY_SERVER_JWT_ISSUER: coldIssuer,
          // A key in the query (an IdP behind an API gateway): masked wherever keygate shows the URL.
          API_KEY_SERVER_JWKS_URLS: `${coldUrl}?key=${COLD_JWKS_QUERY_KEY}`,
          API_KEY_SERVER_JWKS_COOLDOWN_SECONDS: String(COLD_COOLDOWN_MS / 1000),
        },
      }),
    () =>
      startGateway({
        products,
        env: {
          ...common,
          API_KEY_SERVER_HMAC_SECRETS: HMAC_SECRETS,
          API_KEY_SERVER_REDIS_URL: redis.url,
          API_KEY_SERVER_IAP_AUDIENCE: IAP_AUD,
          API_KEY_SERVER_IAP_JWKS_URL: iapUrl,
          API_KEY_SERVER_CORS_ORIGINS: ALLOWED_ORIGINS.join(','),
          API_KEY_SERVER_PUBLIC_URL: PUBLIC_URL,
          API_KEY_SERVER_AUTHORIZATION_SERVERS: AUTH_SERVERS.join(','),
        },
      }),
    () =>
      startGateway({
        products,
        env: {
          ...common,
          API_KEY_SERVER_JWT_ISSUER: [DEV_ISSUER, idpA, idpB].join(','),
          API_KEY_SERVER_JWKS_URLS: [idpAUrl, idpBUrl, sharedUrl].join(','),
          API_KEY_SERVER_JWKS_COOLDOWN_SECONDS: String(JW_COOLDOWN_MS / 1000),
          API_KEY_SERVER_JWKS_TIMEOUT_MS: '1000',
          API_KEY_SERVER_JWT_REQUIRED_CLAIMS: 'token_use=access',
          API_KEY_SERVER_HMAC_SECRETS: HMAC_SECRETS,
          API_KEY_SERVER_REDIS_URL: redis.url,
        },
      }),
    () =>
      startGateway({
        products,
        env: {
          ...common,
          API_KEY_SERVER_HMAC_SECRETS: HMAC_SECRETS,
          API_KEY_SERVER_JWT_ISSUER: [DEV_ISSUER, BOUND_ISSUER].join(','),
          API_KEY_SERVER_JWT_AUDIENCE: MEM_CLIENT_ID,
          API_KEY_SERVER_JWT_AUDIENCE_CLAIM: 'client_id',
          API_KEY_SERVER_JWT_PUBLIC_KEYS: JSON.stringify({
            ...(JSON.parse(devJwtPublicKeys()) as Record<string, string>),
            [boundKey.kid]: { pem: boundKey.publicPem, issuer: BOUND_ISSUER },
          }),
        },
      }),
    () =>
      startGatewayListening({
        products,
        env: { ...common, API_KEY_SERVER_HMAC_SECRETS: HMAC_SECRETS, API_KEY_SERVER_REDIS_URL: 'redis://127.0.0.1:1' },
      }),
    () =>
      startGateway({
        products,
        env: {
          ...common,
          API_KEY_SERVER_JWT_PUBLIC_KEYS: undefined,
          API_KEY_SERVER_JWT_ISSUER: ttlIssuer,
          API_KEY_SERVER_JWKS_URLS: ttlUrl,
          API_KEY_SERVER_JWKS_CACHE_SECONDS: '2',
          API_KEY_SERVER_JWKS_COOLDOWN_SECONDS: '1',
          // A public URL with a path (behind a balancer that serves keygate under /keygate/).
          API_KEY_SERVER_PUBLIC_URL: PATH_PUBLIC_URL,
        },
      }),
  ]);
}, 120_000);

afterAll(async () => {
  await Promise.all([...started.map((g) => g.stop()), mock?.stop()]);
  await Promise.all([keys?.stop(), redis?.stop()]);
  cleanupTempFiles();
}, 30_000);

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

interface ErrorBody {
  error: { message: string; type: string; code: string; param?: string | null };
}

/** Audited targets, in origin form (`/v1/...`) or absolute form (`http://host/v1/...`). */
const AUDITED = /^(?:https?:\/\/[^/]*)?\/(v1|chat)\//;
/** Every auditable request this file sent, per gateway (checked at the end). */
const sent = new Map<Gateway, string[]>();

interface Sent {
  id: string;
  status: number;
  headers: IncomingHttpHeaders;
  json: unknown;
  text: string;
  /** Requests the mock upstream received while this one ran. */
  upstream: number;
  elapsedMs: number;
  /**
   * A credential of a kind the gateway takes came (RFC 6750 §3.1): an `Authorization: Bearer <token>`
   * (§2.1's syntax), any HMAC header, an IAP assertion (see {@link presentsCredential}).
   */
  presentedCredential: boolean;
}

interface SendOptions {
  method?: string;
  target?: string;
  /** A bearer token (sets Authorization). */
  token?: string;
  headers?: OutgoingHttpHeaders;
  /** JSON body (string: sent as is); default a chat request for POST; null: no body. */
  body?: unknown;
  label?: string;
  /** Do not bracket with mock stats (for concurrent sends; count around the batch instead). */
  noCount?: boolean;
}

function chatBody(label: string, model = 'gpt-4o-mini'): string {
  return JSON.stringify({ model, messages: [{ role: 'user', content: `auth e2e ${label}` }] });
}

function bodyOf(opts: SendOptions): string | undefined {
  const method = opts.method ?? 'POST';
  if (opts.body === null) return undefined;
  if (opts.body === undefined) return method === 'GET' ? undefined : chatBody(opts.label ?? 'request');
  return typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
}

/** One request over node:http (the target goes on the wire exactly as given). */
async function send(g: Gateway, opts: SendOptions = {}): Promise<Sent> {
  const id = uniqueId(opts.label?.replace(/[^A-Za-z0-9._:-]/g, '-').slice(0, 40) ?? 'auth');
  const method = opts.method ?? 'POST';
  const target = opts.target ?? '/v1/chat/completions';
  const body = bodyOf(opts);
  const headers: OutgoingHttpHeaders = { 'x-request-id': id };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  Object.assign(headers, opts.headers ?? {});
  if (AUDITED.test(target) && method !== 'OPTIONS') sent.set(g, [...(sent.get(g) ?? []), id]);
  const before = opts.noCount ? 0 : (await mock.stats()).total;
  const res = await rawRequest(g.port, { method, target, headers, body });
  const after = opts.noCount ? 0 : (await mock.stats()).total;
  return {
    id,
    status: res.status,
    headers: res.headers,
    json: res.json,
    text: res.text,
    upstream: after - before,
    elapsedMs: res.elapsedMs,
    presentedCredential: presentsCredential(g, headers),
  };
}

/** The credential kinds a gateway takes beside JWT, which every gateway of this file takes (see the header). */
function takes(g: Gateway): { hmac: boolean; iap: boolean } {
  return { hmac: [gw, jw, mem, down].includes(g), iap: g === gw };
}

/** Whether `headers` present a credential of a kind `g` takes (a kind it does not take is an unsupported method, RFC 6750 §3.1). */
function presentsCredential(g: Gateway, headers: OutgoingHttpHeaders): boolean {
  const sent = new Map(
    Object.entries(headers)
      .filter(([, v]) => v !== undefined)
      .map(([h, v]) => [h.toLowerCase(), v]),
  );
  const authorization = sent.get('authorization');
  // The Bearer scheme with something after it: a token presented, well formed or not.
  const bearer = typeof authorization === 'string' && /^bearer +\S/i.test(authorization);
  const hmac = ['x-client-id', 'x-timestamp', 'x-signature'].some((h) => sent.has(h));
  return bearer || (takes(g).hmac && hmac) || (takes(g).iap && sent.has('x-goog-iap-jwt-assertion'));
}

function errorOf(s: Sent): { status: number; code: string | undefined; message: string | undefined } {
  const error = (s.json as Partial<ErrorBody> | null)?.error;
  return { status: s.status, code: error?.code, message: error?.message };
}

/** Exactly one audit line for `id`, matching `expected`. */
async function expectOneAudit(g: Gateway, id: string, expected: Partial<AuditRecord>): Promise<AuditRecord> {
  const record = await g.waitForAudit(id);
  // Give a duplicate the chance to show up before counting.
  await sleep(5);
  expect(g.auditsFor(id)).toHaveLength(1);
  expect(record).toMatchObject(expected);
  return record;
}

/** The WWW-Authenticate rules of RFC 9728 / RFC 6750 on a 401. */
function expectChallenge(s: Sent, metadataUrl?: string): void {
  const www = String(s.headers['www-authenticate'] ?? '');
  expect(www).toMatch(/^Bearer resource_metadata="[^"]+\/\.well-known\/oauth-protected-resource(\/[^"]*)?"/);
  if (metadataUrl) expect(www).toContain(`resource_metadata="${metadataUrl}"`);
  // RFC 6750 §3.1: the error code and the reason where a credential was presented, a bearer token or
  // keygate's others alike; none for a request that presented none (none, Basic, a bare "Bearer").
  if (s.presentedCredential) expect(www).toMatch(/, error="invalid_token", error_description="[^"\\]+"$/);
  else expect(www).not.toContain('error=');
}

/** A refusal: status, code, nothing upstream, one audit line with the failure class. */
async function expectRefused(
  g: Gateway,
  s: Sent,
  status: number,
  code: string,
  failure: string,
  audit: Partial<AuditRecord> = {},
): Promise<AuditRecord> {
  expect(errorOf(s)).toMatchObject({ status, code });
  expect(s.upstream).toBe(0);
  if (status === 401) expectChallenge(s);
  return expectOneAudit(g, s.id, { status, failure, ...audit });
}

async function expect401(g: Gateway, s: Sent): Promise<AuditRecord> {
  return expectRefused(g, s, 401, 'invalid_token', 'auth', { product: null, user: null });
}

/** A completed chat completion that reached the upstream once. */
async function expectServed(g: Gateway, s: Sent, audit: Partial<AuditRecord>): Promise<AuditRecord> {
  expect(errorOf(s)).toMatchObject({ status: 200 });
  const body = s.json as { object?: string; choices?: Array<{ message: { content: string } }> };
  expect(body.object).toBe('chat.completion');
  expect(body.choices?.[0].message.content).toContain('Hello from mock openai');
  expect(s.upstream).toBe(1);
  return expectOneAudit(g, s.id, { status: 200, failure: null, ...audit });
}

async function lastUpstreamHeaders(): Promise<Record<string, string | string[] | undefined>> {
  const stats = await mock.stats();
  const last = stats.last['openai.chat'];
  if (!last) throw new Error('the mock has not received a chat request');
  return last.headers;
}

/** A JWKS-issuer access token for `jw`. */
function jwtFor(key: SigningKey, iss: string, extra: Record<string, unknown> = {}, header: Record<string, unknown> = {}): string {
  return signedJwt(key, claims({ iss, extra: { token_use: 'access', ...extra } }), header);
}

function randomKid(): string {
  return `kid-${randomBytes(8).toString('hex')}`;
}

// ---------------------------------------------------------------------------------------------
// 1. Remote JWKS
// ---------------------------------------------------------------------------------------------

describe('remote JWKS (in order: boot, binding, floods, rotation, outages)', () => {
  it('fetched every configured key URL exactly once at boot (JWKS, IAP keys, and the cold IdP)', () => {
    expect(keys.snapshot()).toEqual({ [IDP_A_JWKS]: 1, [IDP_B_JWKS]: 1, [SHARED_JWKS]: 1, [IAP_JWKS]: 1, [COLD_JWKS]: 1, [TTL_JWKS]: 1 });
  });

  it('verifies a token by its kid among the keys of its issuer, without fetching again', async () => {
    const before = keys.total();
    const s = await send(jw, { token: jwtFor(keyA1, idpA, { sub: 'idp-a-user' }), label: 'jwks-a' });
    await expectServed(jw, s, { product: 'demo', user: 'idp-a-user' });
    const es = await send(jw, { token: jwtFor(keyB1, idpB, { sub: 'idp-b-user' }), label: 'jwks-b-es256' });
    await expectServed(jw, es, { product: 'demo', user: 'idp-b-user' });
    expect(keys.total()).toBe(before);
  });

  it("verifies a token whose kid is standard base64 (Amazon Cognito's, with +, / and =), without fetching again", async () => {
    const before = keys.total();
    const s = await send(jw, { token: jwtFor(keyCognito, idpB, { sub: 'cognito-user' }), label: 'jwks-cognito-kid' });
    await expectServed(jw, s, { product: 'demo', user: 'cognito-user' });
    expect(keys.total()).toBe(before);
  });

  it("binds a JWKS URL to the issuer it lives under: issuer B cannot use a key of issuer A's URL", async () => {
    const beforeA = keys.count(IDP_A_JWKS);
    const s = await send(jw, { token: jwtFor(keyA1, idpB), label: 'jwks-cross-issuer' });
    await expect401(jw, s);
    // Looking the kid up for issuer B never consults issuer A's key set.
    expect(keys.count(IDP_A_JWKS)).toBe(beforeA);
  });

  it('serves a JWKS URL under no configured issuer to every issuer', async () => {
    for (const iss of [idpA, idpB, DEV_ISSUER]) {
      const s = await send(jw, { token: jwtFor(keyS1, iss, { sub: `shared-${iss.length}` }), label: 'jwks-shared' });
      await expectServed(jw, s, { user: `shared-${iss.length}` });
    }
  });

  it('causes no fetch at all for a token whose iss is not configured, even with the cooldown over', async () => {
    await keys.untilQuiet(JW_PATHS, JW_COOLDOWN_MS);
    const before = keys.snapshot();
    const lookalikes = ['https://evil.example', `${idpA}/`, `${idpA}x`, keys.url, idpA.toUpperCase(), `${idpA}/../idp-b`];
    for (const iss of lookalikes) {
      for (const key of [keyA1, attacker]) {
        const s = await send(jw, { token: jwtFor(key, iss, {}, { kid: randomKid() }), label: 'jwks-foreign-iss' });
        await expect401(jw, s);
      }
    }
    expect(keys.snapshot()).toEqual(before);
  });

  it('refetches at most once per cooldown under a flood of 50 random kids (and the flood is refused)', async () => {
    await keys.untilQuiet(JW_PATHS, JW_COOLDOWN_MS);
    const flood = async (label: string): Promise<Sent[]> => {
      const tokens = Array.from({ length: 50 }, () => jwtFor(keyA1, idpA, {}, { kid: randomKid() }));
      const before = (await mock.stats()).total;
      const results = await Promise.all(tokens.map((token) => send(jw, { token, label, noCount: true })));
      expect((await mock.stats()).total - before).toBe(0);
      return results;
    };
    const before = keys.snapshot();
    const started = Date.now();
    const first = await flood('kid-flood-1');
    const afterFirst = keys.snapshot();
    // Once per cooldown: the key sets the unknown kids were looked up in were each fetched at most once.
    expect(afterFirst[IDP_A_JWKS] - before[IDP_A_JWKS]).toBeLessThanOrEqual(1);
    expect(afterFirst[SHARED_JWKS] - before[SHARED_JWKS]).toBeLessThanOrEqual(1);
    expect(afterFirst[IDP_B_JWKS]).toBe(before[IDP_B_JWKS]);
    // A second flood right away, inside the cooldown, fetches nothing.
    const second = await flood('kid-flood-2');
    if (Date.now() - started < JW_COOLDOWN_MS - 200) expect(keys.snapshot()).toEqual(afterFirst);
    for (const s of [...first, ...second]) {
      expect(errorOf(s)).toMatchObject({ status: 401, code: 'invalid_token' });
      expectChallenge(s);
      await expectOneAudit(jw, s.id, { status: 401, failure: 'auth' });
    }
  });

  it('picks up a rotated key after the cooldown (a flood does not block the rotation)', async () => {
    keysA = [keyA1, keyA2];
    const rotated = (): string => jwtFor(keyA2, idpA, { sub: 'rotated-user' });
    // Inside the cooldown of the flood's refetch the new kid is not looked for yet.
    if (Date.now() - keys.lastFetch(IDP_A_JWKS) < JW_COOLDOWN_MS - 300) {
      const early = await send(jw, { token: rotated(), label: 'rotation-early' });
      await expect401(jw, early);
    }
    await keys.untilQuiet(JW_PATHS, JW_COOLDOWN_MS);
    const before = keys.count(IDP_A_JWKS);
    const s = await send(jw, { token: rotated(), label: 'rotation' });
    await expectServed(jw, s, { user: 'rotated-user' });
    expect(keys.count(IDP_A_JWKS) - before).toBe(1);
    // And the key is now cached: no further fetch.
    const again = await send(jw, { token: rotated(), label: 'rotation-cached' });
    await expectServed(jw, again, { user: 'rotated-user' });
    expect(keys.count(IDP_A_JWKS) - before).toBe(1);
  });

  it('keeps the keys it holds when a refetch fails (IdP answering 500)', async () => {
    keys.setMode(IDP_A_JWKS, 'fail');
    try {
      await keys.untilQuiet(JW_PATHS, JW_COOLDOWN_MS);
      const before = keys.count(IDP_A_JWKS);
      const unknown = await send(jw, { token: jwtFor(keyA1, idpA, {}, { kid: randomKid() }), label: 'stale-trigger' });
      await expect401(jw, unknown);
      expect(keys.count(IDP_A_JWKS) - before).toBe(1);
      for (const key of [keyA1, keyA2]) {
        const s = await send(jw, { token: jwtFor(key, idpA, { sub: `stale-${key.kid}` }), label: 'stale-ok' });
        await expectServed(jw, s, { user: `stale-${key.kid}` });
      }
      expect(keys.count(IDP_A_JWKS) - before).toBe(1);
    } finally {
      keys.setMode(IDP_A_JWKS, 'ok');
    }
  });

  it('keeps the keys it holds when a refetch times out (IdP hanging), and answers within the fetch timeout', async () => {
    keys.setMode(IDP_A_JWKS, 'hang');
    try {
      await keys.untilQuiet(JW_PATHS, JW_COOLDOWN_MS);
      const before = keys.count(IDP_A_JWKS);
      const unknown = await send(jw, { token: jwtFor(keyA1, idpA, {}, { kid: randomKid() }), label: 'hang-trigger' });
      await expect401(jw, unknown);
      // jw's fetch timeout is 1 s.
      expect(unknown.elapsedMs).toBeLessThan(2_500);
      expect(keys.count(IDP_A_JWKS) - before).toBe(1);
      const s = await send(jw, { token: jwtFor(keyA1, idpA, { sub: 'hang-stale' }), label: 'hang-stale-ok' });
      await expectServed(jw, s, { user: 'hang-stale' });
      expect(s.elapsedMs).toBeLessThan(1_500);
    } finally {
      keys.setMode(IDP_A_JWKS, 'ok');
    }
  });

  it('logged the failed fetches as warnings naming the URL, without key material', () => {
    const warnings = jw.proc.lines.filter((l) => typeof l.json?.message === 'string' && l.json.message.includes('JWKS fetch failed'));
    expect(warnings.length).toBeGreaterThanOrEqual(2);
    expect(warnings.every((l) => String(l.json?.url).endsWith(IDP_A_JWKS))).toBe(true);
    expect(warnings.map((l) => l.json?.reason)).toEqual(expect.arrayContaining(['timeout']));
    for (const l of warnings) expect(l.raw).not.toContain(String(keyA1.jwk.n).slice(0, 40));
  });

  it('with a cold cache and the IdP hanging, answers 401 within the fetch timeout, then fast while cooling down', async () => {
    // The boot fetch hung and timed out; wait until its cooldown is over so the next kid lookup fetches.
    await keys.untilQuiet([COLD_JWKS], COLD_COOLDOWN_MS);
    const before = keys.count(COLD_JWKS);
    const token = (): string => signedJwt(keyCold, claims({ iss: coldIssuer, sub: 'cold-user' }));
    const mockBefore = (await mock.stats()).total;
    const batch = await Promise.all(Array.from({ length: 5 }, () => send(cold, { token: token(), label: 'cold', noCount: true })));
    for (const s of batch) {
      expect(errorOf(s)).toMatchObject({ status: 401, code: 'invalid_token' });
      // Says the IdP's keys are missing, not that the token names a wrong key.
      expect(errorOf(s).message).toMatch(/keys are not available: its JWKS endpoint has not been fetched successfully yet/);
      expect(s.elapsedMs).toBeLessThan(4_000);
      expectChallenge(s);
      await expectOneAudit(cold, s.id, { status: 401, failure: 'auth' });
    }
    // Concurrent lookups shared one fetch.
    expect(keys.count(COLD_JWKS) - before).toBe(1);
    for (let i = 0; i < 5; i++) {
      const s = await send(cold, { token: token(), label: 'cold-later' });
      await expect401(cold, s);
      expect(s.elapsedMs).toBeLessThan(1_000);
    }
    expect(keys.count(COLD_JWKS) - before).toBe(1);
    expect((await mock.stats()).total).toBe(mockBefore);
    // Still in service (HMAC, static keys and other issuers work), and /readyz names the set not fetched.
    const ready = await fetch(`${cold.url}/readyz`);
    expect(ready.status).toBe(200);
    const readiness = await ready.text();
    expect(readiness).not.toContain(COLD_JWKS_QUERY_KEY);
    expect((JSON.parse(readiness) as { details: Record<string, unknown> }).details.keys).toMatchObject({
      status: 'up',
      mode: expect.stringMatching(/^degraded/),
      notFetched: [expect.stringMatching(new RegExp(`${COLD_JWKS.replace(/[.]/g, '\\.')}\\?key=\\[redacted\\]$`))],
    });
    // Where every set is fetched, it says so.
    const fine = await fetch(`${jw.url}/readyz`);
    expect(((await fine.json()) as { details: Record<string, unknown> }).details.keys).toMatchObject({ status: 'up', mode: 'loaded' });
  });

  it('honours the cache TTL: past it, keys are refreshed in the background, so a key the IdP dropped stops verifying, cached tokens included', async () => {
    // ttl's 2 s TTL ran out long ago (boot); the IdP now serves ttl-2 instead of ttl-1.
    keysTtl = [keyTtl2];
    await keys.untilQuiet([TTL_JWKS], 2_000);
    const before = keys.count(TTL_JWKS);
    const token = (key: SigningKey, sub: string): string => signedJwt(key, claims({ iss: ttlIssuer, sub }));
    // The expired cache still answers at once while it is refreshed in the background.
    const staleToken = token(keyTtl1, 'ttl-stale');
    const stale = await send(ttl, { token: staleToken, label: 'ttl-stale' });
    await expectServed(ttl, stale, { user: 'ttl-stale' });
    const waitStart = Date.now();
    while (keys.count(TTL_JWKS) === before && Date.now() - waitStart < 3_000) await sleep(20);
    expect(keys.count(TTL_JWKS) - before).toBe(1);
    await sleep(100);
    const dropped = await send(ttl, { token: token(keyTtl1, 'ttl-dropped'), label: 'ttl-dropped' });
    await expect401(ttl, dropped);
    // The token that verified with ttl-1 just before the refresh is in the verified-token cache:
    // the new key set ends that entry too, long before the token's own exp.
    const cachedStale = await send(ttl, { token: staleToken, label: 'ttl-stale-again' });
    await expect401(ttl, cachedStale);
    const fresh = await send(ttl, { token: token(keyTtl2, 'ttl-fresh'), label: 'ttl-fresh' });
    await expectServed(ttl, fresh, { user: 'ttl-fresh' });
  });

  it('refetches a stale key set for a client that only reuses its cached token, and then refuses that token', async () => {
    const token = (key: SigningKey, sub: string): string => signedJwt(key, claims({ iss: ttlIssuer, sub }));
    // The IdP serves ttl-2 (previous case); a client verifies once with it, then only reuses the token.
    const reused = token(keyTtl2, 'ttl-reused');
    await expectServed(ttl, await send(ttl, { token: reused, label: 'ttl-reused-first' }), { user: 'ttl-reused' });
    // The IdP withdraws ttl-2; nobody presents a new token while the 2 s cache time runs out.
    keysTtl = [keyTtl1];
    await sleep(2_100);
    const before = keys.count(TTL_JWKS);
    // Answered from the cache, and the stale key set is refetched in the background.
    await expectServed(ttl, await send(ttl, { token: reused, label: 'ttl-reused-stale' }), { user: 'ttl-reused' });
    await waitFor('the background refetch', () => keys.count(TTL_JWKS) > before, 3_000, 20);
    await sleep(100);
    await expect401(ttl, await send(ttl, { token: reused, label: 'ttl-reused-withdrawn' }));
  });

  it('token_use=access rule: refuses ID tokens and tokens without the claim where it is configured', async () => {
    const id = await send(jw, { token: jwtFor(keyA1, idpA, { token_use: 'id' }), label: 'token-use-id' });
    await expect401(jw, id);
    expect(errorOf(id).message).toContain('token_use');
    const none = await send(jw, { token: signedJwt(keyA1, claims({ iss: idpA })), label: 'token-use-missing' });
    await expect401(jw, none);
    const access = await send(jw, { token: jwtFor(keyA1, idpA, { sub: 'access-user' }), label: 'token-use-access' });
    await expectServed(jw, access, { user: 'access-user' });
  });

  it('serves a valid HMAC signature beside a bearer token that a claim rule (or a bad signature) refuses', async () => {
    // A token refused by keygate's own rules steps aside like one refused by its signature: the
    // next credential of the request is tried.
    for (const [label, token] of [
      ['hmac-beside-id-token', jwtFor(keyA1, idpA, { token_use: 'id' })],
      ['hmac-beside-bad-signature', `${jwtFor(keyA1, idpA, {}).slice(0, -4)}AAAA`],
    ] as const) {
      const s = await hmacSend(jw, { label, extraHeaders: { authorization: `Bearer ${token}` } });
      await expectServed(jw, s, { product: 'demo', user: CLIENT });
    }
    // Alone, the ID token is still refused with the rule's reason.
    const alone = await send(jw, { token: jwtFor(keyA1, idpA, { token_use: 'id' }), label: 'id-token-alone' });
    await expect401(jw, alone);
    expect(errorOf(alone).message).toContain('token_use');
  });

  it('token_use rule is off by default: an ID token is accepted where no rule is configured', async () => {
    const s = await send(gw, { token: mintToken({ sub: 'id-token-user', extraClaims: { token_use: 'id' } }), label: 'token-use-off' });
    await expectServed(gw, s, { user: 'id-token-user' });
  });
});

// ---------------------------------------------------------------------------------------------
// 2. The verifier
// ---------------------------------------------------------------------------------------------

interface VerifierTarget {
  name: string;
  gateway: () => Gateway;
  key: () => SigningKey;
  iss: () => string;
  extra: Record<string, unknown>;
}

const VERIFIER_TARGETS: VerifierTarget[] = [
  { name: 'static keys (gw)', gateway: () => gw, key: () => devRs, iss: () => DEV_ISSUER, extra: {} },
  { name: 'remote JWKS (jw)', gateway: () => jw, key: () => keyA1, iss: () => idpA, extra: { token_use: 'access' } },
];

describe.each(VERIFIER_TARGETS)('the verifier with $name refuses hostile tokens with 401, nothing upstream', (target) => {
  let before: Record<string, number>;
  let g: Gateway;
  let key: SigningKey;
  let iss: string;
  const valid = (extra: Record<string, unknown> = {}, ttlSeconds?: number): Record<string, unknown> =>
    claims({ iss, ttlSeconds, extra: { ...target.extra, ...extra } });

  beforeAll(async () => {
    g = target.gateway();
    key = target.key();
    iss = target.iss();
    // With every cooldown over, any token that made the gateway look for a key would cause a fetch.
    await keys.untilQuiet(JW_PATHS, JW_COOLDOWN_MS);
    before = keys.snapshot();
  });

  const cases: Array<[string, () => string]> = [
    ...['none', 'None', 'NONE', 'nOnE'].map((alg): [string, () => string] => [
      `alg ${alg}`,
      () => forgeJwt({ alg, typ: 'JWT', kid: key.kid }, valid(), { kind: 'none' }),
    ]),
    [
      'alg none carrying a real signature',
      () => {
        const real = signedJwt(key, valid()).split('.');
        return forgeJwt({ alg: 'none', kid: key.kid }, valid(), { kind: 'raw', signature: real[2] });
      },
    ],
    [
      'HS256 keyed with the public key PEM (RS256 key as HMAC secret)',
      () => forgeJwt({ alg: 'HS256', typ: 'JWT', kid: key.kid }, valid(), { kind: 'hmac', secret: key.publicPem }),
    ],
    [
      'HS256 keyed with the trimmed public key PEM',
      () => forgeJwt({ alg: 'HS256', typ: 'JWT', kid: key.kid }, valid(), { kind: 'hmac', secret: key.publicPem.trim() }),
    ],
    [
      'HS512 keyed with the public key PEM',
      () => forgeJwt({ alg: 'HS512', typ: 'JWT', kid: key.kid }, valid(), { kind: 'hmac', secret: key.publicPem }),
    ],
    ['a signature by a key nobody configured, under the configured kid', () => signedJwt(attacker, valid(), { kid: key.kid })],
    ['an embedded jwk (attacker key and kid)', () => signedJwt(attacker, valid(), { jwk: attacker.jwk })],
    ['an embedded jwk under the configured kid', () => signedJwt(attacker, valid(), { kid: key.kid, jwk: attacker.jwk })],
    ['a jku pointing at an attacker JWKS', () => signedJwt(attacker, valid(), { jku: `${keys.url}${ATTACKER_JKU}` })],
    ['a jku under the configured kid', () => signedJwt(attacker, valid(), { kid: key.kid, jku: `${keys.url}${ATTACKER_JKU}` })],
    ['an x5u pointing at an attacker certificate', () => signedJwt(attacker, valid(), { x5u: `${keys.url}${ATTACKER_X5U}` })],
    ['an x5c chain with an attacker certificate', () => signedJwt(attacker, valid(), { kid: key.kid, x5c: [x5cFor(attacker)] })],
    ['kid ../../etc/passwd', () => signedJwt(key, valid(), { kid: '../../etc/passwd' })],
    ["kid ' OR 1=1--", () => signedJwt(key, valid(), { kid: "' OR 1=1--" })],
    ['kid of 10 KB', () => signedJwt(key, valid(), { kid: 'k'.repeat(10 * 1024) })],
    ['kid that is a number', () => signedJwt(key, valid(), { kid: 1 })],
    ['kid with a NUL byte', () => signedJwt(key, valid(), { kid: `${key.kid}\u0000` })],
    [
      'no exp',
      () => {
        const c = valid();
        delete c.exp;
        return signedJwt(key, c);
      },
    ],
    ['exp as a string', () => signedJwt(key, { ...valid(), exp: String(nowSeconds() + 300) })],
    ['exp as null', () => signedJwt(key, { ...valid(), exp: null })],
    [
      'expired 2 minutes ago (beyond the 60 s skew)',
      () => signedJwt(key, { ...valid(), iat: nowSeconds() - 400, exp: nowSeconds() - 120 }),
    ],
    ['nbf 2 minutes in the future', () => signedJwt(key, valid({ nbf: nowSeconds() + 120 }))],
    ['iat 2 minutes in the future', () => signedJwt(key, { ...valid(), iat: nowSeconds() + 120, exp: nowSeconds() + 400 })],
    ['a lifetime of 901 s (max 900)', () => signedJwt(key, { ...valid(), iat: nowSeconds(), exp: nowSeconds() + 901 })],
    [
      'a lifetime over the max without iat',
      () => {
        const c: Record<string, unknown> = { ...valid(), exp: nowSeconds() + 1_000 };
        delete c.iat;
        return signedJwt(key, c);
      },
    ],
    ['a wrong iss', () => signedJwt(key, { ...valid(), iss: 'https://evil.example' })],
    ['an iss differing only in case', () => signedJwt(key, { ...valid(), iss: iss.toUpperCase() })],
    ['a wrong aud', () => signedJwt(key, { ...valid(), aud: 'not-keygate' })],
    ['an aud list without keygate', () => signedJwt(key, { ...valid(), aud: ['a', 'b'] })],
    [
      'a 5-part JWE',
      () =>
        [b64url({ alg: 'RSA-OAEP-256', enc: 'A256GCM', kid: key.kid }), randomBytes(256), randomBytes(12), randomBytes(40), randomBytes(16)]
          .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
          .join('.'),
    ],
    ['a signed token with a compression header (zip: a JWE parameter)', () => signedJwt(key, valid(), { zip: 'DEF' })],
    ['a signed token with an encryption header (enc: a JWE parameter)', () => signedJwt(key, valid(), { enc: 'A256GCM' })],
    ['a payload that is a JSON array', () => signedJwt(key, [valid()])],
    ['a payload that is a JSON string', () => signedJwt(key, JSON.stringify(valid()))],
    ['a payload that is a number', () => signedJwt(key, 42)],
    ['a payload that is null', () => signedJwt(key, null)],
    [
      'a payload that is not JSON',
      () =>
        forgeJwt(
          { alg: key.alg, kid: key.kid },
          null,
          { kind: 'key', alg: key.alg, key: key.privateKey },
          b64url('sub=admin&product=demo'),
        ),
    ],
    [
      'an unknown crit header',
      () => signedJwt(key, valid(), { crit: ['urn:example:never-understood'], 'urn:example:never-understood': true }),
    ],
    ['a token over 8 KB', () => signedJwt(key, valid({ pad: 'p'.repeat(9 * 1024) }))],
    [
      'a tampered payload (product changed) with the original signature',
      () => {
        const [h, , sig] = signedJwt(key, valid()).split('.');
        const token = `${h}.${b64url({ ...valid(), product: 'other' })}.${sig}`;
        mintedTokens.push(token);
        return token;
      },
    ],
    ['a stripped signature', () => `${signedJwt(key, valid()).split('.').slice(0, 2).join('.')}.`],
  ];

  it.each(cases)('refuses %s', async (label, make) => {
    const s = await send(g, { token: make(), label: `verifier-${label}` });
    await expect401(g, s);
  });

  it('refuses an ES256 token under an RS256 kid (the key pins its algorithm)', async () => {
    // On a JWKS issuer this kid+alg pair is simply unknown (and may cost one refetch), so only static keys here.
    if (target.name.startsWith('remote')) return;
    const s = await send(g, { token: signedJwt(attackerEc, valid(), { kid: key.kid }), label: 'verifier-alg-pin' });
    await expect401(g, s);
  });

  it.each([
    ['sub', 'a right-to-left override', 'alice\u202eevil', 'rlo'],
    ['sub', 'a zero-width space', 'ali\u200bce', 'zwsp'],
    ['sub', 'an isolate pair', 'bob\u2068x\u2069', 'isolate'],
    ['product', 'a byte order mark', 'demo\ufeff', 'bom'],
  ])(
    'refuses a %s with %s (an operator reading the audit or a Redis key would not see it), saying why',
    async (claim, _what, value, label) => {
      const s = await send(g, { token: signedJwt(key, valid({ [claim]: value })), label: `verifier-invisible-${label}` });
      await expect401(g, s);
      expect(errorOf(s).message).toBe(
        `the token ${claim} claim has control or invisible characters (such as bidirectional controls or zero-width spaces)`,
      );
    },
  );

  it('accepts the well-formed token these were derived from (the refusals are about the defect)', async () => {
    const s = await send(g, { token: signedJwt(key, valid({ sub: 'verifier-ok' })), label: 'verifier-ok' });
    await expectServed(g, s, { user: 'verifier-ok' });
  });

  it('accepts an x5t certificate thumbprint in the header (Entra ID sends one): the key is still found by kid alone', async () => {
    const thumbprint = randomBytes(20).toString('base64url');
    const s = await send(g, { token: signedJwt(key, valid({ sub: 'x5t-ok' }), { x5t: thumbprint }), label: 'verifier-x5t' });
    await expectServed(g, s, { user: 'x5t-ok' });
  });

  it('refuses a valid token followed by anything else in the Authorization header, also once the token is cached', async () => {
    const token = signedJwt(key, valid({ sub: 'suffix' }));
    await expectServed(g, await send(g, { token, label: 'verifier-suffix-ok' }), { user: 'suffix' });
    for (const header of [`Bearer ${token} x`, `Bearer ${token} ${'p'.repeat(4_000)}`, `Bearer ${token},${token}`]) {
      const s = await send(g, { headers: { authorization: header }, label: 'verifier-suffix' });
      await expect401(g, s);
    }
  });

  it('accepts a token that expired 30 s ago (within the 60 s skew) and one just under 8 KB', async () => {
    const skew = await send(g, {
      token: signedJwt(key, { ...valid({ sub: 'skew-ok' }), iat: nowSeconds() - 300, exp: nowSeconds() - 30 }),
      label: 'skew-ok',
    });
    await expectServed(g, skew, { user: 'skew-ok' });
    let pad = 6_500;
    let big = signedJwt(key, valid({ sub: 'big-ok', pad: 'p'.repeat(pad) }));
    while (big.length > 8_192) big = signedJwt(key, valid({ sub: 'big-ok', pad: 'p'.repeat((pad -= 20)) }));
    expect(big.length).toBeGreaterThan(8_100);
    const s = await send(g, { token: big, label: 'big-ok' });
    await expectServed(g, s, { user: 'big-ok' });
  });

  it('fetched no key URL for any of these tokens, and never the URLs the tokens carried', () => {
    expect(keys.snapshot()).toEqual(before);
    expect(keys.count(ATTACKER_JKU)).toBe(0);
    expect(keys.count(ATTACKER_X5U)).toBe(0);
  });
});

describe('a static key bound to an issuer (API_KEY_SERVER_JWT_PUBLIC_KEYS {"pem", "issuer"})', () => {
  it('verifies tokens of its issuer, and refuses with 401 a token it signed in the name of another accepted issuer', async () => {
    const own = await send(mem, { token: signedJwt(boundKey, memClaims({ iss: BOUND_ISSUER, sub: 'bound-own' })), label: 'bound-own' });
    await expectServed(mem, own, { user: 'bound-own', product: 'demo' });
    // DEV_ISSUER is accepted by mem, but this key may not sign for it.
    const forged = await send(mem, {
      token: signedJwt(boundKey, memClaims({ iss: DEV_ISSUER, sub: 'bound-forged' })),
      label: 'bound-forged',
    });
    await expect401(mem, forged);
    expect(errorOf(forged).message).toMatch(/issuer is not one this key signs for/);
  });

  it('leaves a plain PEM key free to sign for every configured issuer (SPEC §2)', async () => {
    const s = await send(mem, { token: signedJwt(devRs, memClaims({ iss: BOUND_ISSUER, sub: 'plain-any' })), label: 'plain-any' });
    await expectServed(mem, s, { user: 'plain-any' });
  });
});

describe('the audience read from another claim (API_KEY_SERVER_JWT_AUDIENCE_CLAIM=client_id, as for Amazon Cognito access tokens)', () => {
  it('serves a token without aud whose client_id is the audience', async () => {
    const s = await send(mem, { token: signedJwt(devRs, memClaims({ iss: DEV_ISSUER, sub: 'cognito-user' })), label: 'aud-claim-ok' });
    await expectServed(mem, s, { user: 'cognito-user', product: 'demo' });
  });

  it.each([
    ['another client_id', { clientId: 'another-app-client' }, /client_id is not the audience/],
    ['no client_id (an ID token, whose aud holds the client)', { clientId: undefined }, /has no client_id claim/],
  ])('refuses with 401 a token with %s, nothing upstream', async (what, opts, message) => {
    const payload = memClaims({ iss: DEV_ISSUER, sub: 'cognito-other', ...opts });
    if (opts.clientId === undefined) payload.aud = MEM_CLIENT_ID;
    const s = await send(mem, { token: signedJwt(devRs, payload), label: `aud-claim-${what}` });
    await expect401(mem, s);
    expect(errorOf(s).message).toMatch(message);
  });

  it('no longer takes the audience from aud', async () => {
    const s = await send(mem, {
      token: signedJwt(devRs, claims({ iss: DEV_ISSUER, aud: MEM_CLIENT_ID, sub: 'aud-only' })),
      label: 'aud-claim-aud-only',
    });
    await expect401(mem, s);
  });
});

// ---------------------------------------------------------------------------------------------
// 3. HMAC
// ---------------------------------------------------------------------------------------------

interface HmacSendOptions {
  method?: string;
  target?: string;
  body?: string | null;
  clientId?: string;
  secret?: string;
  timestamp?: number | string;
  /** Sign this instead of what is sent. */
  signed?: { method?: string; target?: string; body?: string };
  /** Header overrides after signing (undefined removes a header). */
  override?: Record<string, string | string[] | undefined>;
  label?: string;
  noCount?: boolean;
  extraHeaders?: OutgoingHttpHeaders;
}

function hmacRequest(opts: HmacSendOptions = {}): SendOptions {
  const method = opts.method ?? 'POST';
  const target = opts.target ?? '/v1/chat/completions';
  const body = opts.body === null ? undefined : (opts.body ?? (method === 'GET' ? undefined : chatBody(opts.label ?? 'hmac')));
  const headers: OutgoingHttpHeaders = {
    ...signHmac({
      clientId: opts.clientId ?? CLIENT,
      secret: opts.secret ?? CLIENT_SECRET,
      method: opts.signed?.method ?? method,
      target: opts.signed?.target ?? target,
      body: opts.signed?.body ?? body ?? '',
      timestamp: opts.timestamp,
    }),
    ...(opts.extraHeaders ?? {}),
  };
  for (const [k, v] of Object.entries(opts.override ?? {})) {
    if (v === undefined) delete headers[k];
    else headers[k] = v;
  }
  return { method, target, body: body ?? null, headers, label: opts.label, noCount: opts.noCount };
}

function hmacSend(g: Gateway, opts: HmacSendOptions = {}): Promise<Sent> {
  return send(g, hmacRequest(opts));
}

describe('HMAC request signing', () => {
  it('serves a correctly signed request: the product comes from the client entry, the user is the client id', async () => {
    const s = await hmacSend(gw, { label: 'hmac-ok' });
    await expectServed(gw, s, { product: 'demo', user: CLIENT });
    const other = await hmacSend(gw, { clientId: OTHER_CLIENT, secret: OTHER_SECRET, label: 'hmac-other-ok' });
    await expectServed(gw, other, { product: 'other', user: OTHER_CLIENT });
  });

  it('serves a signed GET with a query string (the query is part of the signed target)', async () => {
    const s = await hmacSend(gw, { method: 'GET', target: `/v1/models?limit=5&nonce=${RUN}`, label: 'hmac-get-query' });
    expect(errorOf(s)).toMatchObject({ status: 200 });
    expect((s.json as { object: string }).object).toBe('list');
    await expectOneAudit(gw, s.id, { status: 200, failure: null, user: CLIENT, product: 'demo' });
  });

  it('answers a correctly signed request whose body is not JSON 400, as a JWT caller gets: text/plain, or a GET with a body', async () => {
    const text = await hmacSend(gw, { label: 'hmac-text', extraHeaders: { 'content-type': 'text/plain' } });
    expect(errorOf(text)).toMatchObject({ status: 400, code: 'invalid_request' });
    expect(errorOf(text).message).toMatch(/application\/json/);
    expect(text.upstream).toBe(0);
    await expectOneAudit(gw, text.id, { status: 400, failure: 'bad_request', user: CLIENT, product: 'demo' });
    const getWithBody = await hmacSend(gw, {
      method: 'GET',
      target: '/v1/models',
      body: '{"x":1}',
      // Node's client frames no GET body by itself.
      extraHeaders: { 'content-length': '7' },
      label: 'hmac-get-body',
    });
    expect(errorOf(getWithBody)).toMatchObject({ status: 400, code: 'invalid_request', message: 'a GET request takes no body' });
    await expectOneAudit(gw, getWithBody.id, { status: 400, failure: 'bad_request' });
  });

  const ts = (): string => String(nowSeconds());
  const malformed: Array<[string, HmacSendOptions['override']]> = [
    ['only X-Client-Id', { 'x-timestamp': undefined, 'x-signature': undefined }],
    ['no X-Signature', { 'x-signature': undefined }],
    ['no X-Timestamp', { 'x-timestamp': undefined }],
    ['no X-Client-Id', { 'x-client-id': undefined }],
    ['an empty X-Signature', { 'x-signature': '' }],
    ['a non-numeric timestamp', { 'x-timestamp': 'abc' }],
    ['a timestamp with a sign', { 'x-timestamp': `+${ts()}` }],
    ['a negative timestamp', { 'x-timestamp': `-${ts()}` }],
    ['a fractional timestamp', { 'x-timestamp': `${ts()}.0` }],
    ['a hex timestamp', { 'x-timestamp': `0x${nowSeconds().toString(16)}` }],
    ['a 13-digit timestamp', { 'x-timestamp': `${ts()}000` }],
    ['a timestamp in milliseconds', { 'x-timestamp': String(Date.now()) }],
    ['an uppercase-hex signature', {}],
    ['a 63-character signature', {}],
    ['a 65-character signature', {}],
    ['a non-hex signature of 64 characters', { 'x-signature': 'g'.repeat(64) }],
    ['a base64 signature', {}],
    ['a prefixed signature (sha256=…)', {}],
    ['a client id with a space', { 'x-client-id': `${CLIENT} x` }],
    ['a client id with a path', { 'x-client-id': `../${CLIENT}` }],
    ['an unknown client id', { 'x-client-id': `nobody-${RUN}` }],
    ['a repeated X-Signature', {}],
    ['a repeated X-Timestamp', {}],
    ['a repeated X-Client-Id', {}],
  ];

  it.each(malformed)('refuses %s with 401', async (label, override) => {
    const req = hmacRequest({ label: `hmac-${label}`, override });
    const sig = String(req.headers!['x-signature']);
    const fixes: Record<string, OutgoingHttpHeaders> = {
      'an uppercase-hex signature': { 'x-signature': sig.toUpperCase() },
      'a 63-character signature': { 'x-signature': sig.slice(0, 63) },
      'a 65-character signature': { 'x-signature': `${sig}0` },
      'a base64 signature': { 'x-signature': Buffer.from(sig, 'hex').toString('base64') },
      'a prefixed signature (sha256=…)': { 'x-signature': `sha256=${sig}` },
      'a repeated X-Signature': { 'x-signature': [sig, sig] },
      'a repeated X-Timestamp': { 'x-timestamp': [String(req.headers!['x-timestamp']), String(req.headers!['x-timestamp'])] },
      'a repeated X-Client-Id': { 'x-client-id': [CLIENT, CLIENT] },
    };
    const fix: OutgoingHttpHeaders | undefined = fixes[label];
    const s = await send(gw, { ...req, headers: { ...req.headers, ...(fix ?? {}) } });
    await expect401(gw, s);
  });

  it('refuses a signature made with the wrong secret', async () => {
    const s = await hmacSend(gw, { secret: OTHER_SECRET, label: 'hmac-wrong-secret' });
    await expect401(gw, s);
  });

  it.each([
    ['305 s in the past', -305],
    ['305 s in the future', 305],
    ['an hour in the past', -3600],
    ['the epoch', -nowSeconds()],
  ])('refuses a correctly signed request whose timestamp is %s', async (label, offset) => {
    const s = await hmacSend(gw, { timestamp: nowSeconds() + offset, label: `hmac-window-${label}` });
    await expect401(gw, s);
  });

  it.each([
    ['295 s in the past', -295],
    ['295 s in the future', 295],
  ])('accepts a timestamp %s (±300 s, both directions)', async (label, offset) => {
    const s = await hmacSend(gw, { timestamp: nowSeconds() + offset, label: `hmac-window-ok-${label}` });
    await expectServed(gw, s, { user: CLIENT });
  });

  it('covers the raw body: one changed byte, an added body, or re-serialised JSON are refused', async () => {
    const body = chatBody('signed body');
    const changed = body.replace('signed body', 'signed bodY');
    for (const [label, sentBody, signedBody] of [
      ['changed byte', changed, body],
      ['body added to an empty signature', body, ''],
      ['re-serialised JSON', JSON.stringify(JSON.parse(body), null, 1), body],
    ] as const) {
      const s = await hmacSend(gw, { body: sentBody, signed: { body: signedBody }, label: `hmac-body-${label}` });
      await expect401(gw, s);
    }
  });

  it('covers the full target with its query string and the method', async () => {
    const cases: Array<[string, HmacSendOptions]> = [
      ['query added', { target: '/v1/chat/completions?x=1', signed: { target: '/v1/chat/completions' } }],
      ['query changed', { target: '/v1/chat/completions?x=2', signed: { target: '/v1/chat/completions?x=1' } }],
      ['query removed', { target: '/v1/chat/completions', signed: { target: '/v1/chat/completions?x=1' } }],
      ['path changed', { target: '/chat/demo', signed: { target: '/v1/chat/completions' } }],
      ['method changed', { method: 'POST', signed: { method: 'PUT' } }],
    ];
    for (const [label, opts] of cases) {
      const s = await hmacSend(gw, { ...opts, label: `hmac-target-${label}` });
      await expect401(gw, s);
    }
    const ok = await hmacSend(gw, { target: `/v1/chat/completions?trace=${RUN}`, label: 'hmac-target-query-ok' });
    await expectServed(gw, ok, { user: CLIENT });
  });

  // Signed over exactly the target sent: only the path's form is wrong.
  const routed: string[] = [
    '/chat/%2e%2e',
    '/chat/%2E',
    '/chat/.',
    '/chat/..',
    '/chat/demo%2F..%2Fother',
    '/chat/demo%2fx',
    '/chat/demo%5C..',
    // Encoded letters: routed as /chat/demo and /v1/chat/completions, but not in normal form.
    '/chat/%64emo',
    '/v1/chat/complet%69ons',
  ];
  it.each(routed)('refuses the non-normalised path %s with 401 before verifying (the signature is valid)', async (target) => {
    const s = await hmacSend(gw, { target, label: 'hmac-path' });
    await expect401(gw, s);
    expect(errorOf(s).message).toMatch(/normal form/);
  });

  const unrouted: string[] = [
    '/v1/../v1/chat/completions',
    '/v1/./chat/completions',
    '/v1//chat/completions',
    '/v1/%2e%2e/v1/chat/completions',
    '/v1/chat%2Fcompletions',
  ];
  it.each(unrouted)('answers 404 for the non-normalised path %s (no route; never authenticated, nothing upstream)', async (target) => {
    const s = await hmacSend(gw, { target, label: 'hmac-path-404' });
    await expectRefused(gw, s, 404, 'route_not_found', 'not_found');
  });

  it.each(['//v1/chat/completions', '/v1%2Fchat/completions'])('answers 404 for %s without serving it', async (target) => {
    const s = await hmacSend(gw, { target, label: 'hmac-path-404-unaudited' });
    expect(errorOf(s)).toMatchObject({ status: 404, code: 'route_not_found' });
    expect(s.upstream).toBe(0);
    // Not a `/v1/*` path, so SPEC §7 asks for no audit line; if one is written it must not be a success.
    expect(gw.auditsFor(s.id).filter((a) => a.failure === null)).toEqual([]);
  });

  it('serves a request in absolute form (as through a forward proxy) signed over its path and query, audited under its path', async () => {
    // RFC 9112 §3.2.2: servers must accept http://host/path; SPEC §5 has clients sign /path?query.
    const origin = `/v1/chat/completions?trace=${RUN}`;
    const served = await hmacSend(gw, {
      target: `http://gateway.internal:8080${origin}`,
      signed: { target: origin },
      label: 'hmac-absolute',
    });
    await expectServed(gw, served, { user: CLIENT, product: 'demo', path: '/v1/chat/completions' });
    const refusals: Array<[string, HmacSendOptions]> = [
      // The absolute URL itself is not what is signed.
      ['signed as sent', { target: `http://gateway.internal:8080${origin}` }],
      ['another query signed', { target: `http://gateway.internal:8080${origin}`, signed: { target: '/v1/chat/completions' } }],
      // The normal-form rules hold for the path of an absolute target too.
      ['dot segments', { target: 'http://gateway.internal:8080/chat/%2e%2e', signed: { target: '/chat/%2e%2e' } }],
    ];
    for (const [label, opts] of refusals) {
      const s = await hmacSend(gw, { ...opts, label: `hmac-absolute-${label}` });
      await expect401(gw, s);
    }
  });

  it('accepts a signature once: the replay is refused with 401', async () => {
    const req = hmacRequest({ label: 'hmac-replay' });
    const first = await send(gw, req);
    await expectServed(gw, first, { user: CLIENT });
    const replay = await send(gw, { ...req, label: 'hmac-replay-2' });
    await expect401(gw, replay);
    expect(errorOf(replay).message).toMatch(/already used/);
  });

  it('shares the replay cache between replicas through Redis (gw then jw)', async () => {
    const req = hmacRequest({ label: 'hmac-replica' });
    const first = await send(gw, req);
    await expectServed(gw, first, { user: CLIENT });
    const replay = await send(jw, { ...req, label: 'hmac-replica-2' });
    await expect401(jw, replay);
  });

  it('does not let a forged request burn a signature: a refused attempt with the same headers leaves it usable', async () => {
    const req = hmacRequest({ label: 'hmac-burn' });
    const forged = await send(gw, { ...req, body: chatBody('forged body'), label: 'hmac-burn-forged' });
    await expect401(gw, forged);
    const genuine = await send(gw, req);
    await expectServed(gw, genuine, { user: CLIENT });
  });

  it.each([
    ['Redis (gw)', () => gw],
    ['the in-memory cache (mem)', () => mem],
  ])('of 20 concurrent identical signed requests exactly one succeeds, with %s', async (_label, gateway) => {
    const g = gateway();
    const req = hmacRequest({ label: 'hmac-race', noCount: true });
    const before = (await mock.stats()).total;
    const results = await Promise.all(Array.from({ length: 20 }, () => send(g, req)));
    expect((await mock.stats()).total - before).toBe(1);
    const statuses = results.map((s) => s.status).sort();
    expect(statuses).toEqual([200, ...Array<number>(19).fill(401)]);
    for (const s of results) {
      if (s.status === 200) await expectOneAudit(g, s.id, { status: 200, failure: null, user: CLIENT });
      else {
        expect(errorOf(s).code).toBe('invalid_token');
        expectChallenge(s);
        await expectOneAudit(g, s.id, { status: 401, failure: 'auth' });
      }
    }
  });

  it('refuses a replay with the in-memory cache too', async () => {
    const req = hmacRequest({ label: 'hmac-mem-replay' });
    await expectServed(mem, await send(mem, req), { user: CLIENT });
    await expect401(mem, await send(mem, { ...req, label: 'hmac-mem-replay-2' }));
  });

  it('answers 503 at once when the Redis replay cache is unreachable, never serving the request (audited as the verified client)', async () => {
    for (let i = 0; i < 3; i++) {
      const s = await hmacSend(down, { label: 'hmac-redis-down' });
      expect(errorOf(s)).toMatchObject({ status: 503, code: 'service_unavailable' });
      expect(s.headers['retry-after']).toBeDefined();
      expect(s.elapsedMs).toBeLessThan(1_000);
      expect(s.upstream).toBe(0);
      // The signature verified before the cache was asked: the client and its product are known.
      const audit = await expectOneAudit(down, s.id, { status: 503, product: 'demo', user: CLIENT });
      expect(audit.failure).not.toBeNull();
    }
    // A request that fails the signature check is still a 401 (Redis is only asked for good signatures), audited without a caller.
    const bad = await hmacSend(down, { secret: OTHER_SECRET, label: 'hmac-redis-down-bad' });
    await expect401(down, bad);
  });
});

// ---------------------------------------------------------------------------------------------
// 4. IAP
// ---------------------------------------------------------------------------------------------

describe('Google IAP assertions', () => {
  const iap = (email: string | null, opts: Parameters<typeof mintIapAssertion>[1] = {}): string =>
    mintIapAssertion(iapKey, { aud: IAP_AUD, email, ...opts });
  const withAssertion = (assertion: string, extra: OutgoingHttpHeaders = {}): OutgoingHttpHeaders => ({
    'x-goog-iap-jwt-assertion': assertion,
    ...extra,
  });

  it('serves a valid assertion: the user is the email, the single product open to it is used', async () => {
    const s = await send(gw, {
      headers: withAssertion(iap('alice@example.com'), {
        'x-goog-authenticated-user-email': 'accounts.google.com:alice@example.com',
        'x-goog-authenticated-user-id': 'accounts.google.com:1234',
      }),
      label: 'iap-ok',
    });
    await expectServed(gw, s, { product: 'demo', user: 'alice@example.com' });
    const upstream = await lastUpstreamHeaders();
    expect(Object.keys(upstream).filter((h) => h.startsWith('x-goog'))).toEqual([]);
    expect(upstream.authorization).toBe('Bearer sk-mock-demo');
  });

  it('lower-cases the email from the assertion', async () => {
    const s = await send(gw, { headers: withAssertion(iap('Alice@Example.COM')), label: 'iap-case' });
    await expectServed(gw, s, { user: 'alice@example.com' });
  });

  it('serves a member by domain (domain:corp.example): an account of that Workspace domain (hd), whatever its address', async () => {
    const s = await send(gw, { headers: withAssertion(iap('bob@corp.example')), label: 'iap-domain' });
    await expectServed(gw, s, { product: 'demo', user: 'bob@corp.example' });
    const secondary = await send(gw, {
      headers: withAssertion(iap('bob@corp-mail.example', { hd: 'corp.example' })),
      label: 'iap-domain-alias',
    });
    await expectServed(gw, secondary, { product: 'demo', user: 'bob@corp-mail.example' });
  });

  it('refuses an address in the domain whose account is not of that Workspace domain (no hd, or another) with 403', async () => {
    const consumer = await send(gw, { headers: withAssertion(iap('eve@corp.example', { hd: null })), label: 'iap-domain-consumer' });
    await expectRefused(gw, consumer, 403, 'forbidden', 'forbidden');
    const other = await send(gw, { headers: withAssertion(iap('eve@corp.example', { hd: 'evil.example' })), label: 'iap-domain-other' });
    await expectRefused(gw, other, 403, 'forbidden', 'forbidden');
  });

  it.each(['carol@example.com', 'eve@notcorp.example', 'eve@corp.example.evil.com', 'eve@sub.corp.example'])(
    'refuses %s, who is not a member of any product, with 403 forbidden',
    async (email) => {
      const s = await send(gw, { headers: withAssertion(iap(email)), label: 'iap-not-member' });
      await expectRefused(gw, s, 403, 'forbidden', 'forbidden');
    },
  );

  it('refuses a user open to several products who names none with 403, and serves the one named', async () => {
    const none = await send(gw, { headers: withAssertion(iap('multi@example.com')), label: 'iap-multi-none' });
    await expectRefused(gw, none, 403, 'forbidden', 'forbidden');
    expect(errorOf(none).message).toMatch(/X-Keygate-Product/i);
    const byHeader = await send(gw, {
      headers: withAssertion(iap('multi@example.com'), { 'x-keygate-product': 'team' }),
      label: 'iap-multi-header',
    });
    await expectServed(gw, byHeader, { product: 'team', user: 'multi@example.com' });
    const byPath = await send(gw, { target: '/chat/other', headers: withAssertion(iap('multi@example.com')), label: 'iap-multi-path' });
    await expectServed(gw, byPath, { product: 'other', user: 'multi@example.com' });
    const notTheirs = await send(gw, {
      headers: withAssertion(iap('multi@example.com'), { 'x-keygate-product': 'demo' }),
      label: 'iap-multi-wrong',
    });
    await expectRefused(gw, notTheirs, 403, 'forbidden', 'forbidden');
    const unknown = await send(gw, {
      headers: withAssertion(iap('multi@example.com'), { 'x-keygate-product': 'nope' }),
      label: 'iap-multi-unknown',
    });
    // A product this gateway does not serve is not put in the audit.
    await expectRefused(gw, unknown, 403, 'forbidden', 'forbidden', { user: 'multi@example.com', product: null });
  });

  it('refuses /chat/{product} for a product the IAP user may not use with 403', async () => {
    const s = await send(gw, { target: '/chat/other', headers: withAssertion(iap('alice@example.com')), label: 'iap-other-product' });
    // The verified user is named in the audit, with the product asked for, as a JWT caller refused a product is.
    await expectRefused(gw, s, 403, 'forbidden', 'forbidden', { user: 'alice@example.com', product: 'other' });
  });

  const bad: Array<[string, () => string]> = [
    ['a wrong aud', () => iap('alice@example.com', { aud: '/projects/1/global/backendServices/2' })],
    ['the audience of another backend with the same prefix', () => iap('alice@example.com', { aud: `${IAP_AUD}0` })],
    [
      'an aud list that merely includes the audience',
      () => iap('alice@example.com', { aud: [IAP_AUD, '/projects/1/global/backendServices/2'] }),
    ],
    ['a wrong iss', () => iap('alice@example.com', { iss: 'https://accounts.google.com' })],
    ['an expired assertion', () => iap('alice@example.com', { iat: nowSeconds() - 1_200, exp: nowSeconds() - 600 })],
    ['a lifetime over 900 s (a JWT’s maximum)', () => iap('alice@example.com', { iat: nowSeconds(), exp: nowSeconds() + 3_600 })],
    ['an iat beyond the 60 s skew in the future', () => iap('alice@example.com', { iat: nowSeconds() + 300, exp: nowSeconds() + 600 })],
    ['an email with a control character (no operator could block it)', () => iap('alice\u0085@example.com')],
    ['an email with a right-to-left override (it would read reversed in the audit)', () => iap('alice\u202e@example.com')],
    ['an email with a zero-width space (it would pass for another user)', () => iap('ali\u200bce@example.com')],
    ['an email over 256 characters', () => iap(`${'a'.repeat(250)}@example.com`)],
    ['no email', () => iap(null)],
    [
      'a signature by another key under the Google kid',
      () => mintIapAssertion(attackerEc, { aud: IAP_AUD, email: 'alice@example.com', header: { kid: iapKey.kid } }),
    ],
    ['an unknown kid', () => mintIapAssertion(attackerEc, { aud: IAP_AUD, email: 'alice@example.com' })],
    [
      'RS256 (IAP signs ES256 only), with an RSA key of the IAP set',
      () => mintIapAssertion(iapRsaKey, { aud: IAP_AUD, email: 'alice@example.com' }),
    ],
    [
      'alg none',
      () =>
        forgeJwt(
          { alg: 'none', kid: iapKey.kid },
          { iss: IAP_ISSUER, aud: IAP_AUD, email: 'alice@example.com', sub: 'x', iat: nowSeconds(), exp: nowSeconds() + 600 },
          { kind: 'none' },
        ),
    ],
    [
      'HS256 keyed with the IAP public key',
      () =>
        forgeJwt(
          { alg: 'HS256', kid: iapKey.kid },
          { iss: IAP_ISSUER, aud: IAP_AUD, email: 'alice@example.com', sub: 'x', iat: nowSeconds(), exp: nowSeconds() + 600 },
          { kind: 'hmac', secret: iapKey.publicPem },
        ),
    ],
    [
      'a jku header',
      () => mintIapAssertion(iapKey, { aud: IAP_AUD, email: 'alice@example.com', header: { jku: `${keys.url}${ATTACKER_JKU}` } }),
    ],
    ['garbage', () => 'not-an-assertion'],
  ];

  it.each(bad)('refuses %s with 401', async (label, make) => {
    const s = await send(gw, { headers: withAssertion(make()), label: `iap-bad-${label}` });
    await expect401(gw, s);
  });

  it('refuses two assertion headers with 401 "send one IAP assertion header" (Node joins them into "a, b", which read as a JWE)', async () => {
    // Two valid assertions of a member: each alone would be served.
    const s = await send(gw, {
      headers: { 'x-goog-iap-jwt-assertion': [iap('alice@example.com'), iap('alice@example.com')] },
      label: 'iap-repeated',
    });
    await expect401(gw, s);
    expect(errorOf(s).message).toBe('send one IAP assertion header');
  });

  it('ignores forged x-goog-authenticated-user-* headers without an assertion: 401, nothing upstream', async () => {
    const s = await send(gw, {
      headers: {
        'x-goog-authenticated-user-email': 'accounts.google.com:alice@example.com',
        'x-goog-authenticated-user-id': 'accounts.google.com:1234',
        'x-goog-iap-jwt-assertion-forged': 'x',
      },
      label: 'iap-forged-headers',
    });
    await expect401(gw, s);
  });

  it('takes the identity from the assertion, not from forged identity headers sent with it', async () => {
    const s = await send(gw, {
      headers: withAssertion(iap('alice@example.com'), { 'x-goog-authenticated-user-email': 'accounts.google.com:boss@example.com' }),
      label: 'iap-forged-with-assertion',
    });
    await expectServed(gw, s, { user: 'alice@example.com' });
  });

  it('never fetched the IAP keys again (the key set is cached) nor any URL an assertion carried', () => {
    // One fetch at boot; an unknown kid may add at most one refetch per cooldown (30 s here).
    expect(keys.count(IAP_JWKS)).toBeLessThanOrEqual(2);
    expect(keys.count(ATTACKER_JKU)).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// 5. Request identity
// ---------------------------------------------------------------------------------------------

describe('request identity', () => {
  it('refuses /chat/{product} for another product with 403 forbidden, for a JWT and for an HMAC client', async () => {
    const jwt = await send(gw, { target: '/chat/other', token: mintToken({ sub: 'ident-user' }), label: 'ident-jwt-other' });
    await expectRefused(gw, jwt, 403, 'forbidden', 'forbidden', { product: 'demo', user: 'ident-user' });
    const hmac = await hmacSend(gw, { target: '/chat/other', label: 'ident-hmac-other' });
    await expectRefused(gw, hmac, 403, 'forbidden', 'forbidden', { product: 'demo', user: CLIENT });
    const ok = await hmacSend(gw, { target: '/chat/demo', label: 'ident-hmac-demo' });
    await expectServed(gw, ok, { product: 'demo', user: CLIENT, path: '/chat/demo' });
  });

  it('audits a request sent in absolute form (http://host/v1/...) like any other, under its path', async () => {
    // HTTP/1.1 servers must accept the absolute form, and Fastify routes it by its path; the audit
    // used to look at the raw target and skip it, so such a request left no record at all.
    const served = await send(gw, {
      target: 'http://evil.example/v1/chat/completions?x=1',
      token: mintToken({ sub: 'ident-absolute' }),
      label: 'ident-absolute',
    });
    await expectServed(gw, served, { product: 'demo', user: 'ident-absolute', path: '/v1/chat/completions' });
    const other = await send(gw, {
      target: 'https://evil.example/chat/other',
      token: mintToken({ sub: 'ident-absolute' }),
      label: 'ident-abs-other',
    });
    await expectRefused(gw, other, 403, 'forbidden', 'forbidden', { path: '/chat/other', user: 'ident-absolute' });
    const anonymous = await send(gw, { target: 'http://evil.example/v1/chat/completions', label: 'ident-abs-anon' });
    await expectRefused(gw, anonymous, 401, 'invalid_token', 'auth', { path: '/v1/chat/completions' });
  });

  it.each([
    ['a malformed percent-escape', '/v1/chat/%zz', 'the request target is not a valid URL path (malformed percent-encoding)'],
    ['a product name over the path parameter limit', `/chat/${'p'.repeat(1100)}`, 'a path segment of the request target is too long'],
  ])(
    'answers a target the router cannot take (%s) with the contract 400 saying why, its headers and one audit line',
    async (_what, target, message) => {
      const s = await send(gw, { target, token: mintToken({ sub: 'ident-unroutable' }), label: 'ident-unroutable' });
      expect(errorOf(s)).toMatchObject({ status: 400, code: 'invalid_request', message });
      expect(s.upstream).toBe(0);
      expect(s.headers['x-request-id']).toBe(s.id);
      expect(s.headers['x-content-type-options']).toBe('nosniff');
      // An audit line keeps 1,024 characters of a path.
      await expectOneAudit(gw, s.id, {
        status: 400,
        failure: 'bad_request',
        path: target.length > 1024 ? `${target.slice(0, 1024)}…` : target,
      });
    },
  );

  it('tells a target that is no path (a stray character before it) so, rather than blaming its percent-encoding; unaudited, as any path outside /v1 and /chat', async () => {
    const s = await send(gw, { target: '*v1/chat/completions', token: mintToken({ sub: 'ident-unroutable' }), label: 'ident-no-path' });
    expect(errorOf(s)).toEqual({ status: 400, code: 'invalid_request', message: 'the request target must be a path starting with /' });
    expect(s.upstream).toBe(0);
    expect(s.headers['x-request-id']).toBe(s.id);
  });

  it('serves a request with an Expect other than 100-continue like any other, audited (Node would answer a bare 417)', async () => {
    const served = await send(gw, {
      label: 'expect-unknown',
      token: mintToken({ sub: 'ident-expect' }),
      headers: { expect: 'x-keygate-test' },
    });
    expect(served.status).toBe(200);
    expect(served.upstream).toBe(1);
    expect(served.headers['x-request-id']).toBe(served.id);
    expect(served.headers['x-content-type-options']).toBe('nosniff');
    await expectOneAudit(gw, served.id, { status: 200, failure: null, user: 'ident-expect' });

    const refused = await send(gw, { label: 'expect-unknown-no-token', headers: { expect: 'x-keygate-test' } });
    expect(errorOf(refused)).toMatchObject({ status: 401, code: 'invalid_token' });
    expect(refused.upstream).toBe(0);
    await expectOneAudit(gw, refused.id, { status: 401, failure: 'auth' });
  });

  it.each([
    ['without Host', [] as string[], 'an HTTP/1.1 request needs a Host header'],
    ['with two Host headers', [`host: ${HOST}:1`, 'host: attacker.example'], 'send one Host header'],
  ])('answers an HTTP/1.1 request %s with the contract 400 and one audit line (RFC 9112 §3.2)', async (_label, hosts, message) => {
    const id = uniqueId('ident-no-host');
    const body = chatBody('no host');
    const head = [
      'POST /v1/chat/completions HTTP/1.1',
      ...hosts,
      `x-request-id: ${id}`,
      `authorization: Bearer ${mintToken({ sub: 'ident-no-host' })}`,
      'content-type: application/json',
      `content-length: ${Buffer.byteLength(body)}`,
      'connection: close',
    ];
    const before = (await mock.stats()).total;
    const answer = await socketExchange(gw.port, `${head.join('\r\n')}\r\n\r\n${body}`);
    const [statusLine] = answer.split('\r\n', 1);
    expect(statusLine).toBe('HTTP/1.1 400 Bad Request');
    expect(answer.toLowerCase()).toContain(`x-request-id: ${id}`);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: { code: 'invalid_request', message } });
    expect((await mock.stats()).total).toBe(before);
    sent.set(gw, [...(sent.get(gw) ?? []), id]);
    // Refused before the guard ran, named all the same by the token it carried.
    await expectOneAudit(gw, id, {
      status: 400,
      failure: 'bad_request',
      path: '/v1/chat/completions',
      product: 'demo',
      user: 'ident-no-host',
    });
  });

  it('answers CONNECT on an API path as a method no route takes (404, the contract body, one audit line), then closes the connection', async () => {
    const id = uniqueId('ident-connect');
    const head = [
      'CONNECT /v1/chat/completions HTTP/1.1',
      `host: ${HOST}:${gw.port}`,
      `x-request-id: ${id}`,
      `authorization: Bearer ${mintToken({ sub: 'ident-connect' })}`,
    ];
    const before = (await mock.stats()).total;
    // Node hands CONNECT to a tunnel handler, and without one dropped the connection unanswered.
    const answer = await socketExchange(gw.port, `${head.join('\r\n')}\r\n\r\ntunnelled bytes`, { end: false });
    const [statusLine] = answer.split('\r\n', 1);
    expect(statusLine).toBe('HTTP/1.1 404 Not Found');
    expect(answer.toLowerCase()).toContain(`x-request-id: ${id}`);
    expect(answer.toLowerCase()).toContain('x-content-type-options: nosniff');
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: { code: 'route_not_found' } });
    expect((await mock.stats()).total).toBe(before);
    sent.set(gw, [...(sent.get(gw) ?? []), id]);
    await expectOneAudit(gw, id, { status: 404, failure: 'not_found', method: 'CONNECT', path: '/v1/chat/completions' });
  });

  it('answers a CONNECT pipelined behind another request after that one, and lives on when its client resets the connection after the answer', async () => {
    const id = uniqueId('ident-connect-pipelined');
    // Both in one write: the CONNECT arrives while the first answer is still owed on the connection.
    const answer = await new Promise<string>((done, fail) => {
      const socket = connect(gw.port, HOST, () =>
        socket.write(
          `GET /healthz HTTP/1.1\r\nhost: ${HOST}\r\n\r\n` + `CONNECT /v1/models HTTP/1.1\r\nhost: ${HOST}\r\nx-request-id: ${id}\r\n\r\n`,
        ),
      );
      let text = '';
      socket.on('data', (c: Buffer) => {
        text += c.toString('utf8');
        // Read both answers, then reset: no FIN, an RST the gateway's socket meets as ECONNRESET.
        if ((text.match(/HTTP\/1\.1 \d{3}/g) ?? []).length === 2 && text.includes('route_not_found')) {
          socket.resetAndDestroy();
          done(text);
        }
      });
      socket.on('error', fail);
      socket.setTimeout(5_000, () => socket.destroy(new Error('no second answer')));
    });
    expect(answer.match(/HTTP\/1\.1 \d{3} [A-Za-z ]+/g)).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 404 Not Found']);
    sent.set(gw, [...(sent.get(gw) ?? []), id]);
    await expectOneAudit(gw, id, { status: 404, failure: 'not_found', method: 'CONNECT', path: '/v1/models' });
    // The reset did not take the gateway down (an unhandled socket error would have).
    await sleep(100);
    expect((await fetch(`http://${HOST}:${gw.port}/healthz`)).status).toBe(200);
  });

  it.each([
    ['headers over the size limit', 431, `GET /v1/models?x=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
    [
      'a body framed two ways (Content-Length and chunked)',
      400,
      'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    ],
  ])(
    'answers what the HTTP parser refuses (%s) in the contract’s shape, with X-Request-Id and the security headers',
    async (_what, status, raw) => {
      const before = (await mock.stats()).total;
      const answer = await new Promise<string>((done, fail) => {
        const socket = connect(gw.port, HOST, () => socket.write(raw));
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('close', () => done(Buffer.concat(chunks).toString('utf8')));
        socket.on('error', () => undefined);
        socket.setTimeout(5_000, () => socket.destroy(new Error('no answer')));
        socket.on('timeout', () => fail(new Error('no answer')));
      });
      expect(answer.split('\r\n', 1)[0]).toBe(`HTTP/1.1 ${status} ${STATUS_CODES[status]}`);
      expect(answer).toMatch(/\r\nx-request-id: [\w-]{36}\r\n/);
      expect(answer).toMatch(/\r\nx-content-type-options: nosniff\r\n/);
      expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: { code: 'invalid_request' } });
      expect((await mock.stats()).total).toBe(before);
    },
  );

  /** Writes `raw` on a fresh connection and resolves with all that comes back until it closes. */
  function rawExchange(raw: string): Promise<string> {
    return new Promise<string>((done, fail) => {
      const socket = connect(gw.port, HOST, () => socket.write(raw));
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('close', () => done(Buffer.concat(chunks).toString('utf8')));
      socket.on('error', () => undefined);
      socket.setTimeout(5_000, () => {
        socket.destroy();
        fail(new Error('no answer'));
      });
    });
  }

  it('refuses a body with malformed chunked framing as its own request: 400 with its X-Request-Id, audited 400 (was a nameless 400 audited 499)', async () => {
    const id = uniqueId('ident-bad-chunk');
    const body = chatBody('bad chunk');
    const head = [
      'POST /v1/chat/completions HTTP/1.1',
      'host: 127.0.0.1',
      `x-request-id: ${id}`,
      `authorization: Bearer ${mintToken({ sub: 'ident-bad-chunk' })}`,
      'content-type: application/json',
      'transfer-encoding: chunked',
    ];
    const before = (await mock.stats()).total;
    const answer = await rawExchange(`${head.join('\r\n')}\r\n\r\n10\r\n${body.slice(0, 16)}\r\nZZ\r\n`);
    expect(answer.split('\r\n', 1)[0]).toBe('HTTP/1.1 400 Bad Request');
    expect(answer.toLowerCase()).toContain(`x-request-id: ${id}`);
    expect(answer.match(/HTTP\/1\.1 \d{3}/g)).toHaveLength(1);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: { code: 'invalid_request' } });
    expect((await mock.stats()).total).toBe(before);
    sent.set(gw, [...(sent.get(gw) ?? []), id]);
    await expectOneAudit(gw, id, { status: 400, failure: 'bad_request', product: 'demo', user: 'ident-bad-chunk' });
  });

  it('answers a request before refusing what the parser cannot read after it on the same connection (HTTP/1.1 answers in order)', async () => {
    // A GET sent with a body but no framing: the body is read as the next request, which is malformed.
    const id = uniqueId('ident-pipelined-garbage');
    const head = [
      'GET /v1/models HTTP/1.1',
      'host: 127.0.0.1',
      `x-request-id: ${id}`,
      `authorization: Bearer ${mintToken({ sub: 'ident-pipelined' })}`,
    ];
    const answer = await rawExchange(`${head.join('\r\n')}\r\n\r\n{"x":`);
    // Its own answer first (was: only the parser's 400, while the audit line said 200). The first
    // body ends without a newline, so the second status line follows it directly.
    expect(answer.match(/HTTP\/1\.1 \d{3} [^\r]*/g)).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 400 Bad Request']);
    expect(answer.toLowerCase()).toContain(`x-request-id: ${id}`);
    expect(answer.indexOf(`"object":"list"`)).toBeLessThan(answer.indexOf('HTTP/1.1 400'));
    sent.set(gw, [...(sent.get(gw) ?? []), id]);
    await expectOneAudit(gw, id, { status: 200, failure: null, path: '/v1/models', user: 'ident-pipelined' });
  });

  it('takes the product from the credential, not from an X-Keygate-Product header', async () => {
    const s = await send(gw, {
      token: mintToken({ sub: 'ident-header' }),
      headers: { 'x-keygate-product': 'other' },
      label: 'ident-product-header',
    });
    await expectServed(gw, s, { product: 'demo', user: 'ident-header' });
    expect((await lastUpstreamHeaders()).authorization).toBe('Bearer sk-mock-demo');
  });

  it("never forwards the client's Authorization, X-Auth-* or x-goog-* identity headers upstream", async () => {
    const token = mintToken({ sub: 'ident-forward' });
    const s = await send(gw, {
      token,
      headers: {
        'x-auth-user': 'admin',
        'x-auth-request-email': 'admin@example.com',
        'x-auth-request-groups': 'admins',
        'x-authenticated-userid': 'admin',
        'x-goog-authenticated-user-email': 'accounts.google.com:admin@example.com',
        'x-goog-authenticated-user-id': 'accounts.google.com:1',
        'x-goog-iap-jwt-assertion': 'not-even-a-jwt',
        'x-forwarded-user': 'admin',
        cookie: 'session=abc',
      },
      label: 'ident-forward',
    });
    await expectServed(gw, s, { product: 'demo', user: 'ident-forward' });
    const upstream = await lastUpstreamHeaders();
    expect(upstream.authorization).toBe('Bearer sk-mock-demo');
    const leaked = Object.entries(upstream).filter(
      ([name, value]) =>
        /^(x-auth|x-goog|x-forwarded-user|cookie|x-client-id|x-timestamp|x-signature)/.test(name) || String(value).includes(token),
    );
    expect(leaked).toEqual([]);
  });

  it('never forwards the HMAC headers upstream', async () => {
    const s = await hmacSend(gw, { label: 'ident-hmac-forward', extraHeaders: { 'x-auth-user': 'admin' } });
    await expectServed(gw, s, { user: CLIENT });
    const upstream = await lastUpstreamHeaders();
    expect(Object.keys(upstream).filter((h) => /^(x-client-id|x-timestamp|x-signature|x-auth)/.test(h))).toEqual([]);
    expect(upstream.authorization).toBe('Bearer sk-mock-demo');
  });

  it('admin routes need the keygate.admin scope: none → 401, another scope → 403, the admin scope → 200', async () => {
    const anonymous = await send(gw, { method: 'GET', target: '/admin/blocks', body: null, label: 'admin-anon', noCount: true });
    expect(anonymous.status).toBe(401);
    expect(errorOf(anonymous).code).toBe('invalid_token');
    const plain = await send(gw, {
      method: 'GET',
      target: '/admin/blocks',
      body: null,
      token: mintToken({ sub: 'not-admin' }),
      label: 'admin-plain',
      noCount: true,
    });
    expect(plain.status).toBe(403);
    expect(errorOf(plain).code).toBe('forbidden');
    expect(errorOf(plain).message).toContain('keygate.admin');
    const other = await send(gw, {
      method: 'GET',
      target: '/admin/blocks',
      body: null,
      token: mintToken({ sub: 'reader', extraClaims: { scope: 'keygate.read' } }),
      label: 'admin-other-scope',
      noCount: true,
    });
    expect(other.status).toBe(403);
    const admin = await send(gw, {
      method: 'GET',
      target: '/admin/blocks',
      body: null,
      token: mintToken({ sub: 'ops', extraClaims: { scope: 'openid keygate.admin' } }),
      label: 'admin-ok',
      noCount: true,
    });
    expect(admin.status).toBe(200);
    expect(admin.json).toMatchObject({ data: expect.any(Array) });
  });
});

// ---------------------------------------------------------------------------------------------
// 6. Browsers: CORS and security headers
// ---------------------------------------------------------------------------------------------

function preflight(g: Gateway, origin: string | undefined, requestHeaders = 'authorization, content-type', method = 'POST'): Promise<Sent> {
  const headers: OutgoingHttpHeaders = { 'access-control-request-method': method, 'access-control-request-headers': requestHeaders };
  if (origin !== undefined) headers.origin = origin;
  return send(g, { method: 'OPTIONS', body: null, headers, label: 'preflight' });
}

describe('CORS', () => {
  it.each(ALLOWED_ORIGINS)(
    'answers a preflight from the configured origin %s with 204, that exact origin, GET/POST/DELETE and the listed headers',
    async (origin) => {
      const s = await preflight(gw, origin);
      expect(s.status).toBe(204);
      expect(s.headers['access-control-allow-origin']).toBe(origin);
      expect(String(s.headers['access-control-allow-methods']).split(/,\s*/).sort()).toEqual(['DELETE', 'GET', 'POST']);
      const allowed = String(s.headers['access-control-allow-headers']).toLowerCase().split(/,\s*/);
      expect(allowed).toEqual(expect.arrayContaining(['authorization', 'content-type']));
      expect(allowed).not.toContain('*');
      expect(s.headers['access-control-allow-credentials']).toBeUndefined();
      expect(String(s.headers.vary)).toMatch(/origin/i);
      expect(s.upstream).toBe(0);
    },
  );

  it('allows the Anthropic SDK’s headers (x-api-key, its version and beta headers, its browser opt-in)', async () => {
    const asked = 'x-api-key, anthropic-version, anthropic-beta, anthropic-dangerous-direct-browser-access, content-type';
    const s = await preflight(gw, ALLOWED_ORIGINS[0], asked);
    expect(s.status).toBe(204);
    const allowed = String(s.headers['access-control-allow-headers']).toLowerCase().split(/,\s*/);
    expect(allowed).toEqual(expect.arrayContaining(asked.split(', ')));
  });

  it('allows every header the official SDKs send from a page (their User-Agent, which Firefox sends; @google/genai’s X-Server-Timeout)', async () => {
    // The header names each SDK gives its fetch, as a page's fetch would send them: learnt from the
    // SDKs themselves, answered here without a network call (only the preflight goes to keygate).
    const asked = new Set<string>();
    const learn = ((_url: string | URL | Request, init?: RequestInit): Promise<Response> => {
      new Headers(init?.headers).forEach((_value, name) => asked.add(name));
      return Promise.resolve(new Response('{}', { status: 200, headers: { 'content-type': 'application/json' } }));
    }) as typeof fetch;
    const token = mintToken({ product: 'demo', sub: 'page-user' });
    const anthropic = new Anthropic({ baseURL: gw.url, apiKey: token, fetch: learn, dangerouslyAllowBrowser: true, maxRetries: 0 });
    await anthropic.beta.messages.create({
      model: 'claude-sonnet-4-5',
      max_tokens: 16,
      betas: ['context-1m-2025-08-07'],
      messages: [{ role: 'user', content: 'Hi' }],
    });
    await new OpenAI({
      baseURL: `${gw.url}/v1`,
      apiKey: token,
      fetch: learn,
      dangerouslyAllowBrowser: true,
      maxRetries: 0,
    }).chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'Hi' }],
    });
    const genai = new GoogleGenAI({ apiKey: token, httpOptions: { baseUrl: gw.url, fetch: learn, timeout: 30_000 } });
    await genai.models.generateContent({ model: 'gemini-2.5-flash', contents: 'Hi' });
    // `Accept: application/json` is CORS-safelisted: a browser never asks for it.
    asked.delete('accept');
    expect([...asked]).toEqual(expect.arrayContaining(['user-agent', 'x-server-timeout', 'x-stainless-lang', 'x-goog-api-client']));
    const s = await preflight(gw, ALLOWED_ORIGINS[0], [...asked].sort().join(', '));
    expect(s.status).toBe(204);
    const allowed = String(s.headers['access-control-allow-headers']).toLowerCase().split(/,\s*/);
    expect([...asked].filter((name) => !allowed.includes(name))).toEqual([]);
    expect(s.upstream).toBe(0);
  });

  it('allows the headers the SDKs’ helpers add (streaming helpers, tool runners, pollers)', async () => {
    const asked = 'x-stainless-helper-method, x-stainless-helper, x-stainless-poll-helper, x-stainless-custom-poll-interval, authorization';
    const s = await preflight(gw, ALLOWED_ORIGINS[0], asked);
    expect(s.status).toBe(204);
    const allowed = String(s.headers['access-control-allow-headers']).toLowerCase().split(/,\s*/);
    expect(allowed).toEqual(expect.arrayContaining(asked.split(', ')));
  });

  it('lists only its own methods and headers, whatever a preflight asks for', async () => {
    const s = await preflight(gw, ALLOWED_ORIGINS[0], 'x-evil-header, authorization', 'PUT');
    expect(s.status).toBe(204);
    expect(String(s.headers['access-control-allow-methods'])).not.toMatch(/PUT|PATCH|\*/);
    expect(String(s.headers['access-control-allow-headers']).toLowerCase()).not.toMatch(/x-evil-header|\*/);
  });

  it.each([
    'https://evil.example.com',
    'https://app.example.com.evil.com',
    'http://app.example.com',
    'https://app.example.com:8443',
    'null',
  ])('refuses a preflight from %s with 403 and no CORS grant', async (origin) => {
    const s = await preflight(gw, origin);
    expect(errorOf(s)).toMatchObject({ status: 403, code: 'forbidden' });
    expect(s.headers['access-control-allow-origin']).toBeUndefined();
    expect(s.headers['access-control-allow-methods']).toBeUndefined();
    expect(s.upstream).toBe(0);
  });

  it('refuses an OPTIONS request that is no preflight (no Access-Control-Request-Method, or no Origin) with the contract 400', async () => {
    const noMethod = await send(gw, {
      method: 'OPTIONS',
      target: '/v1/models',
      body: null,
      headers: { origin: ALLOWED_ORIGINS[0] },
      label: 'preflight-no-method',
    });
    const noOrigin = await preflight(gw, undefined);
    // An empty method header is no preflight either (the CORS plugin would answer it in plain text).
    const emptyMethod = await preflight(gw, ALLOWED_ORIGINS[0], 'content-type', ' ');
    for (const s of [noMethod, noOrigin, emptyMethod]) {
      expect(errorOf(s)).toMatchObject({ status: 400, code: 'invalid_request' });
      expect(s.headers['access-control-allow-origin']).toBeUndefined();
      expect(s.upstream).toBe(0);
      await expectOneAudit(gw, s.id, { status: 400, failure: 'bad_request', method: 'OPTIONS' });
    }
  });

  it('refuses OPTIONS on the Anthropic and Gemini routes in their own envelopes, as every other refusal there', async () => {
    // The CORS plugin's route takes every OPTIONS path; these refusals came in the OpenAI shape.
    const notPreflight = await send(gw, {
      method: 'OPTIONS',
      target: '/v1/messages',
      body: null,
      headers: { origin: ALLOWED_ORIGINS[0] },
      label: 'options-messages',
    });
    expect(notPreflight.status).toBe(400);
    expect(notPreflight.json).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error', code: 'invalid_request' },
      request_id: notPreflight.id,
    });
    const foreign = await send(gw, {
      method: 'OPTIONS',
      target: '/v1beta/models/gemini-1.5-pro:generateContent',
      body: null,
      headers: { origin: 'https://evil.example.com', 'access-control-request-method': 'POST' },
      label: 'options-gemini',
    });
    expect(foreign.status).toBe(403);
    expect(foreign.json).toMatchObject({ error: { code: 403, status: 'PERMISSION_DENIED' } });
    for (const [s, failure] of [
      [notPreflight, 'bad_request'],
      [foreign, 'forbidden'],
    ] as const) {
      expect(s.upstream).toBe(0);
      await expectOneAudit(gw, s.id, { status: s.status, failure, method: 'OPTIONS' });
    }
  });

  it('answers OPTIONS * (the whole server) with its X-Request-Id, like any answer', async () => {
    // Nest's adapter sends an asterisk-form target to the not-found handler ahead of keygate's hooks:
    // it came back without X-Request-Id. Not a /v1 path, so not audited.
    const s = await send(gw, { method: 'OPTIONS', target: '*', body: null, label: 'options-asterisk' });
    expect(errorOf(s)).toMatchObject({ status: 404, code: 'route_not_found' });
    expect(s.headers['x-request-id']).toBe(s.id);
    expect(s.upstream).toBe(0);
  });

  it('preflight answers go through the request lifecycle: X-Request-Id, security headers and one audit line', async () => {
    const refused = await preflight(gw, 'https://evil.example.com');
    const granted = await preflight(gw, ALLOWED_ORIGINS[0]);
    expect({ refused: refused.headers['x-request-id'], granted: granted.headers['x-request-id'] }).toEqual({
      refused: refused.id,
      granted: granted.id,
    });
    expect({ refused: refused.headers['x-content-type-options'], granted: granted.headers['x-content-type-options'] }).toEqual({
      refused: 'nosniff',
      granted: 'nosniff',
    });
    await expectOneAudit(gw, refused.id, { status: 403, failure: 'forbidden', method: 'OPTIONS' });
    await expectOneAudit(gw, granted.id, { status: 204, failure: null, method: 'OPTIONS' });
  });

  /** What a browser may read of keygate's answers, sorted. */
  const EXPOSED_HEADERS = [
    'request-id',
    'retry-after',
    'www-authenticate',
    'x-ratelimit-limit-requests',
    'x-ratelimit-remaining-requests',
    'x-request-id',
    'x-should-retry',
  ];

  it('grants an allowed origin on the actual response and exposes only x-request-id, retry-after, Anthropic’s request-id, the daily cap’s x-ratelimit-*, x-should-retry and the 401 challenge', async () => {
    const s = await send(gw, { headers: { origin: ALLOWED_ORIGINS[1] }, label: 'cors-actual' });
    await expect401(gw, s);
    expect(s.headers['access-control-allow-origin']).toBe(ALLOWED_ORIGINS[1]);
    expect(String(s.headers['access-control-expose-headers']).toLowerCase().split(/,\s*/).sort()).toEqual(EXPOSED_HEADERS);
    expect(s.headers['access-control-allow-credentials']).toBeUndefined();
  });

  it('grants an allowed origin on a streamed completion too (the SSE headers are written by hand)', async () => {
    const body = { ...(JSON.parse(chatBody('cors-stream')) as Record<string, unknown>), stream: true };
    const s = await send(gw, { token: mintToken(), headers: { origin: ALLOWED_ORIGINS[0] }, body, label: 'cors-stream' });
    expect(s.status).toBe(200);
    expect(String(s.headers['content-type'])).toContain('text/event-stream');
    expect(s.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(s.headers['access-control-allow-origin']).toBe(ALLOWED_ORIGINS[0]);
    expect(String(s.headers['access-control-expose-headers']).toLowerCase().split(/,\s*/).sort()).toEqual(EXPOSED_HEADERS);
    expect(String(s.headers.vary)).toMatch(/origin/i);
    await expectOneAudit(gw, s.id, { status: 200, failure: null });
  });

  it('grants nothing to a foreign origin on the actual response', async () => {
    const s = await send(gw, { headers: { origin: 'https://evil.example.com' }, label: 'cors-actual-foreign' });
    await expect401(gw, s);
    expect(s.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('grants no origin at all by default (no API_KEY_SERVER_CORS_ORIGINS)', async () => {
    const pre = await preflight(mem, ALLOWED_ORIGINS[0]);
    expect(pre.status).not.toBe(204);
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
    const actual = await send(mem, { headers: { origin: ALLOWED_ORIGINS[0] }, label: 'cors-default-actual' });
    await expect401(mem, actual);
    expect(actual.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('security headers', () => {
  const expectSecurityHeaders = (headers: IncomingHttpHeaders): void => {
    expect(headers).toMatchObject({
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'SAMEORIGIN',
      'referrer-policy': 'no-referrer',
      'cross-origin-resource-policy': 'same-site',
      'x-dns-prefetch-control': 'off',
    });
    expect(String(headers['strict-transport-security'])).toMatch(/max-age=\d+/);
    expect(String(headers['content-security-policy'])).toContain("default-src 'self'");
    expect(String(headers['content-security-policy'])).toMatch(/frame-ancestors|object-src 'none'/);
    expect(headers['x-powered-by']).toBeUndefined();
  };

  it('are on a served completion, on a 401, and on the docs and health routes', async () => {
    const ok = await send(gw, { token: mintToken(), label: 'sec-ok' });
    await expectServed(gw, ok, {});
    expectSecurityHeaders(ok.headers);
    const refused = await send(gw, { label: 'sec-401' });
    await expect401(gw, refused);
    expectSecurityHeaders(refused.headers);
    for (const target of ['/docs', '/healthz', '/.well-known/oauth-protected-resource']) {
      const s = await send(gw, { method: 'GET', target, label: 'sec-get' });
      expect(s.status).toBe(200);
      expectSecurityHeaders(s.headers);
    }
  });

  /** The headers helmet can set, whichever of its options are on. */
  const HELMET_HEADERS = [
    'content-security-policy',
    'cross-origin-opener-policy',
    'cross-origin-resource-policy',
    'origin-agent-cluster',
    'referrer-policy',
    'strict-transport-security',
    'x-content-type-options',
    'x-dns-prefetch-control',
    'x-download-options',
    'x-frame-options',
    'x-permitted-cross-domain-policies',
    'x-xss-protection',
  ];
  const helmetHeaders = (headers: IncomingHttpHeaders): Record<string, unknown> =>
    Object.fromEntries(HELMET_HEADERS.filter((name) => headers[name] !== undefined).map((name) => [name, headers[name]]));

  it('are on every OPTIONS answer, as on GET /healthz: OPTIONS *, and preflights granted, refused or malformed, with CORS on or off', async () => {
    const healthz = helmetHeaders((await send(gw, { method: 'GET', target: '/healthz', label: 'sec-healthz' })).headers);
    expectSecurityHeaders(healthz as IncomingHttpHeaders);
    const asked = { 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' };
    const answers = {
      // The CORS plugin's route takes the asterisk-form target, and Nest's adapter answers it 404 ahead of keygate's hooks.
      'OPTIONS * (CORS on)': await send(gw, { method: 'OPTIONS', target: '*', body: null, label: 'sec-options-asterisk' }),
      'OPTIONS * as a preflight (CORS on)': await send(gw, {
        method: 'OPTIONS',
        target: '*',
        body: null,
        headers: { origin: ALLOWED_ORIGINS[0], ...asked },
        label: 'sec-options-asterisk-preflight',
      }),
      'OPTIONS * (CORS off)': await send(mem, { method: 'OPTIONS', target: '*', body: null, label: 'sec-options-asterisk-off' }),
      'a granted preflight': await preflight(gw, ALLOWED_ORIGINS[0]),
      'a preflight from a foreign origin': await preflight(gw, 'https://evil.example.com'),
      'an OPTIONS that is no preflight': await preflight(gw, undefined),
      'a preflight with CORS off': await preflight(mem, ALLOWED_ORIGINS[0]),
    };
    const seen = Object.entries(answers).map(([what, answer]) => [what, answer.status, helmetHeaders(answer.headers)] as const);
    expect(seen.map(([what, status, headers]) => ({ what, status, ...headers }))).toEqual(
      seen.map(([what, status]) => ({ what, status, ...healthz })),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// 7. RFC 9728
// ---------------------------------------------------------------------------------------------

describe('RFC 9728 protected-resource metadata and WWW-Authenticate', () => {
  it('describes the resource and its configured authorization servers', async () => {
    const s = await send(gw, {
      method: 'GET',
      target: '/.well-known/oauth-protected-resource',
      headers: { 'x-forwarded-host': 'attacker.example' },
    });
    expect(s.status).toBe(200);
    expect(String(s.headers['content-type'])).toContain('application/json');
    expect(s.json).toMatchObject({
      resource: PUBLIC_URL,
      authorization_servers: AUTH_SERVERS,
      bearer_methods_supported: ['header'],
      scopes_supported: expect.arrayContaining(['keygate.admin']) as unknown,
    });
    expect(s.text).not.toContain('attacker.example');
    // Configured, the same for every caller: cacheable.
    expect(s.headers['cache-control']).toBe('public, max-age=3600');
  });

  it('without a configured public URL, names the URL the gateway was called at', async () => {
    const s = await send(mem, { method: 'GET', target: '/.well-known/oauth-protected-resource' });
    expect(s.status).toBe(200);
    expect((s.json as { resource: string }).resource).toBe(mem.url);
    // Derived from the caller's own headers: a shared cache must not keep it for the next caller.
    expect(s.headers['cache-control']).toBe('no-store');
  });

  it('without a configured public URL, never copies a malformed Host into the metadata or the challenge', async () => {
    const hostile = 'evil.example", error="x';
    const metadata = await send(mem, { method: 'GET', target: '/.well-known/oauth-protected-resource', headers: { host: hostile } });
    expect((metadata.json as { resource: string }).resource).toBe(mem.url);
    const challenge = await send(mem, { headers: { host: hostile }, label: 'www-hostile-host' });
    expect(challenge.status).toBe(401);
    expect(String(challenge.headers['www-authenticate'])).toBe(
      `Bearer resource_metadata="${mem.url}/.well-known/oauth-protected-resource"`,
    );
    await expectOneAudit(mem, challenge.id, { status: 401, failure: 'auth' });
  });

  it('every 401 points at the metadata; error="invalid_token" and its reason only when a credential was presented', async () => {
    const cases: Array<[string, Sent]> = [
      ['no credential', await send(gw, { label: 'www-none' })],
      ['a bad bearer token', await send(gw, { token: 'x.y.z', label: 'www-bad-token' })],
      ['an empty bearer', await send(gw, { headers: { authorization: 'Bearer ' }, label: 'www-empty-bearer' })],
      [
        'a bearer token with a non-ASCII byte',
        await send(gw, { headers: { authorization: 'Bearer abc\u00e9.def.ghi' }, label: 'www-latin1' }),
      ],
      ['a Basic credential', await send(gw, { headers: { authorization: 'Basic YWxpY2U6c2VjcmV0' }, label: 'www-basic' })],
      ['a bad HMAC signature', await hmacSend(gw, { secret: OTHER_SECRET, label: 'www-hmac' })],
      ['a bad IAP assertion', await send(gw, { headers: { 'x-goog-iap-jwt-assertion': 'garbage' }, label: 'www-iap' })],
    ];
    for (const [label, s] of cases) {
      expect({ label, status: s.status }).toEqual({ label, status: 401 });
      expectChallenge(s, METADATA_URL);
      await expectOneAudit(gw, s.id, { status: 401, failure: 'auth' });
      expect(s.upstream).toBe(0);
    }
    // An HMAC signature and an IAP assertion are credentials as a bearer token is: the challenge names
    // the same error, with the body's reason.
    const presented = new Map(cases);
    for (const label of ['a bad bearer token', 'a bearer token with a non-ASCII byte', 'a bad HMAC signature', 'a bad IAP assertion']) {
      const s = presented.get(label)!;
      expect({ label, www: s.headers['www-authenticate'] }).toEqual({
        label,
        www: `Bearer resource_metadata="${METADATA_URL}", error="invalid_token", error_description="${errorOf(s).message}"`,
      });
    }
    expect(errorOf(presented.get('a bearer token with a non-ASCII byte')!).message).toBe(
      'the bearer token is malformed (RFC 6750 allows letters, digits and -._~+/ then = padding)',
    );
  });

  it('names no error for a credential of a kind the gateway does not take (RFC 6750: an unsupported method)', async () => {
    const cases: Array<[string, Sent]> = [
      ['an IAP assertion without IAP', await send(mem, { headers: { 'x-goog-iap-jwt-assertion': 'garbage' }, label: 'www-no-iap' })],
      ['HMAC headers without HMAC', await hmacSend(ttl, { label: 'www-no-hmac' })],
    ];
    for (const [label, s] of cases) {
      expect({ label, status: s.status, presented: s.presentedCredential }).toEqual({ label, status: 401, presented: false });
      expect(String(s.headers['www-authenticate'])).toMatch(/^Bearer resource_metadata="[^"]+"$/);
      await expectOneAudit(label.includes('IAP') ? mem : ttl, s.id, { status: 401, failure: 'auth' });
      expect(s.upstream).toBe(0);
    }
  });

  it('for a public URL with a path, puts the well-known path between host and path (RFC 9728 §3.1) and serves it there', async () => {
    const s = await send(ttl, { label: 'www-path' });
    expect(s.status).toBe(401);
    expectChallenge(s, 'https://gw.example.com/.well-known/oauth-protected-resource/keygate');
    await expectOneAudit(ttl, s.id, { status: 401, failure: 'auth' });
    // At that path (a balancer passing it on unchanged) and at the bare one (a balancer stripping /keygate).
    for (const target of ['/.well-known/oauth-protected-resource/keygate', '/.well-known/oauth-protected-resource']) {
      const metadata = await send(ttl, { method: 'GET', target, body: null, noCount: true });
      expect({ target, status: metadata.status }).toEqual({ target, status: 200 });
      expect(metadata.json).toMatchObject({
        resource: 'https://gw.example.com/keygate',
        resource_documentation: 'https://gw.example.com/keygate/docs',
      });
    }
    // Another path names another resource, which keygate is not.
    for (const target of ['/.well-known/oauth-protected-resource/other', '/.well-known/oauth-protected-resource/keygate/x'])
      expect((await send(ttl, { method: 'GET', target, body: null, noCount: true })).status).toBe(404);
    expect(
      (await send(mem, { method: 'GET', target: '/.well-known/oauth-protected-resource/keygate', body: null, noCount: true })).status,
    ).toBe(404);
  });

  it('the metadata URL of a 401 serves the metadata (gateway without a configured public URL)', async () => {
    const s = await send(mem, { label: 'www-follow' });
    await expect401(mem, s);
    const url = /resource_metadata="([^"]+)"/.exec(String(s.headers['www-authenticate']))?.[1];
    expect(url).toBe(`${mem.url}/.well-known/oauth-protected-resource`);
    const res = await fetch(url!, { signal: AbortSignal.timeout(5_000) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { resource: string }).resource).toBe(mem.url);
  });
});

// ---------------------------------------------------------------------------------------------
// completeness and hygiene (last: they look at everything the file did)
// ---------------------------------------------------------------------------------------------

describe('audit trail and logs', () => {
  it('kept every gateway and the mock running through the whole file', () => {
    for (const p of [gw.proc, jw.proc, cold.proc, mem.proc, down.proc, ttl.proc, mock.proc])
      expect({ name: p.name, exit: p.exitInfo }).toEqual({ name: p.name, exit: null });
  });

  it('wrote exactly one audit line per /v1 and /chat request on every gateway', async () => {
    await sleep(200);
    for (const [g, ids] of sent) {
      const audits = g.audits();
      const problems = ids.filter((id) => audits.filter((a) => a.requestId === id).length !== 1);
      expect({ gateway: g.port, problems }).toEqual({ gateway: g.port, problems: [] });
    }
  });

  it('never logged a credential: tokens, assertions, signatures or HMAC secrets', () => {
    const everything = [gw, jw, cold, mem, down, ttl].flatMap((g) => g.proc.lines.map((l) => l.raw));
    const leaks = (needle: string): string[] => everything.filter((line) => line.includes(needle));
    expect(leaks(CLIENT_SECRET)).toEqual([]);
    expect(leaks(OTHER_SECRET)).toEqual([]);
    expect(leaks(COLD_JWKS_QUERY_KEY)).toEqual([]);
    expect(mintedTokens.length).toBeGreaterThan(50);
    for (const token of mintedTokens) {
      const signature = token.split('.')[2] ?? '';
      if (token.length < 8_192) expect(leaks(token)).toEqual([]);
      if (signature.length >= 20) expect(leaks(signature)).toEqual([]);
    }
    expect(everything.filter((line) => /eyJ[\w-]{10,}\.eyJ/.test(line))).toEqual([]);
    expect(everything.filter((line) => /[0-9a-f]{64}/.test(line) && /signature/i.test(line))).toEqual([]);
  });

  it('printed only JSON lines on stdout and nothing on stderr', () => {
    for (const g of [gw, jw, cold, mem, down, ttl]) {
      const stdout = g.proc.lines.filter((l) => l.stream === 'stdout');
      expect(stdout.filter((l) => l.json === null).map((l) => l.raw)).toEqual([]);
      expect(g.proc.lines.filter((l) => l.stream === 'stderr').map((l) => l.raw)).toEqual([]);
    }
  });
});
