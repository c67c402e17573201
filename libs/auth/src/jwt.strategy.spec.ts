import type { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import type { JwtKeyResolver } from './jwt-key.resolver';
import { JwtStrategy, NO_AUTH_TOKEN } from './jwt.strategy';
import type { VerifiedTokenCache } from './verified-token.cache';

/** What passport gives a strategy for one request: the strategy, plus its outcome callbacks. */
interface Attempt {
  authenticate(request: unknown): void;
  fail: jest.Mock;
  success: jest.Mock;
  error: jest.Mock;
}

describe('JwtStrategy.validate with the audience in another claim (API_KEY_SERVER_JWT_AUDIENCE_CLAIM)', () => {
  const jwt = {
    issuers: ['iss-a'],
    audience: 'app-client-1',
    audienceClaim: 'client_id',
    clockSkewSeconds: 30,
    maxTtlSeconds: 3600,
    requiredClaims: {},
  };
  const set = jest.fn();
  const strategy = new JwtStrategy({ jwt } as unknown as GatewayConfig, {} as JwtKeyResolver, { set } as unknown as VerifiedTokenCache);
  const now = Math.floor(Date.now() / 1000);
  const payload = (extra: Record<string, unknown>) => ({ iss: 'iss-a', sub: 'alice', product: 'demo', iat: now, exp: now + 300, ...extra });
  const validate = (extra: Record<string, unknown>) => strategy.validate({ headers: { authorization: 'Bearer a.b.c' } }, payload(extra));

  it('takes a token whose claim holds the audience, alone or in a list, with no aud at all', () => {
    expect(validate({ client_id: 'app-client-1' })).toMatchObject({ user: 'alice', product: 'demo' });
    expect(validate({ client_id: ['other', 'app-client-1'] })).toMatchObject({ user: 'alice' });
    expect(set).toHaveBeenCalledTimes(2);
  });

  it.each([
    ['another value', { client_id: 'app-client-2' }, 'the token client_id is not the audience this gateway accepts'],
    ['the audience in aud instead', { aud: 'app-client-1' }, 'the token has no client_id claim, which holds the audience here'],
    ['a list without it', { client_id: ['x'] }, 'the token client_id is not the audience this gateway accepts'],
  ])('refuses a token with %s as a failure (not an error), so passport can try the next credential', (_, extra, message) => {
    set.mockClear();
    const outcome = validate(extra);
    expect(outcome).toEqual([false, expect.objectContaining({ code: 'invalid_token', message })]);
    expect(set).not.toHaveBeenCalled();
  });
});

it('reads only the token’s own claims as the audience, never one the payload inherits (toString)', () => {
  const jwt = {
    issuers: ['iss-a'],
    audience: 'x',
    audienceClaim: 'toString',
    clockSkewSeconds: 30,
    maxTtlSeconds: 3600,
    requiredClaims: {},
  };
  const strategy = new JwtStrategy(
    { jwt } as unknown as GatewayConfig,
    {} as JwtKeyResolver,
    { set: jest.fn() } as unknown as VerifiedTokenCache,
  );
  const now = Math.floor(Date.now() / 1000);
  expect(strategy.validate({ headers: {} }, { iss: 'iss-a', sub: 'alice', product: 'demo', iat: now, exp: now + 300 })).toEqual([
    false,
    expect.objectContaining({ message: 'the token has no toString claim, which holds the audience here' }),
  ]);
});

describe('JwtStrategy.authenticate', () => {
  const config = {
    jwt: { issuers: ['keygate-test'], audience: 'keygate', clockSkewSeconds: 30, maxTtlSeconds: 3600, requiredClaims: [] },
  } as unknown as GatewayConfig;
  const keyFor = jest.fn();
  const strategy = new JwtStrategy(config, { keyFor } as unknown as JwtKeyResolver, {} as VerifiedTokenCache);

  function attempt(): Attempt {
    const a = Object.create(strategy) as Attempt;
    a.fail = jest.fn();
    a.success = jest.fn();
    a.error = jest.fn();
    return a;
  }

  beforeEach(() => keyFor.mockReset());

  it.each([
    ['no Authorization header', {}],
    ['a Basic credential', { authorization: 'Basic dXNlcjpwYXNz' }],
    ['a bare Bearer scheme', { authorization: 'Bearer ' }],
  ])('fails a request with %s as "no token", without making an Error or looking for a key', (_, headers) => {
    const a = attempt();
    a.authenticate({ headers });
    expect(a.fail).toHaveBeenCalledWith(NO_AUTH_TOKEN, 401);
    expect(a.fail.mock.calls[0][0]).not.toBeInstanceOf(Error);
    expect(keyFor).not.toHaveBeenCalled();
  });

  it.each([
    ['two tokens', 'Bearer a b'],
    ['a non-ASCII byte', 'Bearer abc\u00e9.def.ghi'],
    ['a quote', 'Bearer abc"def'],
  ])(
    'fails a bearer token with %s as an invalid token (not a missing one), echoing nothing, without looking for a key',
    (_, authorization) => {
      const a = attempt();
      a.authenticate({ headers: { authorization } });
      const [reason, status] = a.fail.mock.calls[0] as [GatewayError, number];
      expect(status).toBe(401);
      expect(reason).toBeInstanceOf(GatewayError);
      expect(reason.code).toBe('invalid_token');
      expect(reason.message).toBe('the bearer token is malformed (RFC 6750 allows letters, digits and -._~+/ then = padding)');
      expect(keyFor).not.toHaveBeenCalled();
    },
  );

  it('hands a request with a bearer token to passport-jwt, which looks for its key', async () => {
    keyFor.mockRejectedValue(new Error('unknown kid'));
    const a = attempt();
    a.authenticate({ headers: { authorization: 'Bearer header.payload.signature' } });
    await new Promise((resolve) => setImmediate(resolve));
    expect(keyFor).toHaveBeenCalledWith('header.payload.signature');
    expect(a.success).not.toHaveBeenCalled();
    expect(a.fail.mock.calls.length + a.error.mock.calls.length).toBe(1);
  });
});
