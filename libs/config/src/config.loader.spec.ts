import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { ConfigError } from './config.error';
import { loadGatewayConfig } from './config.loader';

/** The temporary directories the policy-file tests write to, removed after the suite. */
const policyDirs: string[] = [];
function policyDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kg-policy-'));
  policyDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of policyDirs) rmSync(dir, { recursive: true, force: true });
});

const SECRET = 'sk-should-never-be-printed-123';
const base = {
  API_KEY_SERVER_PRODUCT_KEYS: JSON.stringify({ demo: SECRET }),
  API_KEY_SERVER_JWT_PUBLIC_KEYS: '{}',
  API_KEY_SERVER_JWT_ISSUER: 'issuer-a, issuer-b',
};

function failure(env: NodeJS.ProcessEnv): string {
  try {
    loadGatewayConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('loadGatewayConfig', () => {
  it('reads LOG_LEVEL in any case, and still refuses a level it does not know', () => {
    expect(loadGatewayConfig({ ...base, LOG_LEVEL: 'WARN' }).logLevel).toBe('warn');
    expect(loadGatewayConfig({ ...base, LOG_LEVEL: ' Debug ' }).logLevel).toBe('debug');
    expect(() => loadGatewayConfig({ ...base, LOG_LEVEL: 'VERBOSE' })).toThrow(/LOG_LEVEL/);
  });

  it('takes each entry of a comma-separated list once (a JWKS URL listed twice is fetched once)', () => {
    const config = loadGatewayConfig({
      ...base,
      API_KEY_SERVER_JWT_ISSUER: 'issuer-a, issuer-b,issuer-a',
      API_KEY_SERVER_JWKS_URLS: 'https://idp.example/jwks, https://idp.example/jwks,https://other.example/jwks',
    });
    expect(config.jwt?.issuers).toEqual(['issuer-a', 'issuer-b']);
    expect(config.jwt?.jwksUrls).toEqual(['https://idp.example/jwks', 'https://other.example/jwks']);
  });

  it('applies the SPEC defaults', () => {
    const config = loadGatewayConfig(base);
    expect(config.port).toBe(8080);
    expect(config.logLevel).toBe('info');
    expect(config.jwt).toEqual({
      issuers: ['issuer-a', 'issuer-b'],
      audience: 'keygate',
      audienceClaim: 'aud',
      maxTtlSeconds: 900,
      jwksUrls: [],
      clockSkewSeconds: 60,
      jwks: { timeoutMs: 3000, ttlMs: 600_000, cooldownMs: 30_000 },
      requiredClaims: {},
    });
    expect(config.upstream).toEqual({ connectMs: 5000, ttfbMs: 60000, idleMs: 60000, totalMs: 600000 });
    expect(config.shutdownDrainSeconds).toBe(45);
    expect(config.sseKeepAliveSeconds).toBe(15);
    expect(config.listenAddress).toBe('0.0.0.0');
    expect(config.requestTimeoutSeconds).toBe(60);
    expect(config.retry).toEqual({ maxRetries: 2, baseDelayMs: 250, maxDelayMs: 5000 });
    expect(config.secretManager.names).toEqual({
      productKeys: 'openai-api-keys',
      jwtPublicKeys: 'jwt-public-keys',
      hmacSecrets: 'hmac-secrets',
    });
    expect(config.corsOrigins).toEqual([]);
    expect(config.policy.forProduct('demo').policy.maxTokens).toBe(4096);
  });

  it('reads every timeout and the port', () => {
    const config = loadGatewayConfig({
      ...base,
      PORT: '9000',
      API_KEY_SERVER_UPSTREAM_CONNECT_TIMEOUT_MS: '1',
      API_KEY_SERVER_UPSTREAM_TTFB_TIMEOUT_MS: '2',
      API_KEY_SERVER_UPSTREAM_IDLE_TIMEOUT_MS: '3',
      API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS: '300004',
    });
    expect(config.port).toBe(9000);
    expect(config.upstream).toEqual({ connectMs: 1, ttfbMs: 2, idleMs: 3, totalMs: 300_004 });
  });

  it('refuses an upstream total timeout shorter than the longest max_stream_seconds (300 s by default): it would cut streams first', () => {
    expect(failure({ ...base, API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS: '299999' })).toMatch(
      /API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS \(299999\) is shorter than the policy's longest max_stream_seconds \(300 s\)/,
    );
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS: '300000' }).upstream.totalMs).toBe(300_000);
  });

  it('names a total timeout shorter than the streams beside the other bad variables, in one error', () => {
    const message = failure({ ...base, PORT: 'abc', API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS: '1000' });
    expect(message).toMatch(/^Invalid environment variables:\n {2}- PORT: must be a port number/);
    expect(message).toContain('API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS (1000) is shorter than the policy');
    // A value already refused for itself is not reported a second time.
    const outOfRange = failure({ ...base, API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS: '0' });
    expect(outOfRange.match(/API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS/g)).toHaveLength(1);
  });

  it('refuses an API_KEY_SERVER_ variable it does not know (a typo would silently leave a feature off), naming it without its value', () => {
    const message = failure({
      ...base,
      API_KEY_SERVER_REDIS_ULR: 'rediss://user:secret@redis.example:6379',
      API_KEY_SERVER_POLICY_FLIE: '',
    });
    expect(message).toContain('API_KEY_SERVER_REDIS_ULR: unknown variable');
    expect(message).toContain('API_KEY_SERVER_POLICY_FLIE: unknown variable');
    expect(message).not.toContain('secret@');
  });

  it('lets through the variables Kubernetes injects for a Service named api-key-server', () => {
    const links = {
      API_KEY_SERVER_SERVICE_HOST: '10.0.0.7',
      API_KEY_SERVER_SERVICE_PORT: '80',
      API_KEY_SERVER_SERVICE_PORT_HTTP: '80',
      API_KEY_SERVER_PORT: 'tcp://10.0.0.7:80',
      API_KEY_SERVER_PORT_80_TCP: 'tcp://10.0.0.7:80',
      API_KEY_SERVER_PORT_80_TCP_PROTO: 'tcp',
      API_KEY_SERVER_PORT_80_TCP_PORT: '80',
      API_KEY_SERVER_PORT_80_TCP_ADDR: '10.0.0.7',
    };
    expect(() => loadGatewayConfig({ ...base, ...links })).not.toThrow();
    expect(failure({ ...base, ...links, API_KEY_SERVER_PORTS: '1' })).toContain('API_KEY_SERVER_PORTS: unknown variable');
  });

  it.each([
    ['API_KEY_SERVER_JWKS_URLS', 'https://idp.example:99999/jwks'],
    ['API_KEY_SERVER_JWKS_URLS', 'http://[bad'],
    ['API_KEY_SERVER_IAP_JWKS_URL', 'www.gstatic.com/iap/verify/public_key-jwk'],
    ['API_KEY_SERVER_IAP_JWKS_URL', 'notaurl'],
    ['API_KEY_SERVER_PUBLIC_URL', 'http://[bad'],
    ['API_KEY_SERVER_PUBLIC_URL', 'https://keygate.example:99999'],
    ['API_KEY_SERVER_AUTHORIZATION_SERVERS', 'https://idp.example, http://[bad'],
  ])('refuses %s=%s, a URL that could never be fetched (it used to pass, and fail only at use), in one line', (name, value) => {
    const message = failure({ ...base, API_KEY_SERVER_IAP_AUDIENCE: 'aud', [name]: value });
    expect(message.split('\n').filter((line) => line.includes(name))).toHaveLength(1);
  });

  it.each([
    ['API_KEY_SERVER_JWKS_URLS', 'http://user:hunter2pw@idp.example/jwks'],
    ['API_KEY_SERVER_JWKS_URLS', 'https://idp.example/jwks, https://:hunter2pw@other.example/jwks'],
    ['API_KEY_SERVER_JWKS_URLS', 'https://hunter2pw@idp.example/jwks'],
    ['API_KEY_SERVER_IAP_JWKS_URL', 'https://user:hunter2pw@keys.example/jwk'],
    ['API_KEY_SERVER_PUBLIC_URL', 'https://user:hunter2pw@keygate.example/base'],
    ['API_KEY_SERVER_AUTHORIZATION_SERVERS', 'https://user:hunter2pw@idp.example'],
  ])('refuses %s with user info (fetch would log the password, the metadata would publish it), never printing it', (name, value) => {
    const message = failure({ ...base, API_KEY_SERVER_IAP_AUDIENCE: 'aud', [name]: value });
    expect(message).toMatch(/^Invalid environment variables/);
    expect(message).toContain(`${name}: must not contain a user name or password`);
    expect(message).not.toContain('hunter2pw');
  });

  it('refuses an issuer URL with user info (it is published as an authorization server), not an issuer that is no URL', () => {
    const message = failure({ ...base, API_KEY_SERVER_JWT_ISSUER: 'issuer-a, https://user:hunter2pw@idp.example' });
    expect(message).toContain('API_KEY_SERVER_JWT_ISSUER: must not contain a user name or password');
    expect(message).not.toContain('hunter2pw');
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_JWT_ISSUER: 'team@example.com' }).jwt?.issuers).toEqual(['team@example.com']);
  });

  it('takes an @ in a URL path or query as no user info', () => {
    const config = loadGatewayConfig({
      ...base,
      API_KEY_SERVER_JWKS_URLS: 'https://idp.example/keys/team@example.com',
      API_KEY_SERVER_PUBLIC_URL: 'https://keygate.example/@team',
    });
    expect(config.jwt?.jwksUrls).toEqual(['https://idp.example/keys/team@example.com']);
    expect(config.resource.publicUrl).toBe('https://keygate.example/@team');
  });

  it('says which settings have no effect as configured (their feature is off), without refusing them', () => {
    const hmacOnly = { API_KEY_SERVER_PRODUCT_KEYS: base.API_KEY_SERVER_PRODUCT_KEYS, API_KEY_SERVER_HMAC_SECRETS: '{}' };
    const config = loadGatewayConfig({
      ...hmacOnly,
      API_KEY_SERVER_JWT_ISSUER: 'issuer-a',
      API_KEY_SERVER_IAP_JWKS_URL: 'https://keys.example/jwk',
      API_KEY_SERVER_SECRET_PRODUCT_KEYS_NAME: 'keys',
    });
    expect(config.jwt).toBeUndefined();
    expect(config.warnings).toEqual([
      expect.stringMatching(/^API_KEY_SERVER_JWT_ISSUER is set but JWT authentication is off .*: it has no effect$/),
      expect.stringMatching(/^API_KEY_SERVER_IAP_JWKS_URL is set but IAP is off/),
      expect.stringMatching(/^API_KEY_SERVER_SECRET_PRODUCT_KEYS_NAME is set but Secret Manager is off/),
    ]);
    expect(loadGatewayConfig(base).warnings).toEqual([]);
  });

  it('says timeouts and retry delays that cannot mean what was set, without refusing them', () => {
    expect(
      loadGatewayConfig({ ...base, API_KEY_SERVER_UPSTREAM_TTFB_TIMEOUT_MS: '900000', API_KEY_SERVER_UPSTREAM_RETRY_BASE_MS: '9000' })
        .warnings,
    ).toEqual([
      expect.stringMatching(
        /^API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS \(600000\) is not above the connect \(5000\) or first-byte \(900000\)/,
      ),
      "API_KEY_SERVER_UPSTREAM_RETRY_BASE_MS (9000) is above API_KEY_SERVER_UPSTREAM_RETRY_MAX_MS (5000): every retry's wait is drawn up to the maximum, from the first",
    ]);
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_UPSTREAM_CONNECT_TIMEOUT_MS: '600000' }).warnings).toHaveLength(1);
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_UPSTREAM_RETRY_BASE_MS: '5000' }).warnings).toEqual([]);
  });

  it('takes API_KEY_SERVER_SECRET_REFRESH_SECONDS=0 as "never re-read", as the README says', () => {
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_SECRET_REFRESH_SECONDS: '0' }).secretManager.refreshSeconds).toBe(0);
  });

  it('keeps CORS origins as browsers send them (lowercase, no default port), and refuses wildcards, paths and user info', () => {
    expect(
      loadGatewayConfig({
        ...base,
        API_KEY_SERVER_CORS_ORIGINS: 'https://App.Example.com:443, http://localhost:3000,HTTP://Intra.example:80',
      }).corsOrigins,
    ).toEqual(['https://app.example.com', 'http://localhost:3000', 'http://intra.example']);
    for (const bad of [
      'https://*.example.com',
      'https://app.example.com/',
      'https://u@app.example.com',
      'https://app.example.com?x',
      'ftp://a.example',
    ])
      expect(failure({ ...base, API_KEY_SERVER_CORS_ORIGINS: bad })).toContain('API_KEY_SERVER_CORS_ORIGINS');
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ LOG_LEVEL: 'chatty' }, 'LOG_LEVEL'],
    [{ API_KEY_SERVER_UPSTREAM_TTFB_TIMEOUT_MS: '10s' }, 'API_KEY_SERVER_UPSTREAM_TTFB_TIMEOUT_MS'],
    [{ API_KEY_SERVER_REDIS_URL: 'localhost:6379' }, 'API_KEY_SERVER_REDIS_URL'],
    [{ API_KEY_SERVER_JWKS_URLS: 'https://a.example/jwks, not a url' }, 'API_KEY_SERVER_JWKS_URLS'],
    [{ API_KEY_SERVER_JWT_ISSUER: '' }, 'API_KEY_SERVER_JWT_ISSUER'],
    [{ API_KEY_SERVER_CORS_ORIGINS: 'https://ok.example,*' }, 'API_KEY_SERVER_CORS_ORIGINS'],
    [{ USE_SECRET_MANAGER: 'yes' }, 'USE_SECRET_MANAGER'],
    [{ API_KEY_SERVER_UPSTREAM_MAX_RETRIES: '11' }, 'API_KEY_SERVER_UPSTREAM_MAX_RETRIES'],
  ])('rejects %j naming %s', (override, variable) => {
    const message = failure({ ...base, ...override });
    expect(message).toMatch(/^Invalid environment variables/);
    expect(message).toContain(variable);
    expect(message).not.toContain(SECRET);
  });

  it('reads the claim that holds the audience, and refuses a name that is not a claim or is one with another meaning', () => {
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_JWT_AUDIENCE_CLAIM: 'client_id' }).jwt?.audienceClaim).toBe('client_id');
    for (const name of ['sub', 'iss', 'product', 'client id', '1st', '__proto__', 'constructor'])
      expect(failure({ ...base, API_KEY_SERVER_JWT_AUDIENCE_CLAIM: name })).toContain(
        'API_KEY_SERVER_JWT_AUDIENCE_CLAIM: must be the name of the claim that holds the audience',
      );
  });

  it('reads the required-claims rule', () => {
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_JWT_REQUIRED_CLAIMS: 'token_use=access, tier = gold' }).jwt?.requiredClaims).toEqual(
      { token_use: 'access', tier: 'gold' },
    );
    expect(failure({ ...base, API_KEY_SERVER_JWT_REQUIRED_CLAIMS: 'token_use' })).toContain('API_KEY_SERVER_JWT_REQUIRED_CLAIMS');
  });

  it('refuses a claim required twice (only the last value was kept), naming the variable and the claim', () => {
    const message = failure({ ...base, API_KEY_SERVER_JWT_REQUIRED_CLAIMS: 'groups=keygate-users, token_use=access,groups = team-a' });
    expect(message).toMatch(/^Invalid environment variables/);
    expect(message).toContain('API_KEY_SERVER_JWT_REQUIRED_CLAIMS: the claim groups is listed twice');
    expect(message).not.toContain('team-a');
    expect(
      loadGatewayConfig({ ...base, API_KEY_SERVER_JWT_REQUIRED_CLAIMS: 'groups=a, realm_access.groups=a' }).jwt?.requiredClaims,
    ).toEqual({
      groups: 'a',
      'realm_access.groups': 'a',
    });
  });

  it('trims the JWT audience as it trims the issuers, and refuses one that is blank', () => {
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_JWT_AUDIENCE: 'keygate\n' }).jwt?.audience).toBe('keygate');
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_JWT_AUDIENCE: ' api://keygate ' }).jwt?.audience).toBe('api://keygate');
    for (const blank of [' ', '\n', ' \t '])
      expect(failure({ ...base, API_KEY_SERVER_JWT_AUDIENCE: blank })).toContain('API_KEY_SERVER_JWT_AUDIENCE: must not be blank');
  });

  it('refuses a list of audiences, written as the issuers are: one audience, which no token would equal with a comma in it', () => {
    expect(failure({ ...base, API_KEY_SERVER_JWT_AUDIENCE: 'keygate,keygate-dev' })).toContain(
      'API_KEY_SERVER_JWT_AUDIENCE: one audience, not a list',
    );
  });

  it('takes a key URL whose scheme is written in capitals (schemes are case-insensitive)', () => {
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_JWKS_URLS: 'HTTPS://idp.example/jwks' }).jwt?.jwksUrls).toEqual([
      'HTTPS://idp.example/jwks',
    ]);
  });

  it('trims the IAP audience the same way, and refuses one that is blank', () => {
    const audience = '/projects/123/global/backendServices/456';
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_IAP_AUDIENCE: `${audience}\n` }).iap?.audience).toBe(audience);
    expect(failure({ ...base, API_KEY_SERVER_IAP_AUDIENCE: ' \n' })).toContain('API_KEY_SERVER_IAP_AUDIENCE: must not be blank');
  });

  it('requires product keys unless Secret Manager is on', () => {
    expect(failure({ API_KEY_SERVER_JWT_PUBLIC_KEYS: '{}', API_KEY_SERVER_JWT_ISSUER: 'i' })).toContain('API_KEY_SERVER_PRODUCT_KEYS');
  });

  it('turns JWT on with Secret Manager only when an issuer is configured (an HMAC- or IAP-only deployment needs no JWT key secret)', () => {
    const sm = { USE_SECRET_MANAGER: 'true', GOOGLE_CLOUD_PROJECT: 'p' };
    expect(loadGatewayConfig(sm).jwt).toBeUndefined();
    expect(loadGatewayConfig({ ...sm, API_KEY_SERVER_IAP_AUDIENCE: '/projects/1/global/backendServices/2' }).jwt).toBeUndefined();
    expect(loadGatewayConfig({ ...sm, API_KEY_SERVER_JWT_ISSUER: 'https://idp.example.com' }).jwt?.issuers).toEqual([
      'https://idp.example.com',
    ]);
    // Without Secret Manager, JWT keys still need their issuer.
    expect(failure({ API_KEY_SERVER_PRODUCT_KEYS: '{}', API_KEY_SERVER_JWT_PUBLIC_KEYS: '{}' })).toContain('API_KEY_SERVER_JWT_ISSUER');
  });

  it('requires a project when Secret Manager is on', () => {
    expect(failure({ ...base, USE_SECRET_MANAGER: 'true' })).toContain('GOOGLE_CLOUD_PROJECT');
  });

  it('names a Secret Manager secret id or project that cannot be one (a resource name pasted whole, a newline from a manifest)', () => {
    const sm = { ...base, USE_SECRET_MANAGER: 'true', GOOGLE_CLOUD_PROJECT: 'my-project' };
    expect(loadGatewayConfig({ ...sm, API_KEY_SERVER_SECRET_HMAC_SECRETS_NAME: 'hmac_Secrets-2' }).secretManager.names.hmacSecrets).toBe(
      'hmac_Secrets-2',
    );
    expect(loadGatewayConfig({ ...sm, GOOGLE_CLOUD_PROJECT: 'example.com:my-project' }).secretManager.project).toBe(
      'example.com:my-project',
    );
    for (const [name, value] of [
      ['API_KEY_SERVER_SECRET_PRODUCT_KEYS_NAME', 'projects/my-project/secrets/openai-api-keys'],
      ['API_KEY_SERVER_SECRET_JWT_PUBLIC_KEYS_NAME', 'jwt-public-keys\n'],
      ['API_KEY_SERVER_SECRET_HMAC_SECRETS_NAME', 'hmac secrets'],
      ['GOOGLE_CLOUD_PROJECT', 'my-project '],
      ['GOOGLE_CLOUD_PROJECT', 'projects/my-project'],
    ])
      expect(failure({ ...sm, [name]: value })).toMatch(new RegExp(`${name}: must be a (secret id|project id)`));
  });

  it('requires some credential method', () => {
    expect(failure({ API_KEY_SERVER_PRODUCT_KEYS: '{}' })).toContain('no credential method configured');
  });

  it('reports every problem at once', () => {
    const message = failure({ ...base, PORT: 'x', LOG_LEVEL: 'y' });
    expect(message).toContain('PORT');
    expect(message).toContain('LOG_LEVEL');
  });

  it.each([
    ['API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS', '9999999999'],
    ['API_KEY_SERVER_SECRET_REFRESH_SECONDS', '3000000'],
    ['API_KEY_SERVER_SHUTDOWN_DRAIN_SECONDS', '99999999'],
    ['API_KEY_SERVER_SSE_KEEPALIVE_SECONDS', '99999999'],
    ['API_KEY_SERVER_JWKS_TIMEOUT_MS', '3000000000'],
    ['API_KEY_SERVER_JWKS_TIMEOUT_MS', '0'],
    ['API_KEY_SERVER_JWKS_COOLDOWN_SECONDS', '0'],
    ['API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS', '0'],
    ['API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS', '99999999'],
  ])('refuses %s=%s: past Node’s timer limit a timer fires after 1 ms, and 0 turns a protection off', (name, value) => {
    expect(failure({ ...base, [name]: value })).toMatch(new RegExp(`${name}: must be between \\d+ and \\d+`));
  });

  it('accepts the largest values a timer can hold', () => {
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS: '2147483647' }).upstream.totalMs).toBe(2_147_483_647);
  });

  it('listens on the address given, an IP address only', () => {
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_LISTEN_ADDRESS: '127.0.0.1' }).listenAddress).toBe('127.0.0.1');
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_LISTEN_ADDRESS: '::1' }).listenAddress).toBe('::1');
    expect(failure({ ...base, API_KEY_SERVER_LISTEN_ADDRESS: 'localhost:8080' })).toContain(
      'API_KEY_SERVER_LISTEN_ADDRESS: must be an IP address',
    );
  });

  it('takes the SSE keep-alive period in seconds, 0 turning it off', () => {
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_SSE_KEEPALIVE_SECONDS: '5' }).sseKeepAliveSeconds).toBe(5);
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_SSE_KEEPALIVE_SECONDS: '0' }).sseKeepAliveSeconds).toBe(0);
    expect(failure({ ...base, API_KEY_SERVER_SSE_KEEPALIVE_SECONDS: 'soon' })).toContain('API_KEY_SERVER_SSE_KEEPALIVE_SECONDS');
  });

  it('takes how many days stored responses are remembered: 30 unless set, 1 to 365', () => {
    expect(loadGatewayConfig(base).storedResponseDays).toBe(30);
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_STORED_RESPONSE_DAYS: '7' }).storedResponseDays).toBe(7);
    for (const bad of ['0', '366', '1.5', 'week'])
      expect(failure({ ...base, API_KEY_SERVER_STORED_RESPONSE_DAYS: bad })).toContain('API_KEY_SERVER_STORED_RESPONSE_DAYS');
  });

  it('takes the budget for buffered answers in megabytes: an eighth of the heap limit, at least 32 MB, unless set', () => {
    const eighthHeap = Math.floor(getHeapStatistics().heap_size_limit / 8);
    expect(loadGatewayConfig(base).bufferedAnswerBytes).toBe(Math.max(32 * 1024 * 1024, eighthHeap));
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_BUFFERED_ANSWERS_MB: '200' }).bufferedAnswerBytes).toBe(200 * 1024 * 1024);
    for (const bad of ['0', '1048577', '1.5', 'lots'])
      expect(failure({ ...base, API_KEY_SERVER_BUFFERED_ANSWERS_MB: bad })).toContain('API_KEY_SERVER_BUFFERED_ANSWERS_MB');
  });

  it('takes the request timeout in seconds', () => {
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: '300' }).requestTimeoutSeconds).toBe(300);
    expect(failure({ ...base, API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: '1.5' })).toContain('API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS');
  });

  it.each([
    ['API_KEY_SERVER_REDIS_URL', 'redis://:pw@[bad', 'API_KEY_SERVER_REDIS_URL: is not a valid URL'],
    [
      'API_KEY_SERVER_SECRET_MANAGER_ENDPOINT',
      '127.0.0.1:99999999',
      'API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: the port must be between 1 and 65535',
    ],
  ])('names %s when its value cannot be used (%s)', (name, value, problem) => {
    const message = failure({ ...base, [name]: value });
    expect(message).toContain(problem);
    expect(message).not.toContain('pw@');
  });

  it.each([
    'redis://127.0.0.1:6379/abc',
    'redis://:hunter2pw@127.0.0.1:6379/abc',
    'redis://127.0.0.1:6379?db=abc',
    'rediss://:hunter2pw@redis.example:6380/0?db=x',
    'redis://127.0.0.1:6379/-1',
    'redis://127.0.0.1:6379/1.5',
    'redis://127.0.0.1:6379?db=',
    'redis://127.0.0.1:6379/02',
    'redis://127.0.0.1:6379?db=00',
  ])('refuses API_KEY_SERVER_REDIS_URL=%s: a database index that is not a whole number (Redis refused it with a raw stack)', (url) => {
    const message = failure({ ...base, API_KEY_SERVER_REDIS_URL: url });
    expect(message).toContain('API_KEY_SERVER_REDIS_URL: the database index');
    expect(message).not.toContain('hunter2pw');
  });

  it.each([
    ['redis://h:6379/2?db=3', '/2 and db=3'],
    ['rediss://:hunter2pw@redis.example:6380/0?db=1', '/0 and db=1'],
    ['redis://h:6379?db=1&db=2', 'db=1 and db=2'],
  ])(
    'refuses API_KEY_SERVER_REDIS_URL=%s: database indexes that disagree (ioredis silently took the path’s, or the last db)',
    (url, values) => {
      const message = failure({ ...base, API_KEY_SERVER_REDIS_URL: url });
      expect(message).toContain(`API_KEY_SERVER_REDIS_URL: the database index is given more than once with different values (${values})`);
      expect(message).not.toContain('hunter2pw');
    },
  );

  it.each([
    'redis://127.0.0.1:6379',
    'redis://127.0.0.1:6379/',
    'redis://:pw@127.0.0.1:6379/3',
    'rediss://redis.example:6380?db=15',
    'redis://h:6379/2?db=2',
    'redis://h:6379?db=4&db=4',
  ])('takes API_KEY_SERVER_REDIS_URL=%s (no database index, or a whole number, given once or the same each time)', (url) => {
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_REDIS_URL: url }).redisUrl).toBe(url);
  });

  it('ignores variables outside the contract', () => {
    expect(() => loadGatewayConfig({ ...base, HOME: '/root', SOMETHING_ELSE: 'x' })).not.toThrow();
  });

  it('loads the policy file it is pointed at', () => {
    const dir = policyDir();
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'products:\n  demo:\n    policy: {max_tokens: 64}\n');
    expect(loadGatewayConfig({ ...base, API_KEY_SERVER_POLICY_FILE: file }).policy.forProduct('demo').policy.maxTokens).toBe(64);
  });

  it.each([
    ['empty', ''],
    ['only a comment', '# policy to come\n'],
  ])('says a policy file that is %s leaves every product on the built-in defaults', (_what, text) => {
    const file = join(policyDir(), 'policy.yaml');
    writeFileSync(file, text);
    const config = loadGatewayConfig({ ...base, API_KEY_SERVER_POLICY_FILE: file });
    expect(config.warnings).toEqual([`API_KEY_SERVER_POLICY_FILE (${file}) is empty: every product gets the built-in defaults`]);
    expect(config.policy.forProduct('demo').policy.maxTokens).toBe(4096);
  });

  it('names the bad variables and the policy file’s problems in one error (one boot shows every fix to make)', () => {
    const dir = policyDir();
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'products:\n  demo:\n    policy: {max_tokenz: 64}\n');
    const message = failure({ ...base, PORT: 'abc', API_KEY_SERVER_POLICY_FILE: file });
    expect(message).toMatch(/^Invalid environment variables:\n {2}- PORT/);
    expect(message).toContain('max_tokenz');
    // A good environment still reports the policy file alone, as before.
    expect(failure({ ...base, API_KEY_SERVER_POLICY_FILE: file })).not.toContain('Invalid environment variables');
  });

  it('refuses a key written twice in the policy file, 123 and "123" included (one product name once read)', () => {
    const dir = policyDir();
    for (const [name, text] of [
      ['same.yaml', 'products:\n  demo: {}\n  demo: {limits: {requests_per_second: 1}}\n'],
      ['typed.yaml', 'products:\n  123: {}\n  "123": {limits: {requests_per_second: 1}}\n'],
    ]) {
      const file = join(dir, name);
      writeFileSync(file, text);
      expect(failure({ ...base, API_KEY_SERVER_POLICY_FILE: file })).toMatch(
        /API_KEY_SERVER_POLICY_FILE: .* is not valid YAML or JSON: Map keys must be unique/,
      );
    }
  });

  it('reads merge keys in the policy file, a key written beside one overriding the merged value', () => {
    const file = join(policyDir(), 'merge.yaml');
    writeFileSync(
      file,
      'defaults:\n  limits: &shared {requests_per_second: 5, daily_requests: 7}\nproducts:\n  demo:\n    limits:\n      <<: *shared\n      daily_requests: 9\n',
    );
    const limits = loadGatewayConfig({ ...base, API_KEY_SERVER_POLICY_FILE: file }).policy.forProduct('demo').limits;
    expect(limits).toMatchObject({ requestsPerSecond: 5, dailyRequests: 9 });
  });

  it.each([
    // A Map or a Set: every field under it was silently ignored.
    ['omap', 'products:\n  demo: !!omap\n    - limits: {requests_per_second: 1}\n'],
    ['set', 'defaults:\n  policy:\n    refused_fields: !!set {service_tier}\n'],
    // Tags the parser cannot resolve: a string, and a raw warning on stderr.
    ['js', "defaults:\n  limits:\n    requests_per_second: !!js/function 'function () {}'\n"],
    ['float', 'defaults:\n  limits:\n    requests_per_second: !!float 10\n'],
  ])('refuses a YAML tag keygate does not read (%s), naming the file', (name, text) => {
    const file = join(policyDir(), `${name}.yaml`);
    writeFileSync(file, text);
    expect(failure({ ...base, API_KEY_SERVER_POLICY_FILE: file })).toMatch(
      /^API_KEY_SERVER_POLICY_FILE: .* is not valid YAML or JSON: Unresolved tag: tag:yaml.org,2002:/,
    );
  });

  it('names an unreadable policy file', () => {
    expect(failure({ ...base, API_KEY_SERVER_POLICY_FILE: '/nonexistent/policy.yaml' })).toMatch(
      /API_KEY_SERVER_POLICY_FILE: cannot read .* \(ENOENT\)/,
    );
  });
});
