import { getHeapStatistics } from 'node:v8';
import { getMetadataStorage } from 'class-validator';
import { ConfigError } from './config.error';
import { EnvironmentSchema, urlListProblem, urlProblem, type UrlProblem } from './env.schema';
import type { GatewayConfig, LogLevel } from './gateway-config';
import { loadPolicyFile } from './policy.loader';
import type { PolicyBook } from './policy.types';
import { validatePlain } from './validation.util';

const GOOGLE_IAP_JWKS_URL = 'https://www.gstatic.com/iap/verify/public_key-jwk';

/**
 * Parses and validates the environment once. Throws {@link ConfigError} naming every bad variable;
 * never includes a value in the message.
 */
export function loadGatewayConfig(env: NodeJS.ProcessEnv): GatewayConfig {
  const known = Object.fromEntries(Object.entries(env).filter(([k, v]) => v !== undefined && v !== '' && k in KNOWN_KEYS));
  const { value: e, problems } = validatePlain(EnvironmentSchema, known, '');
  // A misspelt variable would silently leave its feature off (Redis, the policy file): refused.
  // Kubernetes' service links for a Service named api-key-server are not keygate's, and pass.
  const unknown = (k: string): boolean => k.startsWith('API_KEY_SERVER_') && !(k in KNOWN_KEYS) && !K8S_SERVICE_LINK.test(k);
  for (const name of Object.keys(env).filter(unknown).sort()) {
    problems.push(`${name}: unknown variable (a typo? the README lists every API_KEY_SERVER_ variable)`);
  }
  problems.push(...urlSettingProblems(e));
  const useSecretManager = /^(true|1)$/i.test(e.USE_SECRET_MANAGER ?? '');
  const issuers = list(e.API_KEY_SERVER_JWT_ISSUER);
  // With Secret Manager, JWT is on when an issuer is configured (its keys are then read from the
  // jwt-public-keys secret); an HMAC- or IAP-only deployment leaves the issuer out and needs no
  // JWT key secret.
  const jwtOn = Boolean(e.API_KEY_SERVER_JWT_PUBLIC_KEYS || e.API_KEY_SERVER_JWKS_URLS || (useSecretManager && issuers.length > 0));
  if (jwtOn && issuers.length === 0) problems.push('API_KEY_SERVER_JWT_ISSUER: required when JWT authentication is on');
  const audience = jwtAudience(e.API_KEY_SERVER_JWT_AUDIENCE, problems);
  const iapAudience = trimmedAudience('API_KEY_SERVER_IAP_AUDIENCE', e.API_KEY_SERVER_IAP_AUDIENCE, problems);
  const requiredClaims = parseRequiredClaims(e.API_KEY_SERVER_JWT_REQUIRED_CLAIMS, problems);
  if (useSecretManager && !e.GOOGLE_CLOUD_PROJECT) problems.push('GOOGLE_CLOUD_PROJECT: required when USE_SECRET_MANAGER=true');
  if (!useSecretManager && !e.API_KEY_SERVER_PRODUCT_KEYS) {
    problems.push('API_KEY_SERVER_PRODUCT_KEYS: required (or set USE_SECRET_MANAGER=true)');
  }
  // With Secret Manager and no issuer, the HMAC clients come from the hmac-secrets secret.
  if (!jwtOn && !e.API_KEY_SERVER_HMAC_SECRETS && !iapAudience && !useSecretManager) {
    problems.push(
      'no credential method configured: set API_KEY_SERVER_JWT_PUBLIC_KEYS, API_KEY_SERVER_JWKS_URLS, API_KEY_SERVER_HMAC_SECRETS or API_KEY_SERVER_IAP_AUDIENCE',
    );
  }
  // A setting whose feature is off is not an error (one base manifest serves several overlays), but
  // it is said: a JWT issuer with no key source leaves JWT off, and a valid token then gets 401.
  const warnings: string[] = [];
  const unused = (names: ReadonlyArray<keyof EnvironmentSchema>, because: string): void => {
    for (const name of names) if (e[name] !== undefined) warnings.push(`${name} is set but ${because}: it has no effect`);
  };
  if (!jwtOn)
    unused(
      [
        'API_KEY_SERVER_JWT_ISSUER',
        'API_KEY_SERVER_JWT_AUDIENCE',
        'API_KEY_SERVER_JWT_AUDIENCE_CLAIM',
        'API_KEY_SERVER_JWT_MAX_TTL_SECONDS',
        'API_KEY_SERVER_JWT_REQUIRED_CLAIMS',
        'API_KEY_SERVER_JWKS_CACHE_SECONDS',
        'API_KEY_SERVER_JWKS_COOLDOWN_SECONDS',
        'API_KEY_SERVER_JWKS_TIMEOUT_MS',
      ],
      'JWT authentication is off (no API_KEY_SERVER_JWT_PUBLIC_KEYS or API_KEY_SERVER_JWKS_URLS)',
    );
  if (!iapAudience) unused(['API_KEY_SERVER_IAP_JWKS_URL'], 'IAP is off (no API_KEY_SERVER_IAP_AUDIENCE)');
  if (!useSecretManager)
    unused(
      [
        // Not GOOGLE_CLOUD_PROJECT (the logger's trace project too), nor the refresh period (the base
        // manifest sets it for every overlay, External Secrets ones included).
        'API_KEY_SERVER_SECRET_PRODUCT_KEYS_NAME',
        'API_KEY_SERVER_SECRET_JWT_PUBLIC_KEYS_NAME',
        'API_KEY_SERVER_SECRET_HMAC_SECRETS_NAME',
        'API_KEY_SERVER_SECRET_PRODUCT_KEYS_VERSION',
        'API_KEY_SERVER_SECRET_JWT_PUBLIC_KEYS_VERSION',
        'API_KEY_SERVER_SECRET_HMAC_SECRETS_VERSION',
        'API_KEY_SERVER_SECRET_MANAGER_ENDPOINT',
      ],
      'Secret Manager is off (USE_SECRET_MANAGER is not true)',
    );
  const port = int(e.PORT, 8080);
  const maxTtl = int(e.API_KEY_SERVER_JWT_MAX_TTL_SECONDS, 900);
  const upstream = {
    connectMs: int(e.API_KEY_SERVER_UPSTREAM_CONNECT_TIMEOUT_MS, 5_000),
    ttfbMs: int(e.API_KEY_SERVER_UPSTREAM_TTFB_TIMEOUT_MS, 60_000),
    idleMs: int(e.API_KEY_SERVER_UPSTREAM_IDLE_TIMEOUT_MS, 60_000),
    totalMs: int(e.API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS, 600_000),
  };
  // Settings that work but cannot mean what was set: said, so an operator sees the slip.
  if (upstream.connectMs >= upstream.totalMs || upstream.ttfbMs >= upstream.totalMs)
    warnings.push(
      `API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS (${upstream.totalMs}) is not above the connect (${upstream.connectMs}) or first-byte ` +
        `(${upstream.ttfbMs}) timeout: the total timeout ends an attempt first`,
    );
  const retryBaseMs = int(e.API_KEY_SERVER_UPSTREAM_RETRY_BASE_MS, 250);
  const retryMaxMs = int(e.API_KEY_SERVER_UPSTREAM_RETRY_MAX_MS, 5_000);
  if (retryBaseMs > retryMaxMs)
    warnings.push(
      `API_KEY_SERVER_UPSTREAM_RETRY_BASE_MS (${retryBaseMs}) is above API_KEY_SERVER_UPSTREAM_RETRY_MAX_MS (${retryMaxMs}): every retry's wait is drawn up to the maximum, from the first`,
    );
  const corsOrigins: string[] = [];
  for (const origin of list(e.API_KEY_SERVER_CORS_ORIGINS)) {
    const exact = exactOrigin(origin);
    if (exact === undefined)
      problems.push(
        'API_KEY_SERVER_CORS_ORIGINS: each entry must be an exact origin such as https://app.example.com (no wildcard, path or query)',
      );
    else corsOrigins.push(exact);
  }
  for (const [name, [min, max]] of Object.entries(NUMBER_RANGES)) {
    const value = (e as Record<string, string | undefined>)[name];
    if (value === undefined || !/^\d+$/.test(value)) continue; // absent, or already reported by the schema
    const n = Number(value);
    if (n < min || n > max) problems.push(`${name}: must be between ${min} and ${max}`);
  }
  if (e.API_KEY_SERVER_REDIS_URL && !parsesAsUrl(e.API_KEY_SERVER_REDIS_URL)) {
    problems.push('API_KEY_SERVER_REDIS_URL: is not a valid URL');
  } else if (e.API_KEY_SERVER_REDIS_URL) {
    const problem = redisDbProblem(e.API_KEY_SERVER_REDIS_URL);
    if (problem) problems.push(`API_KEY_SERVER_REDIS_URL: ${problem}`);
  }
  const endpointPort = /:(\d+)$/.exec(e.API_KEY_SERVER_SECRET_MANAGER_ENDPOINT ?? '')?.[1];
  if (endpointPort !== undefined && (Number(endpointPort) < 1 || Number(endpointPort) > 65535)) {
    problems.push('API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: the port must be between 1 and 65535');
  }
  const authorizationServers = e.API_KEY_SERVER_AUTHORIZATION_SERVERS
    ? list(e.API_KEY_SERVER_AUTHORIZATION_SERVERS)
    : issuers.filter((i) => /^https:\/\//.test(i));
  // The policy file is read even when a variable is wrong, so one boot names every problem of both.
  let policy: PolicyBook | undefined;
  let policyProblem: string | undefined;
  try {
    policy = loadPolicyFile(e.API_KEY_SERVER_POLICY_FILE);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    policyProblem = error.message;
  }
  // A stream is one upstream request: the total timeout would cut it first, as an upstream failure.
  // Checked with the other variables (not after them), so one boot names every fix to make; a value
  // already refused (not digits, out of range) is not reported twice.
  const totalTimeoutRefused = problems.some((problem) => problem.startsWith('API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS:'));
  if (policy !== undefined && !totalTimeoutRefused && policy.longestStreamSeconds * 1000 > upstream.totalMs)
    problems.push(
      `API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS (${upstream.totalMs}) is shorter than the policy's longest max_stream_seconds ` +
        `(${policy.longestStreamSeconds} s): streams would be cut by the upstream timeout; raise the timeout or lower max_stream_seconds`,
    );
  if (problems.length || policy === undefined) {
    const env = problems.length ? `Invalid environment variables:\n  - ${[...new Set(problems)].join('\n  - ')}` : undefined;
    throw new ConfigError([env, policyProblem].filter((part) => part !== undefined).join('\n'));
  }

  return {
    port,
    listenAddress: e.API_KEY_SERVER_LISTEN_ADDRESS ?? '0.0.0.0',
    logLevel: (e.LOG_LEVEL ?? 'info') as LogLevel,
    jwt: jwtOn
      ? {
          issuers,
          audience,
          audienceClaim: e.API_KEY_SERVER_JWT_AUDIENCE_CLAIM ?? 'aud',
          maxTtlSeconds: maxTtl,
          jwksUrls: list(e.API_KEY_SERVER_JWKS_URLS),
          clockSkewSeconds: 60,
          jwks: {
            timeoutMs: int(e.API_KEY_SERVER_JWKS_TIMEOUT_MS, 3_000),
            ttlMs: int(e.API_KEY_SERVER_JWKS_CACHE_SECONDS, 600) * 1000,
            cooldownMs: int(e.API_KEY_SERVER_JWKS_COOLDOWN_SECONDS, 30) * 1000,
          },
          requiredClaims,
        }
      : undefined,
    iap: iapAudience ? { audience: iapAudience, jwksUrl: e.API_KEY_SERVER_IAP_JWKS_URL ?? GOOGLE_IAP_JWKS_URL } : undefined,
    redisUrl: e.API_KEY_SERVER_REDIS_URL,
    secretEnv: {
      productKeys: e.API_KEY_SERVER_PRODUCT_KEYS,
      jwtPublicKeys: e.API_KEY_SERVER_JWT_PUBLIC_KEYS,
      hmacSecrets: e.API_KEY_SERVER_HMAC_SECRETS,
    },
    secretManager: {
      enabled: useSecretManager,
      project: e.GOOGLE_CLOUD_PROJECT,
      names: {
        productKeys: e.API_KEY_SERVER_SECRET_PRODUCT_KEYS_NAME ?? 'openai-api-keys',
        jwtPublicKeys: e.API_KEY_SERVER_SECRET_JWT_PUBLIC_KEYS_NAME ?? 'jwt-public-keys',
        hmacSecrets: e.API_KEY_SERVER_SECRET_HMAC_SECRETS_NAME ?? 'hmac-secrets',
      },
      versions: {
        productKeys: e.API_KEY_SERVER_SECRET_PRODUCT_KEYS_VERSION ?? 'latest',
        jwtPublicKeys: e.API_KEY_SERVER_SECRET_JWT_PUBLIC_KEYS_VERSION ?? 'latest',
        hmacSecrets: e.API_KEY_SERVER_SECRET_HMAC_SECRETS_VERSION ?? 'latest',
      },
      refreshSeconds: int(e.API_KEY_SERVER_SECRET_REFRESH_SECONDS, 60),
      endpoint: e.API_KEY_SERVER_SECRET_MANAGER_ENDPOINT,
    },
    upstream,
    retry: {
      maxRetries: int(e.API_KEY_SERVER_UPSTREAM_MAX_RETRIES, 2),
      baseDelayMs: retryBaseMs,
      maxDelayMs: retryMaxMs,
    },
    shutdownDrainSeconds: int(e.API_KEY_SERVER_SHUTDOWN_DRAIN_SECONDS, 45),
    sseKeepAliveSeconds: int(e.API_KEY_SERVER_SSE_KEEPALIVE_SECONDS, 15),
    requestTimeoutSeconds: int(e.API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS, 60),
    storedResponseDays: int(e.API_KEY_SERVER_STORED_RESPONSE_DAYS, 30),
    bufferedAnswerBytes:
      e.API_KEY_SERVER_BUFFERED_ANSWERS_MB === undefined
        ? defaultBufferedAnswerBytes()
        : int(e.API_KEY_SERVER_BUFFERED_ANSWERS_MB, 0) * MIB,
    corsOrigins,
    resource: { publicUrl: e.API_KEY_SERVER_PUBLIC_URL?.replace(/\/+$/, ''), authorizationServers },
    policy,
    warnings: [...warnings, ...policy.warnings],
  };
}

/** The variables Kubernetes injects for a Service named `api-key-server` (service links). */
const K8S_SERVICE_LINK = /^API_KEY_SERVER_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$/;

// Only the variables of SPEC §2 are handed to the validator; the rest of the environment is ignored.
const KNOWN_KEYS: Record<string, true> = Object.fromEntries(
  getMetadataStorage()
    .getTargetValidationMetadatas(EnvironmentSchema, '', true, false)
    .map((m) => [m.propertyName, true]),
);

/** A comma-separated list, each entry once (a JWKS URL listed twice would be fetched twice). */
function list(value: string | undefined): string[] {
  return [
    ...new Set(
      (value ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  ];
}

/** Node runs a timer set longer than this (about 24.8 days) after 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;
const MAX_TIMER_SECONDS = Math.floor(MAX_TIMER_MS / 1000);

/**
 * The range of each numeric variable (the schema has already checked it is digits): durations end
 * up in timers, so none may pass Node's timer limit, and a timeout, an interval or a cooldown of 0
 * would turn its protection off.
 */
const NUMBER_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  PORT: [1, 65_535],
  API_KEY_SERVER_UPSTREAM_MAX_RETRIES: [0, 10],
  API_KEY_SERVER_JWT_MAX_TTL_SECONDS: [1, MAX_TIMER_SECONDS],
  API_KEY_SERVER_JWKS_CACHE_SECONDS: [1, MAX_TIMER_SECONDS],
  API_KEY_SERVER_JWKS_COOLDOWN_SECONDS: [1, MAX_TIMER_SECONDS],
  API_KEY_SERVER_JWKS_TIMEOUT_MS: [1, MAX_TIMER_MS],
  // 0: never re-read (README).
  API_KEY_SERVER_SECRET_REFRESH_SECONDS: [0, MAX_TIMER_SECONDS],
  API_KEY_SERVER_UPSTREAM_CONNECT_TIMEOUT_MS: [1, MAX_TIMER_MS],
  API_KEY_SERVER_UPSTREAM_TTFB_TIMEOUT_MS: [1, MAX_TIMER_MS],
  API_KEY_SERVER_UPSTREAM_IDLE_TIMEOUT_MS: [1, MAX_TIMER_MS],
  API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS: [1, MAX_TIMER_MS],
  API_KEY_SERVER_UPSTREAM_RETRY_BASE_MS: [0, MAX_TIMER_MS],
  API_KEY_SERVER_UPSTREAM_RETRY_MAX_MS: [0, MAX_TIMER_MS],
  API_KEY_SERVER_SHUTDOWN_DRAIN_SECONDS: [0, MAX_TIMER_SECONDS],
  // 0: no keep-alive comments (README).
  API_KEY_SERVER_SSE_KEEPALIVE_SECONDS: [0, MAX_TIMER_SECONDS],
  API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: [1, MAX_TIMER_SECONDS],
  // OpenAI keeps a stored response 30 days; a record outliving that only costs Redis memory.
  API_KEY_SERVER_STORED_RESPONSE_DAYS: [1, 365],
  // 1 TiB: no heap is larger; under 1 MB, every answer above a few kilobytes would queue.
  API_KEY_SERVER_BUFFERED_ANSWERS_MB: [1, 1_048_576],
};

const MIB = 1024 * 1024;

/**
 * An eighth of the heap V8 may grow to (it sizes that from the container's memory limit: about
 * 38 MB under 512Mi), and never under 32 MB. An answer takes several times its size while it is
 * read, parsed, translated and written (a 40 MB embeddings answer raised the peak RSS by ~150 MB):
 * measured with eight such answers at once under a 256 MiB heap, a quarter peaked at ~500 MB, an
 * eighth at ~400 MB.
 */
function defaultBufferedAnswerBytes(): number {
  return Math.max(32 * MIB, Math.floor(getHeapStatistics().heap_size_limit / 8));
}

/**
 * An origin as browsers send it in `Origin` (lowercase scheme and host, no default port), or
 * undefined for anything that is not one exact http(s) origin: a wildcard, a path, a query, user
 * info. Compared byte for byte with the request's `Origin`, so `https://App.example.com:443` must
 * become `https://app.example.com` or it would never match.
 */
function exactOrigin(value: string): string | undefined {
  if (!/^https?:\/\/[^/\s?#*@]+$/i.test(value)) return undefined;
  try {
    const url = new URL(value);
    return url.origin === 'null' ? undefined : url.origin;
  } catch {
    return undefined;
  }
}

/**
 * The URL settings keygate fetches (JWKS) or publishes (RFC 9728 metadata), and what each must be
 * when it is not even a URL (the wording operators already know).
 */
const URL_SETTINGS = {
  API_KEY_SERVER_JWKS_URLS: { list: true, invalid: 'must be a comma-separated list of http(s) URLs' },
  API_KEY_SERVER_AUTHORIZATION_SERVERS: { list: true, invalid: 'must be a comma-separated list of http(s) URLs' },
  API_KEY_SERVER_IAP_JWKS_URL: { list: false, invalid: 'is not a valid http(s) URL' },
  API_KEY_SERVER_PUBLIC_URL: { list: false, invalid: 'is not a valid http(s) URL' },
} as const satisfies Partial<Record<keyof EnvironmentSchema, { list: boolean; invalid: string }>>;

/**
 * Said of a URL setting with `user:pass@`, never quoting it: a password there would reach the log
 * (fetch refuses such a URL with an error that quotes it) or the unauthenticated metadata route.
 */
const USER_INFO_PROBLEM =
  'must not contain a user name or password (user:password@ before the host): keygate logs and publishes its URLs, and fetch refuses credentials in one';

/** One problem per URL setting that is not a usable http(s) URL or that carries user info. */
function urlSettingProblems(e: EnvironmentSchema): string[] {
  const problems: string[] = [];
  for (const [name, rule] of Object.entries(URL_SETTINGS)) {
    const value = e[name as keyof typeof URL_SETTINGS];
    if (value === undefined) continue;
    const problem: UrlProblem | undefined = rule.list ? urlListProblem(value) : urlProblem(value);
    if (problem) problems.push(`${name}: ${problem === 'invalid' ? rule.invalid : USER_INFO_PROBLEM}`);
  }
  // An issuer need not be a URL, but an https one is published as a default authorization server.
  if (list(e.API_KEY_SERVER_JWT_ISSUER).some((issuer) => /^https?:\/\//i.test(issuer) && urlProblem(issuer) === 'user-info'))
    problems.push(`API_KEY_SERVER_JWT_ISSUER: ${USER_INFO_PROBLEM}`);
  return problems;
}

function parsesAsUrl(value: string): boolean {
  try {
    new URL(value);
    return true;
  } catch {
    return false;
  }
}

/**
 * What is wrong with the database a Redis URL selects, if anything. The index must be a whole
 * number: ioredis sends whatever it finds to SELECT (`/abc` as `NaN`), and Redis's refusal then
 * crashed the boot with a raw stack instead of naming the variable. Given both as the path and as
 * `db` (or as `db` twice), the values must agree: ioredis quietly takes the path's (of several
 * `db`, the last), so `/2?db=3` used database 2 whichever one the operator meant. A number past the
 * server's `databases` is only known by asking it; the Redis connection's WARNING says so.
 */
function redisDbProblem(value: string): string | undefined {
  const url = new URL(value);
  const given = url.searchParams.getAll('db').map((index) => ({ index, as: `db=${index}` }));
  if (url.pathname !== '' && url.pathname !== '/') given.unshift({ index: url.pathname.slice(1), as: url.pathname });
  // Redis reads an integer without leading zeros only: SELECT 02 is refused like SELECT abc.
  if (!given.every(({ index }) => /^(?:0|[1-9]\d*)$/.test(index)))
    return 'the database index (the path, as in /0, or the db parameter) must be a non-negative integer without leading zeros';
  if (new Set(given.map(({ index }) => index)).size > 1)
    return `the database index is given more than once with different values (${given.map(({ as }) => as).join(' and ')}): give it once, as the path (/2) or the db parameter (?db=2)`;
  return undefined;
}

/**
 * The audience a JWT must carry, trimmed as the issuers are: a newline or a space carried in from a
 * Secret or a manifest booted cleanly and then made every token a 401, its `aud` never equal.
 */
function jwtAudience(value: string | undefined, problems: string[]): string {
  if (value === undefined) return 'keygate';
  const audience = trimmedAudience('API_KEY_SERVER_JWT_AUDIENCE', value, problems) ?? '';
  // The issuers are a list; the audience is one value, which no token's `aud` would equal with a comma in it.
  if (audience.includes(','))
    problems.push('API_KEY_SERVER_JWT_AUDIENCE: one audience, not a list (a comma is not allowed: every token would be refused)');
  return audience;
}

/** An audience variable trimmed (the same newline trap for IAP's); blank after trimming is refused. */
function trimmedAudience(name: string, value: string | undefined, problems: string[]): string | undefined {
  if (value === undefined) return undefined;
  const audience = value.trim();
  if (audience === '')
    problems.push(`${name}: must not be blank${name === 'API_KEY_SERVER_JWT_AUDIENCE' ? ' (unset, it is keygate)' : ''}`);
  return audience;
}

/**
 * The `claim=value` rules of API_KEY_SERVER_JWT_REQUIRED_CLAIMS (the schema checked their shape). A
 * claim named twice is refused: a map keeps one value per claim, so `groups=a,groups=b` silently
 * required only `b`, as duplicate keys in the JSON secrets would.
 */
function parseRequiredClaims(value: string | undefined, problems: string[]): Record<string, string> {
  const claims = new Map<string, string>();
  for (const pair of list(value)) {
    const [claim, expected] = pair.split('=').map((s) => s.trim());
    if (claims.has(claim)) {
      problems.push(`API_KEY_SERVER_JWT_REQUIRED_CLAIMS: the claim ${claim} is listed twice: only one value can be required per claim`);
    }
    claims.set(claim, expected);
  }
  // fromEntries, not assignment: a claim named __proto__ stays an own key.
  return Object.fromEntries(claims);
}

function int(value: string | undefined, fallback: number): number {
  return value === undefined ? fallback : Number.parseInt(value, 10);
}
