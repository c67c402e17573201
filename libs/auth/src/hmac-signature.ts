import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** How far `X-Timestamp` may be from the gateway's clock, either way (SPEC §5). */
export const HMAC_WINDOW_SECONDS = 300;

/** The three HMAC headers, lower-cased as Node delivers them. */
export const HMAC_HEADERS = { clientId: 'x-client-id', timestamp: 'x-timestamp', signature: 'x-signature' } as const;

const CLIENT_ID = /^[A-Za-z0-9._-]{1,64}$/;
const TIMESTAMP = /^\d{1,12}$/;
const SIGNATURE = /^[0-9a-f]{64}$/;
const SHA256_HEX_LENGTH = 64;

/** The HMAC headers of a request, syntactically valid, as received. */
export interface HmacHeaders {
  readonly clientId: string;
  /** Unix seconds, kept as the exact digits received: they are part of the signed string. */
  readonly timestamp: string;
  /** 64 lowercase hex digits. */
  readonly signature: string;
}

/** Outcome of {@link parseHmacHeaders}: no HMAC attempted, a malformed attempt, or the headers. */
export type HmacHeaderParse =
  | { readonly status: 'absent' }
  | { readonly status: 'invalid'; readonly problem: string }
  | { readonly status: 'ok'; readonly headers: HmacHeaders };

/** The string a client signs: `<timestamp>\n<METHOD>\n<PATH>\n<sha256 hex of the raw body>` (SPEC §5). */
export function canonicalString(timestamp: string, method: string, target: string, bodySha256Hex: string): string {
  return `${timestamp}\n${method.toUpperCase()}\n${target}\n${bodySha256Hex}`;
}

/** Lowercase hex SHA-256 of the raw body bytes (an absent body hashes as empty). */
export function sha256Hex(body: Buffer | undefined): string {
  return createHash('sha256')
    .update(body ?? Buffer.alloc(0))
    .digest('hex');
}

/** Lowercase hex HMAC-SHA256 of `canonical`: what a client sends as `X-Signature`. */
export function signCanonical(secret: Buffer, canonical: string): string {
  return createHmac('sha256', secret).update(canonical, 'utf8').digest('hex');
}

/**
 * Reads the three HMAC headers strictly. `absent` only when none is present, so a request with
 * one or two of them is a failed HMAC attempt, not a request for another credential type.
 * Node joins a repeated `X-*` header into `a, b`, which the patterns reject; an array (how some
 * adapters deliver repeats) is rejected outright.
 */
export function parseHmacHeaders(headers: IncomingHttpHeaders): HmacHeaderParse {
  const raw = {
    clientId: headers[HMAC_HEADERS.clientId],
    timestamp: headers[HMAC_HEADERS.timestamp],
    signature: headers[HMAC_HEADERS.signature],
  };
  if (raw.clientId === undefined && raw.timestamp === undefined && raw.signature === undefined) return { status: 'absent' };
  const problem =
    check(raw.clientId, 'X-Client-Id', CLIENT_ID, 'a client id of 1-64 characters [A-Za-z0-9._-]') ??
    check(raw.timestamp, 'X-Timestamp', TIMESTAMP, 'unix seconds (1-12 digits)') ??
    check(raw.signature, 'X-Signature', SIGNATURE, 'the lowercase hex HMAC-SHA256 (64 characters)');
  if (problem) return { status: 'invalid', problem };
  return {
    status: 'ok',
    headers: { clientId: raw.clientId as string, timestamp: raw.timestamp as string, signature: raw.signature as string },
  };
}

function check(value: string | string[] | undefined, name: string, pattern: RegExp, expected: string): string | undefined {
  if (value === undefined) return `the ${name} header is required for HMAC authentication`;
  if (Array.isArray(value)) return `the ${name} header must be sent exactly once`;
  if (!pattern.test(value)) return `the ${name} header must be ${expected}`;
  return undefined;
}

/**
 * The scheme and authority of an absolute-form target (`http(s)://host[:port]`, the scheme in any
 * case, RFC 3986 §3.1) followed by its path, as Fastify's router strips them (it routes
 * `HTTP://h/v1/models` as `/v1/models`). An authority holding `?`, `#`, `@` (userinfo) or `\`, or
 * one followed by no path, is not taken: such a target stays absolute and fails the normal-form
 * check, so a signature never covers a target that two readers could take for different paths.
 */
const ABSOLUTE_FORM_PREFIX = /^https?:\/\/[^/?#@\\]+(?=\/)/i;

/**
 * The origin-form target (path and query) of an absolute-form one, `http://host/v1/x?q` →
 * `/v1/x?q`: what the gateway routes and audits such a request under, and what a client signs
 * (SPEC §5) whether or not a forward proxy on the way rewrote its target into the absolute form,
 * which RFC 9112 §3.2.2 has servers accept. Any other target is returned unchanged.
 */
export function originFormTarget(target: string): string {
  const prefix = ABSOLUTE_FORM_PREFIX.exec(target);
  return prefix ? target.slice(prefix[0].length) : target;
}

/**
 * A percent-encoded unreserved character (RFC 3986 §2.3: letters, digits, `-`, `.`, `_`, `~`),
 * which normalisation decodes (§6.2.2.2): `/%61dmin` is `/admin` to whatever normalises paths.
 */
const ENCODED_UNRESERVED = /%(3\d|4[1-9a-f]|5[\da]|6[1-9a-f]|7[\da]|2d|2e|5f|7e)/i;

/**
 * True when the path of a request target is in the one form every hop reads the same way: it
 * starts with `/` and has no empty or dot segments, no backslash, no percent-encoded `/` or `\`,
 * and no percent-encoded character that needs none (a letter, a digit, `-`, `.`, `_`, `~`). A
 * proxy or router that normalises such a path could route a request elsewhere than the path that
 * was signed. The query string is not held to this: values there legitimately carry encoded
 * slashes, and it is signed byte for byte anyway.
 */
export function isNormalisedTarget(target: string): boolean {
  if (!target.startsWith('/')) return false;
  const query = target.indexOf('?');
  const path = query === -1 ? target : target.slice(0, query);
  if (path.includes('#')) return false;
  if (path.includes('//') || path.includes('\\')) return false;
  if (/%(2f|5c)/i.test(path) || ENCODED_UNRESERVED.test(path)) return false;
  if (path.includes('/./') || path.includes('/../')) return false;
  if (path.endsWith('/.') || path.endsWith('/..')) return false;
  return true;
}

/**
 * Checks `signatureHex` against the HMAC-SHA256 of `canonical` by comparing bytes in constant
 * time. Anything that is not 64 lowercase hex digits is refused before decoding, because
 * `Buffer.from(hex)` silently stops at the first non-hex character.
 */
export function verifySignature(secret: Buffer, canonical: string, signatureHex: string): boolean {
  if (signatureHex.length !== SHA256_HEX_LENGTH || !SIGNATURE.test(signatureHex)) return false;
  const expected = createHmac('sha256', secret).update(canonical, 'utf8').digest();
  const presented = Buffer.from(signatureHex, 'hex');
  if (presented.length !== expected.length) return false;
  return timingSafeEqual(presented, expected);
}

/** True when `timestamp` is at most `windowSeconds` before or after `nowSeconds`. */
export function withinWindow(timestamp: number, nowSeconds: number, windowSeconds: number = HMAC_WINDOW_SECONDS): boolean {
  if (!Number.isSafeInteger(timestamp) || !Number.isFinite(nowSeconds)) return false;
  return Math.abs(nowSeconds - timestamp) <= windowSeconds;
}
