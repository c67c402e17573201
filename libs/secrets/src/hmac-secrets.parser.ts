import { fieldLabel, SecretFormatError } from './secret-format.error';
import { parseSecretJson } from './secret-json';

/** One HMAC client (SPEC §5): its shared secret and the product it calls for. */
export interface HmacClient {
  /** The `X-Client-Id` it signs with; also the principal's user. */
  readonly clientId: string;
  /** The HMAC-SHA256 key: the UTF-8 bytes of the configured secret string. */
  readonly secret: Buffer;
  /** The product every request of this client is billed and limited as. */
  readonly product: string;
}

/** Client ids as the `X-Client-Id` header accepts them. */
export const HMAC_CLIENT_ID = /^[A-Za-z0-9._-]{1,64}$/;
const PRODUCT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** 32 characters is the floor for a key people generate by hand; HMAC-SHA256 keys should carry ≥ 256 bits. */
const MIN_SECRET_LENGTH = 32;
const FIELDS = ['secret', 'product'];

/**
 * Parses the HMAC secret `{"<client-id>": {"secret": "...", "product": "<product>"}}` (SPEC §2, §5).
 * Problems name the path (`<client-id>.secret`) and never quote a value. An empty object is
 * accepted: HMAC is then simply unused.
 */
export function parseHmacSecrets(text: string, secretName: string): ReadonlyMap<string, HmacClient> {
  const doc = parseSecretJson(text, secretName);
  if (!isObject(doc))
    throw new SecretFormatError(secretName, ['must be a JSON object {"<client-id>": {"secret": "...", "product": "..."}}']);
  const problems: string[] = [];
  const clients = new Map<string, HmacClient>();
  Object.entries(doc).forEach(([clientId, entry], index) => {
    // A malformed id may be a secret pasted in the wrong place, so it is named by position only.
    if (!HMAC_CLIENT_ID.test(clientId)) {
      problems.push(`client id at index ${index}: must match ${HMAC_CLIENT_ID.source}`);
      return;
    }
    if (!isObject(entry)) {
      problems.push(`${clientId}: must be an object {"secret": "...", "product": "..."}`);
      return;
    }
    const before = problems.length;
    Object.keys(entry).forEach((key, i) => {
      if (!FIELDS.includes(key)) problems.push(`${clientId}.${fieldLabel(key, i)}: unknown field`);
    });
    const { secret, product } = entry;
    if (typeof secret !== 'string') problems.push(`${clientId}.secret: must be a string`);
    else if (secret.length < MIN_SECRET_LENGTH) problems.push(`${clientId}.secret: must be at least ${MIN_SECRET_LENGTH} characters`);
    // Trimming would silently sign with a different key than the client holds; a stray newline is a mistake to report.
    else if (secret.trim() !== secret) problems.push(`${clientId}.secret: must not start or end with whitespace`);
    if (typeof product !== 'string' || !PRODUCT_NAME.test(product))
      problems.push(`${clientId}.product: must be a product name matching ${PRODUCT_NAME.source}`);
    if (problems.length > before) return;
    clients.set(clientId, { clientId, secret: Buffer.from(secret as string, 'utf8'), product: product as string });
  });
  if (problems.length) throw new SecretFormatError(secretName, problems);
  return clients;
}

/**
 * The client ids that share one secret, each group sorted, for a warning: whoever holds that secret
 * can sign as any of them (another client id, and so another user and maybe product). Ids only:
 * never a secret.
 */
export function clientsSharingASecret(clients: ReadonlyMap<string, HmacClient>): string[][] {
  const bySecret = new Map<string, string[]>();
  for (const { clientId, secret } of clients.values()) {
    const key = secret.toString('base64');
    const ids = bySecret.get(key);
    if (ids) ids.push(clientId);
    else bySecret.set(key, [clientId]);
  }
  return [...bySecret.values()].filter((ids) => ids.length > 1).map((ids) => ids.sort());
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
