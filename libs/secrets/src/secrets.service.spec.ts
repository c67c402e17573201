import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadGatewayConfig, type GatewayConfig } from '@keygate/config';
import { JsonLogger } from '@keygate/observability';
import { secretsSourceFor } from './secrets.module';
import { SecretsService, WARNING_LIST_MAX, listed } from './secrets.service';
import { FakeSecretManagerServer } from './testing/fake-secret-manager.server';

/**
 * The secrets service with its real sources: the official Secret Manager client against a local
 * gRPC server (see FakeSecretManagerServer), and the environment.
 */

const ISSUER = 'https://idp.example.com';
const TIMING = { callTimeoutMs: 2_000, bootTimeoutMs: 1_500 };
const PROVIDER_KEYS = ['sk-rotation-one-9f3b1c7d', 'sk-rotation-two-2a6e0d4f', 'sk-rotation-env-77aa01be'];
const HMAC_SECRETS = ['hmac-one-0123456789abcdef0123456789abcdef', 'hmac-two-fedcba9876543210fedcba9876543210'];

const rsa = (): KeyObject => generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
const KEY_A = rsa();
const KEY_B = rsa();
const pem = (key: KeyObject): string => key.export({ type: 'spki', format: 'pem' }).toString();
/** The base64 body lines of a PEM: what would leak if a key were printed. */
const pemBody = (key: KeyObject): string[] =>
  pem(key)
    .split('\n')
    .filter((l) => l && !l.startsWith('-----'));

const products = (key: string): string => JSON.stringify({ demo: { providers: { openai: { api_key: key, models: ['gpt-4o'] } } } });
const jwtKeys = (keys: Record<string, KeyObject>): string =>
  JSON.stringify(Object.fromEntries(Object.entries(keys).map(([kid, k]) => [kid, pem(k)])));
const hmac = (secret: string): string => JSON.stringify({ 'batch-job': { secret, product: 'demo' } });

const SECRET_VALUES = [...PROVIDER_KEYS, ...HMAC_SECRETS, ...pemBody(KEY_A), ...pemBody(KEY_B)];

