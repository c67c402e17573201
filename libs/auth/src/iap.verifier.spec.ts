import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { JsonLogger } from '@keygate/observability';
import { SignJWT, importJWK, type JWK } from 'jose';
import { IAP_ISSUER, IAP_MAX_LIFETIME_SECONDS, IapVerifier, isIapMember } from './iap.verifier';

const AUDIENCE = '/projects/1/global/backendServices/1';

describe('IapVerifier', () => {
  const google = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicJwk = { ...(google.publicKey.export({ format: 'jwk' }) as JWK), kid: 'good', alg: 'ES256' };
  // Published under its kid, but not a point jose can import: the assertion's failure, not keygate's.
  const broken = { ...publicJwk, kid: 'broken', x: 'AAAA', y: 'AAAA' };
  let server: Server;
  let verifier: IapVerifier;

  beforeAll(async () => {
    server = createServer((_req, res) =>
      res.setHeader('content-type', 'application/json').end(JSON.stringify({ keys: [publicJwk, broken] })),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const config = {
      iap: { audience: AUDIENCE, jwksUrl: `http://127.0.0.1:${port}/jwks` },
      jwt: { jwks: { timeoutMs: 1_000, ttlMs: 60_000, cooldownMs: 10_000 } },
    } as unknown as GatewayConfig;
    verifier = new IapVerifier(config, new JsonLogger('error', undefined, () => undefined));
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));

  /** An assertion as Google signs it (issued now, 10 minutes of life); `claims` override any claim, iat and exp included. */
  const assertion = async (kid: string, aud: string | string[], claims: Record<string, unknown> = {}): Promise<string> => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ email: 'alice@example.com', iat: now, exp: now + 600, ...claims })
      .setProtectedHeader({ alg: 'ES256', kid })
      .setIssuer(IAP_ISSUER)
      .setAudience(aud)
      .setSubject('accounts.google.com:1')
      .sign(await importJWK({ ...(google.privateKey.export({ format: 'jwk' }) as JWK) }, 'ES256'));
  };

  const refusal = (promise: Promise<unknown>): Promise<unknown> =>
    promise.then(
      () => undefined,
      (error: unknown) => error,
    );

  it('verifies an assertion for exactly its audience', async () => {
    await expect(verifier.verify(await assertion('good', AUDIENCE))).resolves.toEqual({
      email: 'alice@example.com',
      subject: 'accounts.google.com:1',
    });
  });

  it("reads the account's Workspace domain from hd, lowercase", async () => {
    await expect(verifier.verify(await assertion('good', AUDIENCE, { hd: 'Example.COM' }))).resolves.toEqual({
      email: 'alice@example.com',
      subject: 'accounts.google.com:1',
      hostedDomain: 'example.com',
    });
  });

  it('refuses an aud list that merely includes the audience', async () => {
    const error = await refusal(verifier.verify(await assertion('good', [AUDIENCE, '/projects/1/global/backendServices/2'])));
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ code: 'invalid_token', status: 401 });
  });

  /** The refusal message of an assertion with these claims, which must be a 401. */
  const refusedFor = async (claims: Record<string, unknown>): Promise<string> => {
    const error = await refusal(verifier.verify(await assertion('good', AUDIENCE, claims)));
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ code: 'invalid_token', status: 401 });
    return (error as Error).message;
  };
  const nowSeconds = (): number => Math.floor(Date.now() / 1000);

  it(`refuses a lifetime (exp - iat) over ${IAP_MAX_LIFETIME_SECONDS} s, as for a JWT`, async () => {
    expect(IAP_MAX_LIFETIME_SECONDS).toBe(900);
    const now = nowSeconds();
    expect(await refusedFor({ iat: now, exp: now + 3600 })).toMatch(/^the IAP assertion lifetime exceeds the maximum of 900 seconds$/);
    expect(await refusedFor({ iat: now - 100, exp: now + 801 })).toMatch(/lifetime exceeds/);
    await expect(verifier.verify(await assertion('good', AUDIENCE, { iat: now - 100, exp: now + 800 }))).resolves.toMatchObject({
      email: 'alice@example.com',
    });
  });

  it('refuses an iat more than the 60 s skew in the future, and takes one within it', async () => {
    const now = nowSeconds();
    expect(await refusedFor({ iat: now + 120, exp: now + 600 })).toBe('the IAP assertion was issued in the future');
    await expect(verifier.verify(await assertion('good', AUDIENCE, { iat: now + 30, exp: now + 600 }))).resolves.toMatchObject({
      email: 'alice@example.com',
    });
  });

  it.each([
    ['a C0 control character', 'alice\u0001@example.com'],
    ['a newline', 'alice\n@example.com'],
    ['DEL', 'alice\u007f@example.com'],
    ['a C1 control character', 'alice\u0085@example.com'],
    ['a right-to-left override', 'alice\u202e@example.com'],
    ['an Arabic letter mark', 'alice\u061c@example.com'],
    ['a zero-width joiner', 'ali\u200dce@example.com'],
    ['a word joiner', 'alice\u2060@example.com'],
    ['257 characters', `${'a'.repeat(245)}@example.com`],
  ])('refuses an email with %s, which an operator could not block', async (_what, email) => {
    expect(await refusedFor({ email })).toBe(
      'the IAP assertion email claim must be 1-256 characters without control or invisible characters (such as bidirectional controls or zero-width spaces)',
    );
  });

  it('takes an email of 256 characters', async () => {
    const email = `${'a'.repeat(244)}@example.com`;
    expect(email).toHaveLength(256);
    await expect(verifier.verify(await assertion('good', AUDIENCE, { email }))).resolves.toMatchObject({ email });
  });

  it('answers 401, not 500, for a kid whose published key cannot be imported', async () => {
    const error = await refusal(verifier.verify(await assertion('broken', AUDIENCE)));
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ code: 'invalid_token', status: 401 });
  });

  it("says Google's keys are not available, not that the kid is unknown, while they have never been fetched; readiness names the set", async () => {
    // A port nothing listens on: every fetch fails at once.
    const idle = createServer();
    await new Promise<void>((resolve) => idle.listen(0, '127.0.0.1', resolve));
    const { port } = idle.address() as AddressInfo;
    await new Promise((resolve) => idle.close(resolve));
    const url = `http://127.0.0.1:${port}/jwks`;
    const unreachable = new IapVerifier(
      {
        iap: { audience: AUDIENCE, jwksUrl: url },
        jwt: { jwks: { timeoutMs: 1_000, ttlMs: 60_000, cooldownMs: 10_000 } },
      } as unknown as GatewayConfig,
      new JsonLogger('error', undefined, () => undefined),
    );
    const error = await refusal(unreachable.verify(await assertion('good', AUDIENCE)));
    expect(error).toMatchObject({ code: 'invalid_token', message: expect.stringMatching(/IAP keys are not available/) });
    expect(unreachable.keySet()).toEqual({ url, keys: 0 });
    // Once fetched, an unknown kid is said as such.
    const known = await refusal(verifier.verify(await assertion('no-such-kid', AUDIENCE)));
    expect(known).toMatchObject({ code: 'invalid_token', message: 'the IAP assertion kid is not a known Google key' });
    expect(verifier.keySet()?.keys).toBe(2);
  });
});

describe('isIapMember', () => {
  const members = ['user:alice@gmail.com', 'domain:corp.example'];

  it('takes a user by exact email, and a domain by the Workspace domain (hd) as IAM does', () => {
    expect(isIapMember({ email: 'alice@gmail.com', subject: 's' }, members)).toBe(true);
    expect(isIapMember({ email: 'bob@corp.example', subject: 's', hostedDomain: 'corp.example' }, members)).toBe(true);
    // A user of the Workspace whose address is on one of its secondary domains.
    expect(isIapMember({ email: 'bob@corp-secondary.example', subject: 's', hostedDomain: 'corp.example' }, members)).toBe(true);
  });

  it("does not take an address's domain without hd: a consumer account can use any address", () => {
    expect(isIapMember({ email: 'eve@corp.example', subject: 's' }, members)).toBe(false);
    expect(isIapMember({ email: 'eve@corp.example', subject: 's', hostedDomain: 'other.example' }, members)).toBe(false);
    expect(isIapMember({ email: 'bob@gmail.com', subject: 's' }, members)).toBe(false);
  });
});
