import type { GatewayConfig } from '@keygate/config';
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
    ['a malformed bearer header', { authorization: 'Bearer a b' }],
  ])('fails a request with %s as "no token", without making an Error or looking for a key', (_, headers) => {
    const a = attempt();
    a.authenticate({ headers });
    expect(a.fail).toHaveBeenCalledWith(NO_AUTH_TOKEN, 401);
    expect(a.fail.mock.calls[0][0]).not.toBeInstanceOf(Error);
    expect(keyFor).not.toHaveBeenCalled();
  });

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