describe('SecretsService', () => {
  let fake: FakeSecretManagerServer;
  let lines: string[];
  let logger: JsonLogger;
  const services: SecretsService[] = [];

  const logged = (): Array<Record<string, unknown>> => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const loggedAt = (severity: string): Array<Record<string, unknown>> => logged().filter((l) => l.severity === severity);

  function configFor(env: Record<string, string> = {}): GatewayConfig {
    return loadGatewayConfig({
      USE_SECRET_MANAGER: 'true',
      GOOGLE_CLOUD_PROJECT: 'test',
      API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: fake.endpoint,
      API_KEY_SERVER_JWT_ISSUER: ISSUER,
      API_KEY_SERVER_SECRET_REFRESH_SECONDS: '1',
      ...env,
    });
  }

  async function boot(config = configFor()): Promise<SecretsService> {
    const service = await SecretsService.create(config, secretsSourceFor(config, TIMING), logger, TIMING);
    services.push(service);
    return service;
  }

  async function bootFailure(config = configFor()): Promise<string> {
    const error = await boot(config).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    for (const value of SECRET_VALUES) expect(message).not.toContain(value);
    return message;
  }

  function seed(): void {
    fake.addVersion('openai-api-keys', products(PROVIDER_KEYS[0]));
    fake.addVersion('jwt-public-keys', jwtKeys({ 'kid-a': KEY_A }));
    fake.addVersion('hmac-secrets', hmac(HMAC_SECRETS[0]));
  }

  beforeEach(async () => {
    fake = await FakeSecretManagerServer.start();
    lines = [];
    logger = new JsonLogger('debug', undefined, (line) => lines.push(line));
  });

  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.onApplicationShutdown()));
    await fake.stop();
    // Whatever happened in the test, no log line carries a secret value.
    const all = lines.join('');
    for (const value of SECRET_VALUES) expect(all).not.toContain(value);
  });

  describe('boot', () => {
    it('loads the three secrets from Secret Manager and logs their versions', async () => {
      seed();
      const service = await boot();
      expect(service.loaded).toBe(true);
      expect(service.product('demo')?.route('gpt-4o')?.apiKey).toBe(PROVIDER_KEYS[0]);
      expect([...service.current.jwtKeys.keys()]).toEqual(['kid-a']);
      expect(service.current.hmacClients.get('batch-job')?.secret.toString()).toBe(HMAC_SECRETS[0]);
      expect(service.status().map((s) => [s.kind, s.name, s.origin, s.version])).toEqual([
        ['productKeys', 'openai-api-keys', 'secret-manager', fake.versionName('openai-api-keys', 1)],
        ['jwtPublicKeys', 'jwt-public-keys', 'secret-manager', fake.versionName('jwt-public-keys', 1)],
        ['hmacSecrets', 'hmac-secrets', 'secret-manager', fake.versionName('hmac-secrets', 1)],
      ]);
      const [line] = logged().filter((l) => l.message === 'secrets loaded');
      expect(line).toMatchObject({ severity: 'INFO', refreshSeconds: 1 });
      expect(line?.secrets).toHaveLength(3);
    });

    it('warns of static keys bound only to issuers the gateway does not accept (they verify nothing), naming their kids', async () => {
      fake.addVersion('openai-api-keys', products(PROVIDER_KEYS[0]));
      fake.addVersion(
        'jwt-public-keys',
        JSON.stringify({
          'kid-a': { pem: pem(KEY_A), issuer: [ISSUER, 'https://typo.example.com'] },
          'kid-b': { pem: pem(KEY_B), issuer: 'https://idp.example.co' },
        }),
      );
      fake.addVersion('hmac-secrets', hmac(HMAC_SECRETS[0]));
      await boot();
      expect(loggedAt('WARNING').filter((l) => /JWT keys bound only to issuers/.test(String(l.message)))).toEqual([
        expect.objectContaining({ keys: ['kid-b'] }),
      ]);
    });

    it('does not read the JWT key secret when JWT is off (Secret Manager without an issuer: HMAC or IAP only)', async () => {
      fake.addVersion('openai-api-keys', products(PROVIDER_KEYS[0]));
      fake.addVersion('hmac-secrets', hmac(HMAC_SECRETS[0]));
      // No jwt-public-keys secret exists at all.
      const service = await boot(configFor({ API_KEY_SERVER_JWT_ISSUER: '' }));
      expect(service.loaded).toBe(true);
      expect(service.current.jwtKeys.size).toBe(0);
      expect(service.current.hmacClients.has('batch-job')).toBe(true);
      expect(
        fake
          .callsOf('GetSecretVersion')
          .concat(fake.callsOf('AccessSecretVersion'))
          .filter((c) => c.name.includes('jwt-public-keys')),
      ).toEqual([]);
      const [line] = logged().filter((l) => l.message === 'secrets loaded');
      expect((line?.secrets as Array<{ kind: string }>).map((s) => s.kind)).toEqual(['productKeys', 'hmacSecrets']);
    });

    it('reads the secrets under the names the _NAME variables give', async () => {
      fake.addVersion('prod-provider-keys', products(PROVIDER_KEYS[0]));
      fake.addVersion('prod-jwt', jwtKeys({ 'kid-a': KEY_A }));
      fake.addVersion('prod-hmac', '{}');
      const service = await boot(
        configFor({
          API_KEY_SERVER_SECRET_PRODUCT_KEYS_NAME: 'prod-provider-keys',
          API_KEY_SERVER_SECRET_JWT_PUBLIC_KEYS_NAME: 'prod-jwt',
          API_KEY_SERVER_SECRET_HMAC_SECRETS_NAME: 'prod-hmac',
        }),
      );
      expect(service.status().map((s) => s.name)).toEqual(['prod-provider-keys', 'prod-jwt', 'prod-hmac']);
      expect(service.current.hmacClients.size).toBe(0);
    });

    it('stops on a missing secret, naming it and the variable that renames it', async () => {
      fake.addVersion('openai-api-keys', products(PROVIDER_KEYS[0]));
      fake.addVersion('jwt-public-keys', jwtKeys({ 'kid-a': KEY_A }));
      const message = await bootFailure();
      expect(message).toMatch(/^Secrets could not be loaded/);
      expect(message).toContain('Secret Manager secret hmac-secrets');
      expect(message).toContain('does not exist');
      expect(message).toContain('API_KEY_SERVER_SECRET_HMAC_SECRETS_NAME');
    });

    it('stops on a malformed secret, naming the secret, its version and the JSON path, never the value', async () => {
      seed();
      fake.addVersion(
        'openai-api-keys',
        JSON.stringify({ demo: { providers: { openai: { api_key: PROVIDER_KEYS[1], models: 'gpt-4o' } } } }),
      );
      const message = await bootFailure();
      expect(message).toContain('Secret Manager secret openai-api-keys (version 2)');
      expect(message).toContain('demo.providers.openai.models');
    });

    it('reports every broken secret at once', async () => {
      fake.addVersion('openai-api-keys', `not json ${PROVIDER_KEYS[0]}`);
      fake.addVersion('jwt-public-keys', jwtKeys({ 'kid-a': KEY_A }));
      fake.addVersion('jwt-public-keys', jwtKeys({ 'kid-a': KEY_A }));
      fake.setState('jwt-public-keys', 2, 'DISABLED');
      fake.addVersion('hmac-secrets', hmac(HMAC_SECRETS[0]));
      fake.deny('hmac-secrets');
      const message = await bootFailure();
      expect(message).toContain('openai-api-keys (version 1): not valid JSON');
      expect(message).toContain('jwt-public-keys (version 2): the version is disabled');
      expect(message).toContain('hmac-secrets: permission denied');
      expect(message).toContain('roles/secretmanager.secretAccessor');
    });

    it('retries an unreachable Secret Manager until the boot deadline, then stops naming the secrets', async () => {
      seed();
      fake.setOutage(true);
      const started = Date.now();
      const message = await bootFailure();
      expect(Date.now() - started).toBeGreaterThanOrEqual(TIMING.bootTimeoutMs - 500);
      expect(message).toContain('Secret Manager secret openai-api-keys: Secret Manager is unreachable');
      expect(fake.callsOf('GetSecretVersion', 'openai-api-keys').length).toBeGreaterThan(1);
      // Said at the first failure, once a secret, not only when the deadline has passed.
      const retrying = logged().filter((l) => l.severity === 'WARNING' && String(l.message).includes('retrying until the boot deadline'));
      expect(retrying.map((l) => l.name).sort()).toEqual(['hmac-secrets', 'jwt-public-keys', 'openai-api-keys']);
    });

    it('rides out a short outage at boot', async () => {
      seed();
      fake.setOutage(true);
      setTimeout(() => fake.setOutage(false), 400);
      const service = await boot();
      expect(service.loaded).toBe(true);
    });

    it('accepts an empty JWT key set when remote JWKS provide the keys', async () => {
      seed();
      fake.addVersion('jwt-public-keys', '{}');
      await expect(bootFailure()).resolves.toContain('jwt-public-keys (version 2): no keys');
      const service = await boot(configFor({ API_KEY_SERVER_JWKS_URLS: `${ISSUER}/.well-known/jwks.json` }));
      expect(service.current.jwtKeys.size).toBe(0);
    });
  });

  describe('environment wins', () => {
    it('uses a set variable instead of its secret, never asks Secret Manager for it, and never refreshes it', async () => {
      seed();
      const service = await boot(configFor({ API_KEY_SERVER_PRODUCT_KEYS: products(PROVIDER_KEYS[2]) }));
      expect(service.product('demo')?.route('gpt-4o')?.apiKey).toBe(PROVIDER_KEYS[2]);
      expect(service.status()[0]).toMatchObject({ name: 'API_KEY_SERVER_PRODUCT_KEYS', origin: 'environment' });
      fake.addVersion('openai-api-keys', products(PROVIDER_KEYS[1]));
      await service.refreshNow();
      expect(service.product('demo')?.route('gpt-4o')?.apiKey).toBe(PROVIDER_KEYS[2]);
      expect(fake.calls.filter((c) => c.name.includes('/openai-api-keys/'))).toEqual([]);
      expect(service.current.jwtKeys.has('kid-a')).toBe(true);
    });

    it('names the variable when the environment value is malformed', async () => {
      seed();
      const message = await bootFailure(configFor({ API_KEY_SERVER_HMAC_SECRETS: hmac('too-short') }));
      expect(message).toContain('API_KEY_SERVER_HMAC_SECRETS: batch-job.secret: must be at least 32 characters');
    });

    it('needs no Secret Manager when it is off', async () => {
      await fake.stop();
      const config = loadGatewayConfig({
        API_KEY_SERVER_PRODUCT_KEYS: products(PROVIDER_KEYS[2]),
        API_KEY_SERVER_JWT_PUBLIC_KEYS: jwtKeys({ 'kid-a': KEY_A }),
        API_KEY_SERVER_JWT_ISSUER: ISSUER,
      });
      const service = await boot(config);
      expect(service.status().map((s) => s.origin)).toEqual(['environment', 'environment', undefined]);
      expect(service.current.hmacClients.size).toBe(0);
      service.start();
      await service.refreshNow();
      expect(service.status()[0]?.refreshes.unchanged).toBe(0);
    });
  });

  describe('pinned versions', () => {
    /** `secretManager.versions` is filled from API_KEY_SERVER_SECRET_*_VERSION by the config loader. */
    function pinned(versions: Record<string, string>): GatewayConfig {
      const config = configFor();
      return {
        ...config,
        secretManager: {
          ...config.secretManager,
          versions: { productKeys: 'latest', jwtPublicKeys: 'latest', hmacSecrets: 'latest', ...versions },
        },
      };
    }

    it('reads the pinned version, not latest, and ignores new versions', async () => {
      seed();
      fake.addVersion('openai-api-keys', products(PROVIDER_KEYS[1]));
      const service = await boot(pinned({ productKeys: '1' }));
      expect(service.product('demo')?.route('gpt-4o')?.apiKey).toBe(PROVIDER_KEYS[0]);
      fake.addVersion('openai-api-keys', products(PROVIDER_KEYS[2]));
      await service.refreshNow();
      expect(service.product('demo')?.route('gpt-4o')?.apiKey).toBe(PROVIDER_KEYS[0]);
      expect(fake.callsOf('GetSecretVersion', 'openai-api-keys').every((c) => c.name.endsWith('/versions/1'))).toBe(true);
    });

    it('keeps a pinned version that gets disabled, and warns once that a restart would fail', async () => {
      seed();
      const service = await boot(pinned({ hmacSecrets: '1' }));
      fake.setState('hmac-secrets', 1, 'DISABLED');
      await service.refreshNow();
      await service.refreshNow();
      expect(service.current.hmacClients.get('batch-job')?.secret.toString()).toBe(HMAC_SECRETS[0]);
      expect(loggedAt('WARNING')).toEqual([
        expect.objectContaining({ secretName: 'hmac-secrets', state: 'disabled', message: expect.stringContaining('restart') as unknown }),
      ]);
    });

    it('follows a version alias when it is moved', async () => {
      seed();
      fake.addVersion('jwt-public-keys', jwtKeys({ 'kid-b': KEY_B }));
      fake.setAlias('jwt-public-keys', 'stable', 1);
      const service = await boot(pinned({ jwtPublicKeys: 'stable' }));
      expect([...service.current.jwtKeys.keys()]).toEqual(['kid-a']);
      fake.setAlias('jwt-public-keys', 'stable', 2);
      await service.refreshNow();
      expect([...service.current.jwtKeys.keys()]).toEqual(['kid-b']);
    });
  });

  describe('rotation', () => {
    it('puts a new JWT key set in force: a new kid appears, a removed kid disappears', async () => {
      seed();
      const service = await boot();
      fake.addVersion('jwt-public-keys', jwtKeys({ 'kid-a': KEY_A, 'kid-b': KEY_B }));
      await service.refreshNow();
      expect([...service.current.jwtKeys.keys()]).toEqual(['kid-a', 'kid-b']);
      fake.addVersion('jwt-public-keys', jwtKeys({ 'kid-b': KEY_B }));
      await service.refreshNow();
      expect([...service.current.jwtKeys.keys()]).toEqual(['kid-b']);
      expect(service.status()[1]).toMatchObject({ version: fake.versionName('jwt-public-keys', 3), refreshes: { rotated: 2 } });
    });

    it('replaces the snapshot whole: a request holding the old one keeps the old provider key', async () => {
      seed();
      const service = await boot();
      const inFlight = service.current;
      fake.addVersion('openai-api-keys', products(PROVIDER_KEYS[1]));
      await service.refreshNow();
      expect(service.current).not.toBe(inFlight);
      expect(inFlight.products.get('demo')?.route('gpt-4o')?.apiKey).toBe(PROVIDER_KEYS[0]);
      expect(service.product('demo')?.route('gpt-4o')?.apiKey).toBe(PROVIDER_KEYS[1]);
      // The secrets that did not change are the same objects in the new snapshot.
      expect(service.current.jwtKeys).toBe(inFlight.jwtKeys);
    });

    it('rotates the HMAC clients', async () => {
      seed();
      const service = await boot();
      fake.addVersion('hmac-secrets', hmac(HMAC_SECRETS[1]));
      await service.refreshNow();
      expect(service.current.hmacClients.get('batch-job')?.secret.toString()).toBe(HMAC_SECRETS[1]);
      const noClient = (): unknown[] => logged().filter((l) => l.severity === 'WARNING' && String(l.message).includes('lists no client'));
      expect(noClient()).toHaveLength(0);
      // A version with no client at all is valid, and takes effect, but is not routine.
      fake.addVersion('hmac-secrets', '{}');
      await service.refreshNow();
      expect(service.current.hmacClients.size).toBe(0);
      expect(noClient()).toEqual([expect.objectContaining({ clientsBefore: 1, version: expect.stringContaining('3') })]);
    });

    it('warns, naming the client ids and never the secret, when HMAC clients share a secret (at boot and after a rotation)', async () => {
      const shared = (): Array<Record<string, unknown>> =>
        logged().filter((l) => l.severity === 'WARNING' && String(l.message).includes('share a secret'));
      seed();
      await boot();
      expect(shared()).toHaveLength(0);
      fake.addVersion(
        'hmac-secrets',
        JSON.stringify({
          'batch-job': { secret: HMAC_SECRETS[0], product: 'demo' },
          nightly: { secret: HMAC_SECRETS[1], product: 'demo' },
          'etl-b': { secret: HMAC_SECRETS[0], product: 'other' },
          'etl-a': { secret: HMAC_SECRETS[0], product: 'demo' },
        }),
      );
      const service = await boot();
      expect(service.current.hmacClients.size).toBe(4);
      expect(shared()).toEqual([expect.objectContaining({ clients: [['batch-job', 'etl-a', 'etl-b']] })]);
      expect(JSON.stringify(shared())).not.toContain(HMAC_SECRETS[0]);
      fake.addVersion(
        'hmac-secrets',
        JSON.stringify({ a: { secret: HMAC_SECRETS[1], product: 'demo' }, b: { secret: HMAC_SECRETS[1], product: 'demo' } }),
      );
      await service.refreshNow();
      expect(shared()).toHaveLength(2);
      expect(shared()[1]).toMatchObject({ clients: [['a', 'b']] });
    });

    it('warns about policy entries and HMAC clients for products the keys do not have, and fallbacks they do not serve, at boot and after a rotation', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'kg-policy-'));
      const policyFile = join(dir, 'policy.yaml');
      writeFileSync(
        policyFile,
        'products:\n  demo: {limits: {requests_per_second: 5}, fallbacks: {gpt-4o: [claude-nope], gpt-4o-minii: [gpt-4o]}}\n  dmeo: {limits: {requests_per_second: 50}}\n',
      );
      try {
        seed();
        const service = await boot(configFor({ API_KEY_SERVER_POLICY_FILE: policyFile }));
        const policyLines = (): Array<Record<string, unknown>> =>
          loggedAt('WARNING').filter((l) => /policy file has settings for products/.test(String(l.message)));
        expect(policyLines()).toEqual([expect.objectContaining({ products: ['dmeo'] })]);
        // A fallback the product cannot serve: said once here, not on every request that would skip it.
        expect(loggedAt('WARNING').filter((l) => /fallback models/.test(String(l.message)))).toEqual([
          expect.objectContaining({ fallbacks: ['demo: gpt-4o -> claude-nope'] }),
        ]);
        // Fallbacks keyed by a model no product serves (a misspelt model): they never apply.
        expect(loggedAt('WARNING').filter((l) => /fallbacks given for models no product serves/.test(String(l.message)))).toEqual([
          expect.objectContaining({ models: ['gpt-4o-minii'] }),
        ]);
        expect(loggedAt('WARNING').filter((l) => /HMAC clients/.test(String(l.message)))).toHaveLength(0);
        // A rotation brings an HMAC client of a product the keys do not have.
        fake.addVersion('hmac-secrets', JSON.stringify({ 'batch-job': { secret: HMAC_SECRETS[1], product: 'demo-typo' } }));
        await service.refreshNow();
        expect(loggedAt('WARNING').filter((l) => /HMAC clients/.test(String(l.message)))).toEqual([
          expect.objectContaining({ clients: ['batch-job'] }),
        ]);
        expect(policyLines()).toHaveLength(2);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('lists a short list whole, with nothing left out', () => {
      expect(listed('keys', ['a', 'b'])).toEqual({ keys: ['a', 'b'] });
      expect(WARNING_LIST_MAX).toBe(50);
    });

    it('names at most 50 entries in one such WARNING, and how many it left out', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'kg-policy-'));
      const policyFile = join(dir, 'policy.yaml');
      const typos = Array.from({ length: 60 }, (_, i) => `team-${String(i).padStart(2, '0')}`);
      writeFileSync(policyFile, `products:\n${typos.map((name) => `  ${name}: {limits: {requests_per_second: 5}}\n`).join('')}`);
      try {
        seed();
        await boot(configFor({ API_KEY_SERVER_POLICY_FILE: policyFile }));
        const [line] = loggedAt('WARNING').filter((l) => /policy file has settings for products/.test(String(l.message)));
        expect(line.products).toEqual(typos.slice(0, WARNING_LIST_MAX));
        expect(line.products_not_listed).toBe(60 - WARNING_LIST_MAX);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('reports a new version it cannot read once, keeps the old one, and says "readable again" only once it is read', async () => {
      seed();
      const service = await boot();
      fake.addVersion('hmac-secrets', hmac(HMAC_SECRETS[1]));
      fake.denyAccess('hmac-secrets');
      for (let i = 0; i < 3; i++) await service.refreshNow();
      expect(service.current.hmacClients.get('batch-job')?.secret.toString()).toBe(HMAC_SECRETS[0]);
      const about = (severity: string): Array<Record<string, unknown>> => loggedAt(severity).filter((l) => l.secretName === 'hmac-secrets');
      expect(about('ERROR')).toHaveLength(1);
      expect(about('INFO').filter((l) => /readable again/.test(String(l.message)))).toHaveLength(0);
      fake.denyAccess('hmac-secrets', false);
      await service.refreshNow();
      expect(service.current.hmacClients.get('batch-job')?.secret.toString()).toBe(HMAC_SECRETS[1]);
      expect(about('INFO').filter((l) => /readable again/.test(String(l.message)))).toHaveLength(1);
      expect(about('ERROR')).toHaveLength(1);
    });

    it('reads content only when the version changed', async () => {
      seed();
      const service = await boot();
      const reads = (): number => fake.callsOf('AccessSecretVersion').length;
      expect(reads()).toBe(3);
      await service.refreshNow();
      await service.refreshNow();
      expect(reads()).toBe(3);
      expect(fake.callsOf('GetSecretVersion').length).toBe(9);
      fake.addVersion('hmac-secrets', hmac(HMAC_SECRETS[1]));
      await service.refreshNow();
      expect(
        fake
          .callsOf('AccessSecretVersion')
          .map((c) => c.name)
          .slice(3),
      ).toEqual([fake.versionName('hmac-secrets', 2)]);
      expect(service.status().map((s) => s.refreshes.unchanged)).toEqual([3, 3, 2]);
    });

    it('logs each rotation with the old and the new version', async () => {
      seed();
      const service = await boot();
      fake.addVersion('openai-api-keys', products(PROVIDER_KEYS[1]));
      await service.refreshNow();
      expect(loggedAt('INFO').filter((l) => String(l.message).startsWith('secret rotated'))).toEqual([
        expect.objectContaining({
          secretName: 'openai-api-keys',
          version: fake.versionName('openai-api-keys', 2),
          previousVersion: fake.versionName('openai-api-keys', 1),
        }),
      ]);
    });

    it('refreshes on its own every refreshSeconds once started, and stops when told', async () => {
      seed();
      const service = await boot();
      service.start();
      fake.addVersion('jwt-public-keys', jwtKeys({ 'kid-b': KEY_B }));
      const deadline = Date.now() + 2_500;
      while (!service.current.jwtKeys.has('kid-b') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(service.current.jwtKeys.has('kid-b')).toBe(true);
      await service.stop();
      const checks = fake.callsOf('GetSecretVersion').length;
      await new Promise((r) => setTimeout(r, 1_300));
      expect(fake.callsOf('GetSecretVersion').length).toBe(checks);
    });
  });

  describe('a bad new version', () => {
    it('is refused: the old version stays, an ERROR names the problems, the counter says so, and it is not read again', async () => {
      seed();
      const service = await boot();
      fake.addVersion('openai-api-keys', JSON.stringify({ demo: { providers: { openai: { api_key: PROVIDER_KEYS[1], models: [] } } } }));
      await service.refreshNow();
      expect(service.product('demo')?.route('gpt-4o')?.apiKey).toBe(PROVIDER_KEYS[0]);
      expect(loggedAt('ERROR')).toEqual([
        expect.objectContaining({
          message: expect.stringContaining('refused') as unknown,
          secretName: 'openai-api-keys',
          version: fake.versionName('openai-api-keys', 2),
          inForce: fake.versionName('openai-api-keys', 1),
          problems: expect.arrayContaining([expect.stringContaining('demo.providers.openai.models')]) as unknown,
        }),
      ]);
      expect(service.status()[0]).toMatchObject({ version: fake.versionName('openai-api-keys', 1), refreshes: { refused: 1, rotated: 0 } });
      await service.refreshNow();
      expect(loggedAt('ERROR')).toHaveLength(1);
      expect(fake.callsOf('AccessSecretVersion', 'openai-api-keys')).toHaveLength(2);
      // A fixed version after it is taken.
      fake.addVersion('openai-api-keys', products(PROVIDER_KEYS[1]));
      await service.refreshNow();
      expect(service.product('demo')?.route('gpt-4o')?.apiKey).toBe(PROVIDER_KEYS[1]);
    });

    it('of JWT keys is refused as a whole: no kid of it is accepted', async () => {
      seed();
      const service = await boot();
      fake.addVersion('jwt-public-keys', JSON.stringify({ 'kid-b': pem(KEY_B), 'kid-c': 'not a pem' }));
      await service.refreshNow();
      expect([...service.current.jwtKeys.keys()]).toEqual(['kid-a']);
      expect(service.status()[1]?.refreshes.refused).toBe(1);
    });

    it('that is disabled is not used: the old one stays with a WARNING', async () => {
      seed();
      const service = await boot();
      fake.addVersion('hmac-secrets', hmac(HMAC_SECRETS[1]), 'DISABLED');
      await service.refreshNow();
      expect(service.current.hmacClients.get('batch-job')?.secret.toString()).toBe(HMAC_SECRETS[0]);
      expect(loggedAt('WARNING')).toEqual([
        expect.objectContaining({ secretName: 'hmac-secrets', state: 'disabled', version: fake.versionName('hmac-secrets', 2) }),
      ]);
      expect(fake.callsOf('AccessSecretVersion', 'hmac-secrets')).toHaveLength(1);
    });
  });

  describe('with roles/secretmanager.secretAccessor only', () => {
    /** The identity may read payloads but not metadata (the least privilege the README grants). */
    function accessorOnly(): void {
      for (const secret of ['openai-api-keys', 'jwt-public-keys', 'hmac-secrets']) fake.denyMetadata(secret);
    }

    it('boots, says how versions are checked, and rotates', async () => {
      seed();
      accessorOnly();
      const service = await boot();
      const [line] = logged().filter((l) => l.message === 'secrets loaded');
      expect(line?.secrets).toEqual([
        expect.objectContaining({ name: 'openai-api-keys', checkedBy: 'payload' }),
        expect.objectContaining({ name: 'jwt-public-keys', checkedBy: 'payload' }),
        expect.objectContaining({ name: 'hmac-secrets', checkedBy: 'payload' }),
      ]);
      fake.addVersion('jwt-public-keys', jwtKeys({ 'kid-b': KEY_B }));
      await service.refreshNow();
      expect([...service.current.jwtKeys.keys()]).toEqual(['kid-b']);
      expect(service.status()[1]?.refreshes).toMatchObject({ rotated: 1, failed: 0 });
    });

    it('reads a secret deleted and created again, its version 1 told apart by its content', async () => {
      seed();
      accessorOnly();
      const service = await boot();
      fake.deleteSecret('hmac-secrets');
      fake.addVersion('hmac-secrets', hmac(HMAC_SECRETS[1]));
      accessorOnly();
      await service.refreshNow();
      expect(service.current.hmacClients.get('batch-job')?.secret.toString()).toBe(HMAC_SECRETS[1]);
      await service.refreshNow();
      expect(service.status()[2]?.refreshes).toMatchObject({ rotated: 1, unchanged: 1 });
    });

    it('refuses a bad version once, and keeps the old one while latest is disabled', async () => {
      seed();
      accessorOnly();
      const service = await boot();
      fake.addVersion('openai-api-keys', `{"demo": "${PROVIDER_KEYS[1]}"`);
      await service.refreshNow();
      await service.refreshNow();
      expect(loggedAt('ERROR')).toEqual([expect.objectContaining({ secretName: 'openai-api-keys', problems: ['not valid JSON'] })]);
      expect(service.status()[0]?.refreshes).toMatchObject({ refused: 1, unchanged: 1 });

      fake.addVersion('openai-api-keys', products(PROVIDER_KEYS[1]), 'DISABLED');
      await service.refreshNow();
      await service.refreshNow();
      expect(service.product('demo')?.route('gpt-4o')?.apiKey).toBe(PROVIDER_KEYS[0]);
      expect(loggedAt('WARNING')).toEqual([expect.objectContaining({ secretName: 'openai-api-keys', failure: 'not_enabled' })]);

      fake.addVersion('openai-api-keys', products(PROVIDER_KEYS[1]));
      await service.refreshNow();
      expect(service.product('demo')?.route('gpt-4o')?.apiKey).toBe(PROVIDER_KEYS[1]);
      expect(logged().map((l) => l.message)).toContain('secret readable again');
    });
  });

  describe('Secret Manager going away', () => {
    it('keeps the last good values, warns once per outage, counts every failed check, and recovers', async () => {
      seed();
      const service = await boot();
      const before = service.current;
      await fake.stop();
      await service.refreshNow();
      await service.refreshNow();
      expect(service.current).toBe(before);
      expect(service.loaded).toBe(true);
      const warnings = loggedAt('WARNING');
      expect(warnings.map((w) => [w.secretName, w.failure])).toEqual([
        ['openai-api-keys', 'unavailable'],
        ['jwt-public-keys', 'unavailable'],
        ['hmac-secrets', 'unavailable'],
      ]);
      expect(warnings[0]?.message).toBe('Secret Manager unreachable; keeping the last good values');
      expect(service.status().map((s) => s.refreshes.unreachable)).toEqual([2, 2, 2]);

      fake.addVersion('openai-api-keys', products(PROVIDER_KEYS[1]));
      await fake.listen();
      const deadline = Date.now() + 5_000;
      while (service.product('demo')?.route('gpt-4o')?.apiKey !== PROVIDER_KEYS[1] && Date.now() < deadline) await service.refreshNow();
      expect(service.product('demo')?.route('gpt-4o')?.apiKey).toBe(PROVIDER_KEYS[1]);
      expect(
        loggedAt('INFO')
          .filter((l) => l.message === 'Secret Manager reachable again')
          .map((l) => l.secretName),
      ).toEqual(expect.arrayContaining(['openai-api-keys', 'jwt-public-keys', 'hmac-secrets']));
    });

    it('reads a secret deleted and created again, whose versions are numbered from 1 again (a Terraform replacement)', async () => {
      seed();
      const service = await boot();
      fake.deleteSecret('openai-api-keys');
      await service.refreshNow();
      fake.addVersion('openai-api-keys', products(PROVIDER_KEYS[1]));
      await service.refreshNow();
      // The same version name as the one in force, with other content: not taken for the same version.
      expect(service.status()[0]?.version).toBe(fake.versionName('openai-api-keys', 1));
      expect(service.product('demo')?.route('gpt-4o')?.apiKey).toBe(PROVIDER_KEYS[1]);
      expect(logged().filter((l) => l.message === 'secret rotated; the new version is in force')).toHaveLength(1);
      // And checked by metadata again from then on: the next check reads nothing.
      const reads = fake.callsOf('AccessSecretVersion', 'openai-api-keys').length;
      await service.refreshNow();
      expect(fake.callsOf('AccessSecretVersion', 'openai-api-keys')).toHaveLength(reads);
    });

    it('keeps the last good values when a secret is deleted or access is revoked, with an ERROR', async () => {
      seed();
      const service = await boot();
      fake.deleteSecret('openai-api-keys');
      fake.deny('jwt-public-keys');
      await service.refreshNow();
      expect(service.product('demo')?.route('gpt-4o')?.apiKey).toBe(PROVIDER_KEYS[0]);
      expect(service.current.jwtKeys.has('kid-a')).toBe(true);
      expect(loggedAt('ERROR').map((l) => [l.secretName, l.failure])).toEqual([
        ['openai-api-keys', 'not_found'],
        ['jwt-public-keys', 'permission_denied'],
      ]);
      expect(service.status().map((s) => s.refreshes.failed)).toEqual([1, 1, 0]);
    });
  });
});
