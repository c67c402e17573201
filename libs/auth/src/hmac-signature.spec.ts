import { createHmac } from 'node:crypto';
import {
  canonicalString,
  isNormalisedTarget,
  originFormTarget,
  parseHmacHeaders,
  sha256Hex,
  signCanonical,
  verifySignature,
  withinWindow,
} from './hmac-signature';

const SECRET = Buffer.from('a-client-secret-of-at-least-32-characters', 'utf8');
const SIG = 'a'.repeat(64);

describe('canonicalString', () => {
  it('joins timestamp, method, target with query and body hash with newlines', () => {
    const body = Buffer.from('{"model":"gpt-4o"}');
    expect(canonicalString('1800000000', 'post', '/v1/chat/completions?a=1&b=%2F', sha256Hex(body))).toBe(
      `1800000000\nPOST\n/v1/chat/completions?a=1&b=%2F\n${sha256Hex(body)}`,
    );
  });

  it('hashes an absent body as the empty string', () => {
    const empty = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
    expect(sha256Hex(undefined)).toBe(empty);
    expect(sha256Hex(Buffer.alloc(0))).toBe(empty);
  });
});

describe('parseHmacHeaders', () => {
  const good = { 'x-client-id': 'ci.runner_2-a', 'x-timestamp': '1800000000', 'x-signature': SIG };

  it('is absent only when none of the three headers is present', () => {
    expect(parseHmacHeaders({ authorization: 'Bearer x' })).toEqual({ status: 'absent' });
    expect(parseHmacHeaders({ 'x-client-id': 'c' }).status).toBe('invalid');
  });

  it('returns the headers as received', () => {
    expect(parseHmacHeaders(good)).toEqual({
      status: 'ok',
      headers: { clientId: 'ci.runner_2-a', timestamp: '1800000000', signature: SIG },
    });
  });

  it.each([
    [{ 'x-client-id': undefined }, /X-Client-Id header is required/],
    [{ 'x-timestamp': undefined }, /X-Timestamp header is required/],
    [{ 'x-signature': undefined }, /X-Signature header is required/],
    [{ 'x-client-id': ['a', 'b'] }, /X-Client-Id header must be sent exactly once/],
    [{ 'x-timestamp': ['1800000000', '1800000000'] }, /X-Timestamp header must be sent exactly once/],
    [{ 'x-signature': [SIG, SIG] }, /X-Signature header must be sent exactly once/],
    [{ 'x-client-id': 'a, b' }, /X-Client-Id header must be a client id/],
    [{ 'x-client-id': '' }, /X-Client-Id/],
    [{ 'x-client-id': 'x'.repeat(65) }, /X-Client-Id/],
    [{ 'x-client-id': 'a/b' }, /X-Client-Id/],
    [{ 'x-timestamp': '1800000000, 1800000000' }, /X-Timestamp header must be unix seconds/],
    [{ 'x-timestamp': '-1800000000' }, /X-Timestamp/],
    [{ 'x-timestamp': '1800000000.5' }, /X-Timestamp/],
    [{ 'x-timestamp': '1'.repeat(13) }, /X-Timestamp/],
    [{ 'x-timestamp': '' }, /X-Timestamp/],
    [{ 'x-signature': SIG.toUpperCase() }, /X-Signature header must be the lowercase hex/],
    [{ 'x-signature': SIG.slice(1) }, /X-Signature/],
    [{ 'x-signature': SIG + 'a' }, /X-Signature/],
    [{ 'x-signature': 'g'.repeat(64) }, /X-Signature/],
    [{ 'x-signature': `${SIG}, ${SIG}` }, /X-Signature/],
  ])('rejects %j', (override, problem) => {
    const parsed = parseHmacHeaders({ ...good, ...override });
    expect(parsed.status).toBe('invalid');
    expect(parsed.status === 'invalid' && parsed.problem).toMatch(problem);
  });
});

