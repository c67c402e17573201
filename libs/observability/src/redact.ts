/** Field names whose values are never logged (credentials, keys, prompt and completion text). */
const SECRET_KEYS =
  /^(authorization|proxy-authorization|cookie|set-cookie|x-api-key|x-goog-api-key|x-goog-iap-jwt-assertion|x-signature|api[-_]?key|secret|client[-_]?secret|password|passwd|token|access[-_]?token|refresh[-_]?token|id[-_]?token|private[-_]?key|key|pem|messages|content|prompt|input|completion|choices|text|system|contents|body)$/i;

/** Strings that look like credentials wherever they appear: JWTs, provider keys, PEM blocks. */
const SECRET_VALUES = [
  /eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*/g,
  /\b(sk|rk|pk)-[\w-]{8,}/g,
  /\bsk-ant-[\w-]{8,}/g,
  /\bAIza[\w-]{20,}/g,
  /-----BEGIN [A-Z ]+-----[\s\S]*?(-----END [A-Z ]+-----|$)/g,
  /\bBearer\s+[\w.~+/-]+=*/gi,
];

const REDACTED = '[redacted]';

/**
 * Returns a copy of `value` safe to log: values under secret-looking or content-bearing keys are
 * replaced, and credential-shaped substrings are masked in every string. Depth and size are
 * bounded, so a huge or cyclic object logged by mistake cannot stall the process.
 */
export function redact(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return maskString(value);
  if (typeof value !== 'object' || value === null) return value;
  if (depth > 6) return '[truncated]';
  if (seen.has(value)) return '[cycle]';
  seen.add(value);
  if (Array.isArray(value)) return value.slice(0, 50).map((v) => redact(v, depth + 1, seen));
  if (value instanceof Error) return { name: value.name, message: maskString(value.message) };
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const [k, v] of Object.entries(value)) {
    if (n++ >= 100) break;
    out[k] = SECRET_KEYS.test(k) ? REDACTED : redact(v, depth + 1, seen);
  }
  return out;
}

function maskString(s: string): string {
  let out = s;
  for (const pattern of SECRET_VALUES) out = out.replace(pattern, REDACTED);
  return out;
}
