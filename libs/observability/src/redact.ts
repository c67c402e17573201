/** Field names whose values are never logged (credentials, keys, prompt and completion text). */
const SECRET_KEYS =
  /^(authorization|proxy-authorization|cookie|set-cookie|x-api-key|x-goog-api-key|x-goog-iap-jwt-assertion|x-signature|api[-_]?key|secret|client[-_]?secret|password|passwd|token|access[-_]?token|refresh[-_]?token|id[-_]?token|private[-_]?key|key|pem|messages|content|prompt|input|completion|choices|text|system|contents|body|arguments|partial_json|instructions|output)$/i;

/**
 * Words that make a compound field name a credential wherever they appear in it, once case and
 * separators are dropped: `openai_api_key`, `hmacSecret`, `apiKeys`, `anthropic-api-key`.
 */
const SECRET_KEY_WORDS =
  /(apikey|secret|password|passwd|passphrase|token|privatekey|credential|assertion|signature|cookie|authorization|(signing|hmac|access|encryption|session|master|client)key)/;

/**
 * Whether the value under `key` must not be logged: any value under an exact credential or content
 * name; under a compound name, anything but a number or a boolean (`tokens_in`, `maxTokens`).
 */
function isSecretKey(key: string, value: unknown): boolean {
  if (value === null || value === undefined) return false;
  if (SECRET_KEYS.test(key)) return true;
  if (typeof value === 'number' || typeof value === 'boolean') return false;
  const words = key.toLowerCase().replace(/[^a-z0-9]/g, '');
  // What names or counts a secret is not one: `secretName`, `tokenCount`, `signatureVersion`; and
  // `secrets` is the documented list of loaded secrets (names and versions) on "secrets loaded".
  if (words === 'secrets' && Array.isArray(value)) return false;
  return SECRET_KEY_WORDS.test(words) && !/(name|names|id|ids|kind|version|count|length|type)$/.test(words);
}

/** Strings that look like credentials wherever they appear: JWTs, provider keys, PEM blocks. */
const SECRET_VALUES: ReadonlyArray<[RegExp, string | ((match: string, ...groups: string[]) => string)]> = [
  [/eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*/g, '[redacted]'],
  [/\b(sk|rk|pk)-[\w-]{8,}/g, '[redacted]'],
  [/\bsk-ant-[\w-]{8,}/g, '[redacted]'],
  [/\bAIza[\w-]{20,}/g, '[redacted]'],
  // Google OAuth access tokens.
  [/\bya29\.[\w.-]{10,}/g, '[redacted]'],
  [/-----BEGIN [A-Z ]+-----[\s\S]*?(-----END [A-Z ]+-----|$)/g, '[redacted]'],
  // The credential after Bearer or Basic, not an English word after "basic" ("basic validation"):
  // it holds a digit, an uppercase letter after its first, or a character no word has.
  [
    /\b(?:Bearer|Basic)\s+([\w.~+/-]+=*)/gi,
    (match: string, credential: string) => (/[0-9.~+/=_-]|.[A-Z]/.test(credential) ? '[redacted]' : match),
  ],
  // A URL's user info (`https://user:pass@host`, `redis://:pass@host`): fetch's error for such a URL
  // quotes it whole. The scheme and host stay, so the line still says where; the greedy run ends at
  // the authority's last `@`, as URL parsers do, so a password holding an `@` is masked whole. Only
  // characters a URL may not hold unencoded end it (`"`, `<`, `>`, `\`, spaces), besides the
  // path, query and fragment. The scheme starts where no scheme character precedes it and is at
  // most 32 long, so a long run of `a.a.a…` costs one pass, not one per dot.
  [/(?<![a-z\d+.-])([a-z][a-z\d+.-]{0,31}:\/\/)[^\s/?#\\"<>]+@/gi, '$1***@'],
  // Credentials in a URL's query string: keep the name, mask the value.
  [/([?&](?:api[-_]?key|key|token|access_token|sig|signature|secret)=)[^&#\s"']+/gi, '$1[redacted]'],
  // A secret field inside JSON text (a secret's payload logged as a string).
  [/("(?:[\w-]*(?:secret|password|api[-_]?key|token|private[-_]?key))"\s*:\s*)"(?:[^"\\]|\\.)*"/gi, '$1"[redacted]"'],
];

const REDACTED = '[redacted]';

/**
 * Returns a copy of `value` safe to log: values under secret-looking or content-bearing keys are
 * replaced, and credential-shaped substrings are masked in every string. Depth and size are
 * bounded, so a huge or cyclic object logged by mistake cannot stall the process.
 */
export function redact(value: unknown, depth = 0, seen?: WeakSet<object>): unknown {
  if (typeof value === 'string') return maskString(value);
  // JSON cannot hold a bigint (the line would throw); a function or symbol says nothing.
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'function' || typeof value === 'symbol') return `[${typeof value}]`;
  if (typeof value !== 'object' || value === null) return value;
  // Bytes are content (a prompt's, say), never logged: only their size.
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return `[${value.byteLength} bytes]`;
  if (depth > 6) return '[truncated]';
  // Made for an object only: a string (each audit line masks three) needs none.
  seen ??= new WeakSet<object>();
  if (seen.has(value)) return '[cycle]';
  seen.add(value);
  if (Array.isArray(value)) return value.slice(0, 50).map((v) => redact(v, depth + 1, seen));
  if (value instanceof Error) return { name: value.name, message: maskString(value.message) };
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const [k, v] of Object.entries(value)) {
    if (n++ >= 100) break;
    out[k] = isSecretKey(k, v) ? REDACTED : redact(v, depth + 1, seen);
  }
  return out;
}

/**
 * Text that each of {@link SECRET_VALUES} needs somewhere in a string to match: `eyJ`; `sk-`, `rk-`
 * or `pk-` (`sk-ant-` too); `AIza`; `ya29.`; a PEM block's `-----BEGIN `; the whitespace after
 * Bearer or Basic; a URL's `://`; a query string's `?` or `&`; JSON's `"`. A string with none of
 * them (the model names and the path on every audit line) comes back as it is without the patterns
 * being run: one test instead of ten replaces, four times a request.
 */
const MAYBE_SECRET = /eyJ|[rsp]k-|AIza|ya29\.|-----BEGIN |\s|:\/\/|[?&"]/;

/** `s` with every credential-shaped substring (a JWT, a provider key, a PEM block, a URL's password…) masked. */
export function maskString(s: string): string {
  if (!MAYBE_SECRET.test(s)) return s;
  let out = s;
  for (const [pattern, replacement] of SECRET_VALUES)
    out = typeof replacement === 'string' ? out.replace(pattern, replacement) : out.replace(pattern, replacement);
  return out;
}
