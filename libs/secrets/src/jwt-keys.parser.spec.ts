import { generateKeyPairSync } from 'node:crypto';
import { parseJwtPublicKeys } from './jwt-keys.parser';

const pem = (key: { export(o: { type: 'spki'; format: 'pem' }): string | Buffer }): string =>
  key.export({ type: 'spki', format: 'pem' }).toString();

describe('parseJwtPublicKeys', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;

  it('refuses a kid listed twice: the second key would replace the first without a word', () => {
    const text = `{"k1": ${JSON.stringify(pem(rsa))},\n"k1": ${JSON.stringify(pem(ec))}}`;
    expect(() => parseJwtPublicKeys(text, 'jwt-public-keys')).toThrow(/a key appears twice in one object \(line 2, column 1\)/);
  });

  it('pins RS256 to RSA keys and ES256 to P-256 keys', () => {
    const keys = parseJwtPublicKeys(JSON.stringify({ r1: pem(rsa), e1: pem(ec) }), 'jwt-public-keys');
    expect(keys.get('r1')?.alg).toBe('RS256');
    expect(keys.get('e1')?.alg).toBe('ES256');
  });

  it.each([
    ['weak RSA', () => pem(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey), 'unsupported key'],
    ['P-384', () => pem(generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey), 'unsupported key'],
    ['Ed25519', () => pem(generateKeyPairSync('ed25519').publicKey), 'unsupported key'],
    ['garbage', () => '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----', 'not a PEM public key'],
    // Node would derive the public key from these; the signing key must not live in this secret.
    [
      'PKCS#8 private',
      () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      'is a PRIVATE key',
    ],
    [
      'SEC1 EC private',
      () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'sec1', format: 'pem' }).toString(),
      'is a PRIVATE key',
    ],
  ])('rejects a %s key naming its kid', (_name, make, expected) => {
    expect(() => parseJwtPublicKeys(JSON.stringify({ k1: make() }), 'jwt-public-keys')).toThrow(new RegExp(`k1: ${expected}`));
  });

  it('accepts a kid in standard base64 with its padding, as Amazon Cognito names its keys', () => {
    const kid = 'vyVQH7UMjwYboVvyFf+zd4KHZfgc+RtmU/A2vHhgITI=';
    expect(parseJwtPublicKeys(JSON.stringify({ [kid]: pem(rsa) }), 'jwt-public-keys').get(kid)?.alg).toBe('RS256');
  });

  it('rejects hostile kids, non-objects and empty sets', () => {
    for (const kid of ['../../etc/passwd', 'keys/../admin', "' OR 1=1--", 'k'.repeat(129)])
      expect(() => parseJwtPublicKeys(JSON.stringify({ [kid]: pem(rsa) }), 's')).toThrow(/kid at index 0/);
    expect(() => parseJwtPublicKeys('["x"]', 's')).toThrow(/must be a JSON object/);
    expect(() => parseJwtPublicKeys('{}', 's')).toThrow(/no keys/);
  });

  it('binds a key given as {"pem", "issuer"} to its issuer or issuers; a plain PEM signs for every issuer', () => {
    const keys = parseJwtPublicKeys(
      JSON.stringify({
        one: { pem: pem(rsa), issuer: 'https://a.example' },
        two: { pem: pem(ec), issuer: ['https://a.example', 'https://b.example'] },
        any: pem(rsa),
      }),
      'jwt-public-keys',
    );
    expect([...(keys.get('one')?.issuers ?? [])]).toEqual(['https://a.example']);
    expect(keys.get('two')).toMatchObject({ alg: 'ES256', issuers: new Set(['https://a.example', 'https://b.example']) });
    expect(keys.get('any')?.issuers).toBeUndefined();
  });

  it.each([
    [{ pem: 'x' }, /k1: "issuer" must be an issuer/],
    [{ pem: 'x', issuer: '' }, /k1: "issuer" must be an issuer/],
    [{ pem: 'x', issuer: [] }, /k1: "issuer" must be an issuer/],
    [{ pem: 'x', issuer: [' https://a.example'] }, /k1: "issuer" must be an issuer/],
    [{ pem: 'x', issuer: ['https://a.example', 7] }, /k1: "issuer" must be an issuer/],
    [{ issuer: 'https://a.example' }, /k1: "pem" must be a PEM string/],
    [{ pem: 'x', issuer: 'https://a.example', iss: 'https://b.example' }, /k1: unknown field "iss"/],
    [['x'], /k1: must be a PEM string, or \{"pem"/],
  ])('refuses the key entry %j, naming the kid and the problem', (entry, expected) => {
    expect(() => parseJwtPublicKeys(JSON.stringify({ k1: entry }), 'jwt-public-keys')).toThrow(expected);
  });

  it('checks the PEM of a bound key as it checks a plain one', () => {
    const priv = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'sec1', format: 'pem' }).toString();
    expect(() => parseJwtPublicKeys(JSON.stringify({ k1: { pem: priv, issuer: 'https://a.example' } }), 's')).toThrow(
      /k1: is a PRIVATE key/,
    );
  });

  it('accepts an empty set only when told remote JWKS provide the keys', () => {
    expect(parseJwtPublicKeys('{}', 's', { allowEmpty: true }).size).toBe(0);
    expect(() => parseJwtPublicKeys('{"k1": 42}', 's', { allowEmpty: true })).toThrow(/k1: must be a PEM string, or/);
  });
});
