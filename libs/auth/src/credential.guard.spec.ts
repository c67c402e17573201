import { AuthModuleOptions } from '@nestjs/passport';
import { attachContext, RequestContext } from '@keygate/observability';
import type { SecretsService } from '@keygate/secrets';
import type { FastifyRequest } from 'fastify';
import passport from 'passport';
import { Strategy } from 'passport-strategy';
import { JWT_STRATEGY } from './auth.constants';
import { CredentialGuard } from './credential.guard';
import { HMAC_STRATEGY } from './hmac.strategy';
import { IAP_STRATEGY } from './iap.strategy';
import type { Principal } from './principal';
import { VerifiedTokenCache } from './verified-token.cache';

// Unit spec: naming the caller of a request refused before its body arrived (the request timeout).

const ALICE: Principal = { kind: 'jwt', product: 'demo', user: 'alice', scopes: [] };
const HEADER_STRATEGY = 'test-header';

/**
 * A passport strategy answering what it is told, counting the requests it was asked about (on a
 * shared counter: passport runs a per-request copy of the strategy).
 */
class ScriptedStrategy extends Strategy {
  private readonly count = { asked: 0 };
  constructor(private readonly answer: (strategy: Strategy) => void) {
    super();
  }
  get asked(): number {
    return this.count.asked;
  }
  override authenticate(): void {
    this.count.asked++;
    this.answer(this);
  }
}

function requestWith(headers: Record<string, string>): { request: FastifyRequest; ctx: RequestContext } {
  const raw = {};
  const ctx = new RequestContext('req-1', 'POST', '/v1/chat/completions', 0n, null, true);
  attachContext(raw, ctx);
  return { request: { headers, raw } as unknown as FastifyRequest, ctx };
}

describe('CredentialGuard.nameCallerFromHeaders', () => {
  let hmac: ScriptedStrategy;
  let cache: VerifiedTokenCache;
  let guard: CredentialGuard;

  function useHeaderStrategy(answer: (strategy: Strategy) => void): ScriptedStrategy {
    const strategy = new ScriptedStrategy(answer);
    passport.use(HEADER_STRATEGY, strategy);
    return strategy;
  }

  beforeEach(() => {
    // A signature covers the body, which has not arrived: the HMAC strategy must never be asked.
    hmac = new ScriptedStrategy((s) => s.success({ kind: 'hmac', product: 'demo', user: 'mallory', scopes: [] }));
    passport.use(HMAC_STRATEGY, hmac);
    cache = new VerifiedTokenCache({ current: {} } as unknown as SecretsService);
    const options = new AuthModuleOptions();
    options.defaultStrategy = [HEADER_STRATEGY, HMAC_STRATEGY];
    guard = new CredentialGuard(cache, options);
  });
  afterEach(() => {
    passport.unuse(HEADER_STRATEGY);
    passport.unuse(HMAC_STRATEGY);
  });

  it('names the caller a header credential strategy accepts, and never asks the HMAC strategy', async () => {
    const header = useHeaderStrategy((s) => s.success(ALICE));
    const { request, ctx } = requestWith({ authorization: 'Bearer abc' });
    await guard.nameCallerFromHeaders(request);
    expect({ product: ctx.product, user: ctx.user }).toEqual({ product: 'demo', user: 'alice' });
    expect(header.asked).toBe(1);
    expect(hmac.asked).toBe(0);
  });

  it.each([
    ['refuses the credential', (s: Strategy) => s.fail(401)],
    ['fails with an error', (s: Strategy) => s.error(new Error('key set unreachable'))],
  ])('names no one when the strategy %s', async (_what, answer) => {
    useHeaderStrategy(answer);
    const { request, ctx } = requestWith({ authorization: 'Bearer abc' });
    await guard.nameCallerFromHeaders(request);
    expect({ product: ctx.product, user: ctx.user }).toEqual({ product: null, user: null });
    expect(hmac.asked).toBe(0);
  });

  it('names the caller of a bearer token verified before without asking passport', async () => {
    const header = useHeaderStrategy((s) => s.fail(401));
    cache.set('seen-before', ALICE, Math.floor(Date.now() / 1000) + 600, 60);
    const { request, ctx } = requestWith({ authorization: 'Bearer seen-before' });
    await guard.nameCallerFromHeaders(request);
    expect(ctx.user).toBe('alice');
    expect(header.asked).toBe(0);
  });

  it('names no one and asks no strategy when only HMAC is configured', async () => {
    const options = new AuthModuleOptions();
    options.defaultStrategy = HMAC_STRATEGY;
    const { request, ctx } = requestWith({ 'x-client-id': 'mallory' });
    await new CredentialGuard(cache, options).nameCallerFromHeaders(request);
    expect(ctx.user).toBeNull();
    expect(hmac.asked).toBe(0);
  });
});

describe('CredentialGuard.presentsCredential', () => {
  const guard = (strategies: string[]): CredentialGuard => {
    const options = new AuthModuleOptions();
    options.defaultStrategy = strategies;
    return new CredentialGuard(new VerifiedTokenCache({ current: {} } as unknown as SecretsService), options);
  };
  const all = guard([JWT_STRATEGY, HMAC_STRATEGY, IAP_STRATEGY]);

  it.each([
    ['a bearer token', { authorization: 'Bearer abc.def.ghi' }, true],
    ['an HMAC signature', { 'x-client-id': 'c', 'x-timestamp': '1', 'x-signature': 'a'.repeat(64) }, true],
    ['one HMAC header of three (a failed HMAC attempt)', { 'x-timestamp': '1' }, true],
    ['an IAP assertion', { 'x-goog-iap-jwt-assertion': 'garbage' }, true],
    ['no credential', {}, false],
    ['Basic credentials', { authorization: 'Basic dXNlcjpwYXNz' }, false],
    ['a bare Bearer', { authorization: 'Bearer ' }, false],
    ['a bearer token with a non-ASCII byte (presented, malformed)', { authorization: 'Bearer abc\u00e9def' }, true],
    ['two tokens after Bearer (presented, malformed)', { authorization: 'Bearer abc def' }, true],
    ['a forged identity header', { 'x-goog-authenticated-user-email': 'accounts.google.com:a@example.com' }, false],
  ])('with every kind configured, finds %s: %s', (_case, headers: Record<string, string>, expected) => {
    expect(all.presentsCredential(headers)).toBe(expected);
  });

  it('counts only the kinds configured: another is an unsupported method, as if none came', () => {
    expect(guard([JWT_STRATEGY]).presentsCredential({ 'x-client-id': 'c' })).toBe(false);
    expect(guard([JWT_STRATEGY, HMAC_STRATEGY]).presentsCredential({ 'x-goog-iap-jwt-assertion': 'a.b.c' })).toBe(false);
    expect(guard([HMAC_STRATEGY]).presentsCredential({ authorization: 'Bearer abc' })).toBe(false);
    expect(guard([HMAC_STRATEGY]).presentsCredential({ 'x-signature': 'x' })).toBe(true);
    expect(guard([IAP_STRATEGY]).presentsCredential({ 'x-goog-iap-jwt-assertion': 'a.b.c' })).toBe(true);
  });
});