describe('isNormalisedTarget', () => {
  it.each([
    '/v1/chat/completions',
    '/v1/models?limit=10',
    '/v1/x?redirect=%2Fa%2F..%2Fb&p=a//b',
    '/',
    '/v1/files/a.b..c',
    '/v1/.well-known',
    // Reserved characters and others outside the unreserved set stay encoded in normal form.
    '/v1beta/models/gemini-1.5-pro%3AgenerateContent',
    '/v1/models/caf%C3%A9',
    '/v1/models/a%20b',
  ])('accepts %s', (target) => expect(isNormalisedTarget(target)).toBe(true));

  it.each([
    'v1/chat/completions',
    '',
    'http://gateway/v1/models',
    '*',
    '//v1/models',
    '/v1//models',
    '/v1/./models',
    '/v1/../admin',
    '/v1/models/.',
    '/v1/models/..',
    '/v1/models/..?x=1',
    '/v1/%2e%2e/admin',
    '/v1/%2E/models',
    '/v1%2fmodels',
    '/v1%2Fmodels',
    '/v1%5cmodels',
    '/v1%5Cmodels',
    '/v1\\models',
    '/v1/models#frag',
    // An encoded letter, digit, '-', '_' or '~' (normalisation decodes them: /%61dmin is /admin).
    '/%61dmin/blocks',
    '/chat/%64emo',
    '/v1/chat/complet%69ons',
    '/v%31/models',
    '/V1/%4Dodels',
    '/v1/models/gpt%2D4o',
    '/v1/models/a%5Fb',
    '/v1/models/a%7eb',
  ])('refuses %s', (target) => expect(isNormalisedTarget(target)).toBe(false));
});

describe('originFormTarget', () => {
  it.each([
    ['http://gateway.internal:8080/v1/chat/completions?x=1', '/v1/chat/completions?x=1'],
    ['https://evil.example/chat/demo', '/chat/demo'],
    ['http://[::1]:8080/v1/models', '/v1/models'],
    // A scheme is case-insensitive (RFC 3986 §3.1), as the router reads it.
    ['HTTP://gateway.internal/v1/models', '/v1/models'],
    ['Https://gateway.internal/chat/demo?x=1', '/chat/demo?x=1'],
    // The path is kept as sent, for the normal-form check to see.
    ['http://h/v1/../admin', '/v1/../admin'],
    ['http://h//v1/models', '//v1/models'],
    ['/v1/models?x=http://h/y', '/v1/models?x=http://h/y'],
  ])('reads %s as %s', (target, origin) => expect(originFormTarget(target)).toBe(origin));

  it.each([
    // No path: a router could take the query's /v1/... for the path.
    'http://h?x=/v1/chat/completions',
    'http://h#/v1/chat/completions',
    // Userinfo, which RFC 9110 §4.2.4 has recipients treat as an error.
    'http://user:pass@h/v1/models',
    'http://h\\/v1/models',
    'http://h',
    'ftp://h/v1/models',
    '*',
  ])('leaves %s as it is (it then fails the normal-form check)', (target) => {
    expect(originFormTarget(target)).toBe(target);
    expect(isNormalisedTarget(originFormTarget(target))).toBe(false);
  });
});

describe('verifySignature', () => {
  const canonical = canonicalString('1800000000', 'GET', '/v1/models', sha256Hex(undefined));
  const signature = createHmac('sha256', SECRET).update(canonical).digest('hex');

  it('accepts the HMAC-SHA256 of the canonical string', () => {
    expect(signCanonical(SECRET, canonical)).toBe(signature);
    expect(verifySignature(SECRET, canonical, signature)).toBe(true);
  });

  it('refuses another secret, another string, or a malformed signature', () => {
    expect(verifySignature(Buffer.from('another-secret-of-at-least-32-characters'), canonical, signature)).toBe(false);
    expect(verifySignature(SECRET, canonical + 'x', signature)).toBe(false);
    expect(verifySignature(SECRET, canonical, signature.toUpperCase())).toBe(false);
    expect(verifySignature(SECRET, canonical, signature.slice(0, 62))).toBe(false);
    expect(verifySignature(SECRET, canonical, signature + '00')).toBe(false);
    // Buffer.from(hex) would stop at the first non-hex digit and compare a shorter prefix.
    expect(verifySignature(SECRET, canonical, signature.slice(0, 62) + 'zz')).toBe(false);
    expect(verifySignature(SECRET, canonical, '')).toBe(false);
  });
});

describe('withinWindow', () => {
  const now = 1_800_000_000;
  it.each([
    [now, true],
    [now - 300, true],
    [now + 300, true],
    [now - 301, false],
    [now + 301, false],
    [0, false],
    [Number.NaN, false],
    [now + 0.5, false],
  ])('timestamp %d → %s', (ts, expected) => expect(withinWindow(ts, now, 300)).toBe(expected));
});
