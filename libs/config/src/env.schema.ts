import { Transform } from 'class-transformer';
import { IsIn, IsIP, IsOptional, IsString, Matches } from 'class-validator';

const INT = /^\d+$/;
const BOOL = /^(true|false|1|0)$/i;
/** `latest`, a version number, or a version alias (letters, digits, `_`, `-`). */
const SECRET_VERSION = /^[A-Za-z0-9][\w-]{0,62}$/;
/**
 * A Secret Manager secret id, as Google allows it. keygate builds `projects/<project>/secrets/<id>/…`
 * from it: a resource name pasted whole (`projects/p/secrets/s`) or a trailing newline from a
 * manifest otherwise failed the boot as an INVALID_ARGUMENT or NOT_FOUND of the secret, without
 * naming the variable to fix.
 */
const SECRET_ID = /^[A-Za-z0-9_-]{1,255}$/;
const SECRET_ID_MESSAGE = 'must be a secret id (letters, digits, _ and -), not a resource name such as projects/…/secrets/…';
/** A project id (`my-project`, the legacy `example.com:my-project`) or number: the same resource-name trap. */
const PROJECT = /^[A-Za-z0-9][A-Za-z0-9.:-]*$/;
/** Why a URL setting is refused: it cannot be parsed as http(s), or it carries a user name or password. */
export type UrlProblem = 'invalid' | 'user-info';

/**
 * What is wrong with `value` as an http(s) URL that Node can fetch and keygate may log or publish,
 * or undefined when nothing is. A regex alone passed `http://[bad` and port 99999, which only
 * failed at the first fetch. User info (`user:pass@`) is refused apart: fetch refuses such a URL
 * and its error quotes the URL, password included, into the log, and the RFC 9728 metadata would
 * publish it to anyone.
 */
export function urlProblem(value: string): UrlProblem | undefined {
  // A scheme is case-insensitive (RFC 3986 §3.1): HTTPS:// is https://.
  if (!/^https?:\/\/[^\s,]+$/i.test(value)) return 'invalid';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'invalid';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'invalid';
  return url.username || url.password ? 'user-info' : undefined;
}

/** The worst problem of any entry of a comma-separated URL list: an invalid entry outranks user info. */
export function urlListProblem(value: string): UrlProblem | undefined {
  const problems = value.split(',').map((u) => urlProblem(u.trim()));
  return problems.find((p) => p === 'invalid') ?? problems.find((p) => p !== undefined);
}

/**
 * The environment of SPEC §2, as strings. Validated once at boot; only the loader turns it into
 * typed values. Secret-bearing variables are only checked for presence here: their content is
 * parsed by the secrets module, which never echoes it.
 */
