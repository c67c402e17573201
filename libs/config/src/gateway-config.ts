import type { PolicyBook } from './policy.types';

/** Log levels accepted by `LOG_LEVEL`. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Upstream timeouts in milliseconds (SPEC §2). */
export interface UpstreamTimeouts {
  /** TCP/TLS connect. */
  connectMs: number;
  /** Request sent → response headers received. */
  ttfbMs: number;
  /** Longest gap between two body chunks. */
  idleMs: number;
  /** Whole request, streams included. */
  totalMs: number;
}

/** JWT verification settings (SPEC §5). */
export interface JwtSettings {
  /** Allowed `iss` values. */
  issuers: string[];
  /** The required audience. */
  audience: string;
  /**
   * The claim that must hold {@link audience}: `aud` (SPEC §2), or another top-level claim such as
   * Cognito's `client_id` (its access tokens carry no `aud`).
   */
  audienceClaim: string;
  /** Longest accepted token lifetime. */
  maxTtlSeconds: number;
  /** Remote JWKS endpoints. */
  jwksUrls: string[];
  /** Allowed clock skew. */
  clockSkewSeconds: number;
  /** Remote JWKS cache: fetch timeout, key lifetime, and the least time between two fetches. */
  jwks: { timeoutMs: number; ttlMs: number; cooldownMs: number };
  /** Claims that must have exactly these values (e.g. `token_use=access`); empty by default. */
  requiredClaims: Readonly<Record<string, string>>;
}

/**
 * Raw secret-bearing configuration taken from the environment. Only the secrets module reads it,
 * and nothing logs it.
 */
export interface SecretEnvironment {
  productKeys?: string;
  jwtPublicKeys?: string;
  hmacSecrets?: string;
}

/** Secret Manager settings (SPEC §2). */
export interface SecretManagerSettings {
  enabled: boolean;
  project?: string;
  names: { productKeys: string; jwtPublicKeys: string; hmacSecrets: string };
  /** The version each secret is read at: `latest` (default), a version number or a version alias. */
  versions: { productKeys: string; jwtPublicKeys: string; hmacSecrets: string };
  refreshSeconds: number;
  endpoint?: string;
}

/** The whole validated configuration; built once at boot by `loadGatewayConfig`. */
export interface GatewayConfig {
  /** Settings that have no effect as configured, logged as WARNING lines at boot. */
  warnings: string[];
  port: number;
  /** The address the HTTP server listens on: every interface unless set (a pod must be reachable). */
  listenAddress: string;
  logLevel: LogLevel;
  /** JWT verification; `undefined` when no JWT source is configured. */
  jwt?: JwtSettings;
  iap?: { audience: string; jwksUrl: string };
  redisUrl?: string;
  secretEnv: SecretEnvironment;
  secretManager: SecretManagerSettings;
  upstream: UpstreamTimeouts;
  /** Retries before the first byte reached the client: per model, then the policy's fallbacks. */
  retry: { maxRetries: number; baseDelayMs: number; maxDelayMs: number };
  shutdownDrainSeconds: number;
  /** An SSE comment goes to a streaming client after this much silence (0: never). */
  sseKeepAliveSeconds: number;
  /** How long a client may take to send a whole request, headers and body (slowloris protection). */
  requestTimeoutSeconds: number;
  /**
   * The most bytes of whole (not streamed) upstream answers read into memory at once, across
   * requests; past it, later answers wait for earlier ones (see AnswerBudget in libs/providers).
   */
  bufferedAnswerBytes: number;
  /** How long keygate remembers who created a stored Responses API response (to serve it to them alone). */
  storedResponseDays: number;
  corsOrigins: string[];
  /** RFC 9728 protected-resource metadata. */
  resource: {
    /** The gateway's public URL (the resource identifier); derived from each request when unset. */
    publicUrl?: string;
    /** Authorization servers to advertise; the JWT issuers that are URLs by default. */
    authorizationServers: string[];
  };
  policy: PolicyBook;
}

/** Injection token and type for {@link GatewayConfig}. */
export const GatewayConfig = Symbol('KEYGATE:GATEWAY_CONFIG');
