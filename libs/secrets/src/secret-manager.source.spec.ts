import { createHash } from 'node:crypto';
import { SecretManagerSource, type SecretManagerSourceOptions } from './secret-manager.source';
import { SecretSourceError, type SecretKind } from './secrets-source';
import { FakeSecretManagerServer } from './testing/fake-secret-manager.server';

const NAMES = { productKeys: 'openai-api-keys', jwtPublicKeys: 'jwt-public-keys', hmacSecrets: 'hmac-secrets' };
const LATEST = { productKeys: 'latest', jwtPublicKeys: 'latest', hmacSecrets: 'latest' };

/** The real client library against a local gRPC server built from the library's own protos. */
describe('SecretManagerSource', () => {
  let fake: FakeSecretManagerServer;
  const sources: SecretManagerSource[] = [];

  function source(overrides: Partial<SecretManagerSourceOptions> = {}): SecretManagerSource {
    const created = new SecretManagerSource({
      project: 'test',
      names: NAMES,
      versions: LATEST,
      endpoint: fake.endpoint,
      callTimeoutMs: 2_000,
      ...overrides,
    });
    sources.push(created);
    return created;
  }

  async function failureOf(promise: Promise<unknown>): Promise<SecretSourceError> {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SecretSourceError);
    return error as SecretSourceError;
  }

  beforeEach(async () => {
    fake = await FakeSecretManagerServer.start();
  });

  afterEach(async () => {
    await Promise.all(sources.splice(0).map((s) => s.close()));
    await fake.stop();
  });

  it('resolves latest to the newest version without reading it, then reads that version', async () => {
    fake.addVersion('openai-api-keys', '{"v": 1}');
    fake.addVersion('openai-api-keys', '{"v": 2}');
    const sm = source();
    const version = await sm.resolve('productKeys');
    expect(version).toEqual({
      name: fake.versionName('openai-api-keys', 2),
      state: 'enabled',
      resolvedBy: 'metadata',
      // Its creation time: a secret created again reuses the name versions/1 for other content.
      revision: expect.stringMatching(/^created:\d+\.\d+$/) as unknown,
    });
    expect(fake.callsOf('AccessSecretVersion')).toHaveLength(0);
    expect(fake.callsOf('GetSecretVersion')[0]?.name).toBe('projects/test/secrets/openai-api-keys/versions/latest');
    await expect(sm.read('productKeys', version)).resolves.toBe('{"v": 2}');
    expect(fake.callsOf('AccessSecretVersion').map((c) => c.name)).toEqual([fake.versionName('openai-api-keys', 2)]);
  });

  it('reads a pinned version number or alias instead of latest', async () => {
    for (const v of [1, 2, 3]) fake.addVersion('jwt-public-keys', `{"v": ${v}}`);
    fake.setAlias('jwt-public-keys', 'stable', 2);
    const byNumber = source({ versions: { ...LATEST, jwtPublicKeys: '1' } });
    const byAlias = source({ versions: { ...LATEST, jwtPublicKeys: 'stable' } });
    expect((await byNumber.resolve('jwtPublicKeys')).name).toBe(fake.versionName('jwt-public-keys', 1));
    const aliased = await byAlias.resolve('jwtPublicKeys');
    expect(aliased.name).toBe(fake.versionName('jwt-public-keys', 2));
    await expect(byAlias.read('jwtPublicKeys', aliased)).resolves.toBe('{"v": 2}');
  });

  it('reports a disabled latest version by its state, and refuses to read it', async () => {
    fake.addVersion('hmac-secrets', '{}');
    fake.addVersion('hmac-secrets', '{}');
    fake.setState('hmac-secrets', 2, 'DISABLED');
    const sm = source();
    const version = await sm.resolve('hmacSecrets');
    expect(version.state).toBe('disabled');
    const error = await failureOf(sm.read('hmacSecrets', version));
    expect(error.failure).toBe('not_enabled');
    expect(error.transient).toBe(false);
  });

  describe('with roles/secretmanager.secretAccessor only (no secretmanager.versions.get)', () => {
    it('resolves by reading the payload, hands that payload to read, and stops asking for metadata', async () => {
      fake.addVersion('openai-api-keys', '{"v": 1}');
      fake.addVersion('openai-api-keys', '{"v": 2}');
      fake.denyMetadata('openai-api-keys');
      const sm = source();
      const version = await sm.resolve('productKeys');
      expect(version).toEqual({
        name: fake.versionName('openai-api-keys', 2),
        state: 'enabled',
        resolvedBy: 'payload',
        revision: `sha256:${createHash('sha256').update('{"v": 2}').digest('hex')}`,
      });
      await expect(sm.read('productKeys', version)).resolves.toBe('{"v": 2}');
      expect(fake.callsOf('AccessSecretVersion')).toHaveLength(1);
      await sm.resolve('productKeys');
      expect(fake.callsOf('GetSecretVersion')).toHaveLength(1);
      expect(fake.callsOf('AccessSecretVersion').map((c) => c.name)).toEqual([
        'projects/test/secrets/openai-api-keys/versions/latest',
        'projects/test/secrets/openai-api-keys/versions/latest',
      ]);
    });

    it('reports a disabled latest version as not enabled', async () => {
      fake.addVersion('openai-api-keys', '{}', 'DISABLED');
      fake.denyMetadata('openai-api-keys');
      expect((await failureOf(source().resolve('productKeys'))).failure).toBe('not_enabled');
    });

    it('still reports permission denied when the payload is denied too', async () => {
      fake.addVersion('openai-api-keys', '{}');
      fake.deny('openai-api-keys');
      expect((await failureOf(source().resolve('productKeys'))).failure).toBe('permission_denied');
      expect(fake.callsOf('AccessSecretVersion')).toHaveLength(1);
    });
  });

  it.each<[string, string, (f: FakeSecretManagerServer) => void, SecretSourceError['failure']]>([
    ['a missing secret', 'latest', () => undefined, 'not_found'],
    ['a missing pinned version', '7', (f) => f.addVersion('openai-api-keys', '{}'), 'not_found'],
    ['a denied secret', 'latest', (f) => (f.addVersion('openai-api-keys', '{}'), f.deny('openai-api-keys')), 'permission_denied'],
    ['an outage', 'latest', (f) => (f.addVersion('openai-api-keys', '{}'), f.setOutage(true)), 'unavailable'],
  ])('classifies %s (version %s), naming the secret', async (_case, pinned, arrange, failure) => {
    arrange(fake);
    const versions: Record<SecretKind, string> = { ...LATEST, productKeys: pinned };
    const error = await failureOf(source({ versions }).resolve('productKeys'));
    expect(error.failure).toBe(failure);
    expect(error.label).toBe('openai-api-keys');
    expect(error.message).toContain('openai-api-keys');
  });

  it('reports a server that went away as unavailable, quickly', async () => {
    fake.addVersion('openai-api-keys', '{}');
    const sm = source();
    await sm.resolve('productKeys');
    await fake.stop();
    const started = Date.now();
    const error = await failureOf(sm.resolve('productKeys'));
    expect(error.failure).toBe('unavailable');
    expect(error.transient).toBe(true);
    expect(Date.now() - started).toBeLessThan(2_500);
  });

  it('refuses a payload that is not UTF-8 without quoting it', async () => {
    fake.addVersion('openai-api-keys', Buffer.from([0x7b, 0xff, 0xfe, 0x7d]));
    const sm = source();
    const error = await failureOf(sm.read('productKeys', await sm.resolve('productKeys')));
    expect(error.failure).toBe('failed');
    expect(error.message).toContain('not UTF-8');
  });

  it('drops a byte-order mark an editor may have added', async () => {
    fake.addVersion('openai-api-keys', '\uFEFF{"a": "b"}');
    const sm = source();
    await expect(sm.read('productKeys', await sm.resolve('productKeys'))).resolves.toBe('{"a": "b"}');
  });
});
