import { generateKeyPairSync } from 'node:crypto';
import { Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { ConfigError, ConfigModule, loadGatewayConfig, type GatewayConfig } from '@keygate/config';
import { JsonLogger, KEYGATE_LOGGER, MetricsService } from '@keygate/observability';
import { SecretsModule } from './secrets.module';
import { SecretsService } from './secrets.service';
import { FakeSecretManagerServer } from './testing/fake-secret-manager.server';

const ISSUER = 'https://idp.example.com';
const PEM = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
const lines: string[] = [];
const products = (key: string): string => JSON.stringify({ demo: { providers: { openai: { api_key: key, models: ['gpt-4o'] } } } });

@Injectable()
class ConsumerA {
  constructor(readonly secrets: SecretsService) {}
}
@Module({ imports: [SecretsModule], providers: [ConsumerA] })
class FeatureA {}
@Injectable()
class ConsumerB {
  constructor(readonly secrets: SecretsService) {}
}
@Module({ imports: [SecretsModule], providers: [ConsumerB] })
class FeatureB {}

async function context(config: GatewayConfig): Promise<INestApplicationContext> {
  const moduleRef = await Test.createTestingModule({ imports: [ConfigModule.forRoot({ config }), FeatureA, FeatureB] })
    .overrideProvider(KEYGATE_LOGGER)
    .useValue(new JsonLogger('info', undefined, (line) => lines.push(line)))
    .compile();
  return moduleRef.init();
}

describe('SecretsModule', () => {
  let fake: FakeSecretManagerServer;
  let app: INestApplicationContext | undefined;

  beforeEach(async () => {
    fake = await FakeSecretManagerServer.start();
  });

  afterEach(async () => {
    await app?.close();
    app = undefined;
    await fake.stop();
  });

  it('loads from the environment and gives every importer the same service', async () => {
    app = await context(
      loadGatewayConfig({
        API_KEY_SERVER_PRODUCT_KEYS: products('sk-env-module'),
        API_KEY_SERVER_JWT_PUBLIC_KEYS: JSON.stringify({ k: PEM }),
        API_KEY_SERVER_JWT_ISSUER: ISSUER,
      }),
    );
    const a = app.get(ConsumerA).secrets;
    expect(app.get(ConsumerB).secrets).toBe(a);
    expect(a.loaded).toBe(true);
    expect(a.product('demo')?.route('gpt-4o')?.apiKey).toBe('sk-env-module');
    expect(fake.calls).toEqual([]);
    expect(lines.map((l) => (JSON.parse(l) as { message: string }).message)).toContain('secrets loaded');
  });

  it('loads from Secret Manager before the application starts, refreshes while it runs, and stops when it closes', async () => {
    fake.addVersion('openai-api-keys', products('sk-module-one'));
    fake.addVersion('jwt-public-keys', JSON.stringify({ k: PEM }));
    fake.addVersion('hmac-secrets', '{}');
    app = await context(
      loadGatewayConfig({
        USE_SECRET_MANAGER: 'true',
        GOOGLE_CLOUD_PROJECT: 'test',
        API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: fake.endpoint,
        API_KEY_SERVER_SECRET_REFRESH_SECONDS: '1',
        API_KEY_SERVER_JWT_ISSUER: ISSUER,
      }),
    );
    const secrets = app.get(SecretsService);
    expect(secrets.product('demo')?.route('gpt-4o')?.apiKey).toBe('sk-module-one');
    fake.addVersion('openai-api-keys', products('sk-module-two'));
    const deadline = Date.now() + 2_500;
    while (secrets.product('demo')?.route('gpt-4o')?.apiKey !== 'sk-module-two' && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(secrets.product('demo')?.route('gpt-4o')?.apiKey).toBe('sk-module-two');
    const scrape = await app.get(MetricsService).scrape();
    expect(scrape).toContain('# TYPE keygate_secret_refreshes_total counter');
    expect(scrape).toContain('keygate_secret_refreshes_total{secret="openai-api-keys",result="rotated"} 1');
    expect(scrape).toContain('keygate_secret_refreshes_total{secret="hmac-secrets",result="refused"} 0');
    // A second scrape adds only what happened since the first: still one rotation.
    expect(await app.get(MetricsService).scrape()).toContain('keygate_secret_refreshes_total{secret="openai-api-keys",result="rotated"} 1');

    await app.close();
    app = undefined;
    const calls = fake.calls.length;
    await new Promise((r) => setTimeout(r, 1_300));
    expect(fake.calls.length).toBe(calls);
  });

  it('fails the boot with a ConfigError naming a missing secret', async () => {
    fake.addVersion('openai-api-keys', products('sk-module-one'));
    fake.addVersion('hmac-secrets', '{}');
    const config = loadGatewayConfig({
      USE_SECRET_MANAGER: 'true',
      GOOGLE_CLOUD_PROJECT: 'test',
      API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: fake.endpoint,
      API_KEY_SERVER_JWT_ISSUER: ISSUER,
    });
    const failure = await context(config).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(ConfigError);
    expect((failure as Error).message).toContain('Secret Manager secret jwt-public-keys');
    expect((failure as Error).message).not.toContain('sk-module-one');
  });
});