export class EnvironmentSchema {
  @IsOptional() @Matches(INT, { message: 'must be a port number' }) PORT?: string;
  @IsOptional()
  @IsIP(undefined, { message: 'must be an IP address (0.0.0.0: every interface; 127.0.0.1: this machine only)' })
  API_KEY_SERVER_LISTEN_ADDRESS?: string;
  @IsOptional() @IsString() API_KEY_SERVER_PRODUCT_KEYS?: string;
  @IsOptional() @IsString() API_KEY_SERVER_JWT_PUBLIC_KEYS?: string;
  @IsOptional() @IsString() API_KEY_SERVER_JWKS_URLS?: string;
  @IsOptional() @IsString() API_KEY_SERVER_JWT_ISSUER?: string;
  @IsOptional() @IsString() API_KEY_SERVER_JWT_AUDIENCE?: string;
  @IsOptional()
  @Matches(/^(?!(?:iss|sub|exp|nbf|iat|jti|product|scope|__proto__|constructor|prototype)$)[A-Za-z_][\w.:-]{0,63}$/, {
    message: 'must be the name of the claim that holds the audience (`aud`, or `client_id` for Amazon Cognito access tokens)',
  })
  API_KEY_SERVER_JWT_AUDIENCE_CLAIM?: string;
  @IsOptional() @Matches(INT, { message: 'must be a whole number of seconds' }) API_KEY_SERVER_JWT_MAX_TTL_SECONDS?: string;
  @IsOptional() @Matches(INT, { message: 'must be a whole number of seconds' }) API_KEY_SERVER_JWKS_CACHE_SECONDS?: string;
  @IsOptional() @Matches(INT, { message: 'must be a whole number of seconds' }) API_KEY_SERVER_JWKS_COOLDOWN_SECONDS?: string;
  @IsOptional() @Matches(INT, { message: 'must be milliseconds' }) API_KEY_SERVER_JWKS_TIMEOUT_MS?: string;
  @IsOptional()
  @Matches(/^\s*[\w.:-]+\s*=\s*[^,=\s][^,=]*(,\s*[\w.:-]+\s*=\s*[^,=\s][^,=]*)*$/, {
    message: 'must be a comma-separated list of claim=value',
  })
  API_KEY_SERVER_JWT_REQUIRED_CLAIMS?: string;
  @IsOptional() @IsString() API_KEY_SERVER_HMAC_SECRETS?: string;
  @IsOptional() @IsString() API_KEY_SERVER_IAP_AUDIENCE?: string;
  // Checked with the other URL settings (urlSettingProblems): a second check here named the variable twice.
  @IsOptional() @IsString() API_KEY_SERVER_IAP_JWKS_URL?: string;
  @IsOptional() @IsString() API_KEY_SERVER_POLICY_FILE?: string;
  @IsOptional() @Matches(/^rediss?:\/\//, { message: 'must be a redis:// or rediss:// URL' }) API_KEY_SERVER_REDIS_URL?: string;
  @IsOptional() @Matches(BOOL, { message: 'must be true or false' }) USE_SECRET_MANAGER?: string;
  @IsOptional() @Matches(PROJECT, { message: 'must be a project id or number (no spaces or slashes)' }) GOOGLE_CLOUD_PROJECT?: string;
  @IsOptional() @Matches(SECRET_ID, { message: SECRET_ID_MESSAGE }) API_KEY_SERVER_SECRET_PRODUCT_KEYS_NAME?: string;
  @IsOptional() @Matches(SECRET_ID, { message: SECRET_ID_MESSAGE }) API_KEY_SERVER_SECRET_JWT_PUBLIC_KEYS_NAME?: string;
  @IsOptional() @Matches(SECRET_ID, { message: SECRET_ID_MESSAGE }) API_KEY_SERVER_SECRET_HMAC_SECRETS_NAME?: string;
  @IsOptional()
  @Matches(SECRET_VERSION, { message: 'must be latest, a version number or a version alias' })
  API_KEY_SERVER_SECRET_PRODUCT_KEYS_VERSION?: string;
  @IsOptional()
  @Matches(SECRET_VERSION, { message: 'must be latest, a version number or a version alias' })
  API_KEY_SERVER_SECRET_JWT_PUBLIC_KEYS_VERSION?: string;
  @IsOptional()
  @Matches(SECRET_VERSION, { message: 'must be latest, a version number or a version alias' })
  API_KEY_SERVER_SECRET_HMAC_SECRETS_VERSION?: string;
  @IsOptional() @Matches(INT, { message: 'must be a whole number of seconds' }) API_KEY_SERVER_SECRET_REFRESH_SECONDS?: string;
  @IsOptional() @Matches(/^[\w.-]+:\d+$/, { message: 'must be host:port' }) API_KEY_SERVER_SECRET_MANAGER_ENDPOINT?: string;
  @IsOptional() @Matches(INT, { message: 'must be milliseconds' }) API_KEY_SERVER_UPSTREAM_CONNECT_TIMEOUT_MS?: string;
  @IsOptional() @Matches(INT, { message: 'must be milliseconds' }) API_KEY_SERVER_UPSTREAM_TTFB_TIMEOUT_MS?: string;
  @IsOptional() @Matches(INT, { message: 'must be milliseconds' }) API_KEY_SERVER_UPSTREAM_IDLE_TIMEOUT_MS?: string;
  @IsOptional() @Matches(INT, { message: 'must be milliseconds' }) API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS?: string;
  @IsOptional() @Matches(INT, { message: 'must be a whole number' }) API_KEY_SERVER_UPSTREAM_MAX_RETRIES?: string;
  @IsOptional() @Matches(INT, { message: 'must be milliseconds' }) API_KEY_SERVER_UPSTREAM_RETRY_BASE_MS?: string;
  @IsOptional() @Matches(INT, { message: 'must be milliseconds' }) API_KEY_SERVER_UPSTREAM_RETRY_MAX_MS?: string;
  @IsOptional() @Matches(INT, { message: 'must be a whole number of seconds' }) API_KEY_SERVER_SHUTDOWN_DRAIN_SECONDS?: string;
  @IsOptional() @Matches(INT, { message: 'must be a whole number of seconds' }) API_KEY_SERVER_SSE_KEEPALIVE_SECONDS?: string;
  @IsOptional() @Matches(INT, { message: 'must be a whole number of seconds' }) API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS?: string;
  @IsOptional() @Matches(INT, { message: 'must be a whole number of days' }) API_KEY_SERVER_STORED_RESPONSE_DAYS?: string;
  @IsOptional() @Matches(INT, { message: 'must be a whole number of megabytes' }) API_KEY_SERVER_BUFFERED_ANSWERS_MB?: string;
  @IsOptional() @IsString() API_KEY_SERVER_CORS_ORIGINS?: string;
  @IsOptional()
  @Matches(/^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/, { message: 'must be an http(s) URL without query or fragment' })
  API_KEY_SERVER_PUBLIC_URL?: string;
  @IsOptional() @IsString() API_KEY_SERVER_AUTHORIZATION_SERVERS?: string;
  /** In any case (`INFO`, as operators often write it), read as lower case. */
  @IsOptional()
  @Transform(({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim().toLowerCase() : value))
  @IsIn(['debug', 'info', 'warn', 'error'])
  LOG_LEVEL?: string;
}
