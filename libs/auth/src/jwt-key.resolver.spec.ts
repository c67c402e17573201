import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { GatewayConfig } from '@keygate/config';
import type { JsonLogger } from '@keygate/observability';
import type { SecretsService } from '@keygate/secrets';
import { JwtKeyResolver } from './jwt-key.resolver';

describe('JwtKeyResolver', () => {
  const bound = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const idp = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const STATIC_ISSUER = 'static-issuer';
  /** Accepted, without a JWKS of its own (the JWKS URL lives under the IdP's issuer alone). */
  const OTHER_ISSUER = 'other-issuer';
  let server: Server;
  let idpIssuer = '';

  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [{ ...idp.publicKey.export({ format: 'jwk' }), kid: 'key-1', alg: 'RS256', use: 'sig' }] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    idpIssuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  /** A resolver with the static key `key-1` bound to STATIC_ISSUER, and the IdP's JWKS (also a `key-1`) under its issuer. */
  function resolver(): JwtKeyResolver {
    const config = {
      jwt: {
        issuers: [STATIC_ISSUER, idpIssuer, OTHER_ISSUER],
        jwksUrls: [`${idpIssuer}/.well-known/jwks.json`],
        jwks: { timeoutMs: 2_000, ttlMs: 60_000, cooldownMs: 0 },
      },
    } as unknown as GatewayConfig;
    const jwtKeys = new Map([['key-1', { kid: 'key-1', key: bound.publicKey, alg: 'RS256', issuers: new Set([STATIC_ISSUER]) }]]);
    const secrets = { current: { jwtKeys } } as unknown as SecretsService;
    return new JwtKeyResolver(config, secrets, { write: jest.fn() } as unknown as JsonLogger);
  }

  const token = (key: KeyObject, iss: string): string => jwt.sign({ iss, sub: 'u' }, key, { algorithm: 'RS256', keyid: 'key-1' });

  it('takes a static key bound to the token issuer', async () => {
    expect((await resolver().keyFor(token(bound.privateKey, STATIC_ISSUER))).key).toBe(bound.publicKey);
  });

  it('looks a token of another issuer up in that issuer’s JWKS when a static key of the same kid is bound elsewhere', async () => {
    const { key, jwks } = await resolver().keyFor(token(idp.privateKey, idpIssuer));
    expect(key.equals(idp.publicKey)).toBe(true);
    expect(jwks).toBeDefined();
  });

  it('refuses a token of an issuer with no key of that kid, saying the static key does not sign for it', async () => {
    await expect(resolver().keyFor(token(bound.privateKey, OTHER_ISSUER))).rejects.toMatchObject({
      message: 'the token issuer is not one this key signs for',
    });
  });
});
