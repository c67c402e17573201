import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { DockerfileParser } from 'dockerfile-ast';
import { sign } from 'jsonwebtoken';
import { checkDockerfile, checkRepositoryDockerfile, loadDockerignore } from './lib/dockerfile';
import { render, type K8sObject } from './lib/kustomize';
import { effectiveEnv } from './lib/rules';
import { jsonPayloadFields } from './lib/terraform';
import { describe as explain, REPO_ROOT, type Violation } from './lib/tools';

const DOCKERFILE = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
const DOCKERIGNORE = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8');
const ENVIRONMENTS = ['dev', 'stage', 'prod'] as const;

describe('Dockerfile and build context', () => {
  const rulesOf = (violations: readonly Violation[]): string[] => [...new Set(violations.map((v) => v.rule))];

  it('follows the image rules', () => {
    expect(explain(checkRepositoryDockerfile(REPO_ROOT))).toBe('');
  });

  it('starts node with a young generation sized for the gateway and gc exposed, as `npm run start:prod` does', () => {
    const { nodeArgs, script } = imageCommand();
    expect(script).toBe('dist/apps/gateway/main.js');
    // Node derives the semi-space from the container's memory limit: 1 MiB under 512Mi (see the Dockerfile).
    expect(nodeArgs).toContainEqual(expect.stringMatching(/^--max-semi-space-size=\d+$/));
    // main.ts collects boot's garbage once before listening (idle RSS ~15 MB lower): only with gc exposed.
    expect(nodeArgs).toContain('--expose-gc');
    const scripts = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    expect(scripts['start:prod']).toBe(['node', ...nodeArgs, script].join(' '));
  });

  it('.dockerignore lets in only the sources and keeps keys, .env files, manifests and state out', () => {
    const context = loadDockerignore(DOCKERIGNORE);
    for (const path of [
      'package.json',
      'package-lock.json',
      'apps/gateway/src/main.ts',
      'libs/config/src/index.ts',
      'tsconfig.build.json',
    ]) {
      expect([path, context.included(path)]).toEqual([path, true]);
    }
    for (const path of [
      '.env',
      'apps/gateway/.env.local',
      'dev/dev-rs256.key.pem',
      'k8s/base/deployment.yaml',
      'terraform/environments/prod/main.tf',
      '.git/config',
      'node_modules/x/index.js',
      'test/e2e/chat.e2e-spec.ts',
      'libs/auth/src/hmac-signature.spec.ts',
      'bench/bench.js',
    ]) {
      expect([path, context.included(path)]).toEqual([path, false]);
    }
  });

  const replace = (from: string, to: string): string => {
    if (!DOCKERFILE.includes(from)) throw new Error(`the Dockerfile no longer contains ${from}`);
    return DOCKERFILE.replace(from, to);
  };
  const cases: [string, string, string][] = [
    ['a base image on latest', 'docker-base-pinned', replace('FROM debian:bookworm-slim AS init', 'FROM debian:latest AS init')],
    ['an untagged base image', 'docker-base-pinned', replace('FROM debian:bookworm-slim AS init', 'FROM debian AS init')],
    [
      'an untagged base image through an ARG',
      'docker-base-pinned',
      replace('ARG NODE_IMAGE=node:22.20.0-bookworm-slim', 'ARG NODE_IMAGE=node'),
    ],
    [
      'a base image on latest through an ARG',
      'docker-base-pinned',
      replace('ARG NODE_IMAGE=node:22.20.0-bookworm-slim', 'ARG NODE_IMAGE=node:latest'),
    ],
    [
      'a single stage',
      'docker-multi-stage',
      'FROM node:22.20.0-bookworm-slim\nCOPY package.json ./\nRUN npm ci --omit=dev\nUSER node\nENTRYPOINT ["tini", "--"]\n',
    ],
    ['running as root', 'docker-non-root', replace('USER 65532:65532', 'USER root')],
    [
      'no init process',
      'docker-init',
      replace('ENTRYPOINT ["/usr/local/bin/tini", "--", "/nodejs/bin/node"]', 'ENTRYPOINT ["/nodejs/bin/node"]'),
    ],
    ['dev dependencies in the image', 'docker-prod-deps', replace('npm ci --omit=dev --ignore-scripts', 'npm ci --ignore-scripts')],
    ['a COPY of a file that does not exist', 'docker-copy-source', replace('COPY apps ./apps', 'COPY applications ./apps')],
    ['a COPY of a path .dockerignore excludes', 'docker-copy-source', replace('COPY apps ./apps', 'COPY scripts ./scripts')],
    ['a COPY from an unknown stage', 'docker-copy-source', replace('--from=deps', '--from=dependencies')],
    ['a development key in a layer', 'docker-no-secrets', replace('COPY libs ./libs', 'COPY libs ./libs\nCOPY dev/dev-rs256.key.pem ./')],
    [
      'a secret in the environment',
      'docker-no-secrets',
      replace('ENV NODE_ENV=production', 'ENV API_KEY_SERVER_HMAC_SECRETS={} NODE_ENV=production'),
    ],
  ];

  it.each(cases)('Dockerfile check: %s → %s', (_, rule, dockerfile) => {
    expect(rulesOf(checkDockerfile(dockerfile, REPO_ROOT, DOCKERIGNORE))).toContain(rule);
  });
});

/** A free TCP port on the loopback interface. */
async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

/** The runtime stage's CMD (exec form): node's flags, then the script node runs. */
function imageCommand(): { nodeArgs: string[]; script: string } {
  const cmd = DockerfileParser.parse(DOCKERFILE)
    .getInstructions()
    .filter((i) => i.getKeyword() === 'CMD')
    .at(-1);
  const args = JSON.parse(cmd?.getArgumentsContent() ?? 'null') as unknown;
  if (!Array.isArray(args) || args.length === 0 || !args.every((a) => typeof a === 'string'))
    throw new Error('Dockerfile: CMD is not an exec form');
  return { nodeArgs: args.slice(0, -1), script: args.at(-1) as string };
}

/** A child process with its output collected. */
interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function start(script: string, cwd: string, env: Record<string, string>, nodeArgs: readonly string[] = []): Running {
  const child = spawn(process.execPath, [...nodeArgs, script], {
    cwd,
    env: { PATH: process.env.PATH ?? '', METADATA_SERVER_DETECTION: 'none', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return { child, output: () => out, exited };
}

async function waitFor(url: string, timeoutMs: number, running: Running): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (running.child.exitCode !== null) throw new Error(`exited ${running.child.exitCode} before ${url} answered:\n${running.output()}`);
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms:\n${running.output()}`);
}

/**
 * The build stage's context: every file its COPY instructions bring in from the repository,
 * after .dockerignore (repository-relative paths).
 */
function buildContextFiles(dockerignore: string): Set<string> {
  const ignore = loadDockerignore(dockerignore);
  const df = DockerfileParser.parse(DOCKERFILE);
  const froms = df.getFROMs();
  const build = froms.find((f) => f.getBuildStage() === 'build');
  if (!build) throw new Error('the Dockerfile has no stage named build');
  const end = froms.find((f) => f.getRange().start.line > build.getRange().start.line)?.getRange().start.line ?? Infinity;
  const files = new Set<string>();
  const add = (path: string): void => {
    if (!existsSync(join(REPO_ROOT, path)) || !ignore.included(path)) return;
    if (statSync(join(REPO_ROOT, path)).isDirectory()) for (const entry of readdirSync(join(REPO_ROOT, path))) add(join(path, entry));
    else files.add(path);
  };
  for (const instruction of df.getInstructions()) {
    const line = instruction.getRange().start.line;
    if (instruction.getKeyword() !== 'COPY' || line <= build.getRange().start.line || line >= end) continue;
    if (/--from=/.test(instruction.getTextContent())) continue;
    const parts = (instruction.getArgumentsContent() ?? '').trim().split(/\s+/);
    for (const source of parts.slice(0, -1)) add(source.replace(/^\.\//, '').replace(/\/$/, ''));
  }
  return files;
}

describe('the build stage has every source file the build compiles', () => {
  const context = buildContextFiles(DOCKERIGNORE);
  const nest = JSON.parse(readFileSync(join(REPO_ROOT, 'nest-cli.json'), 'utf8')) as {
    compilerOptions?: { tsConfigPath?: string };
    projects: Record<string, { type: string; compilerOptions?: { tsConfigPath?: string } }>;
  };
  const apps = Object.entries(nest.projects)
    .filter(([, p]) => p.type === 'application')
    .map(([name, p]): [string, string] => [name, p.compilerOptions?.tsConfigPath ?? '']);
  /** Repository files of each application's TypeScript program (what webpack compiles). */
  const programs = new Map<string, string[]>();

  beforeAll(() => {
    for (const [name, tsconfig] of apps) {
      const result = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', tsconfig, '--listFilesOnly'], {
        cwd: REPO_ROOT,
        encoding: 'utf8',
        maxBuffer: 16 * 1024 * 1024,
      });
      programs.set(
        name,
        result.stdout
          .split('\n')
          .map((line) => line.trim())
          .filter((line) => line.startsWith(REPO_ROOT) && !line.includes('/node_modules/'))
          .map((line) => relative(REPO_ROOT, line)),
      );
    }
  });

  it('copies the build configuration', () => {
    for (const file of [
      'package.json',
      'package-lock.json',
      'nest-cli.json',
      'tsconfig.json',
      nest.compilerOptions?.tsConfigPath ?? 'tsconfig.build.json',
    ]) {
      expect([file, context.has(file)]).toEqual([file, true]);
    }
  });

  it.each(apps)('%s: every file of its TypeScript program is in the context', (name, tsconfig) => {
    expect(context.has(tsconfig)).toBe(true);
    const sources = programs.get(name) ?? [];
    expect(sources.length).toBeGreaterThan(0);
    expect(sources.filter((file) => !context.has(file))).toEqual([]);
  });

  it('a .dockerignore that drops a needed folder is caught', () => {
    const narrower = buildContextFiles(`${DOCKERIGNORE}\nlibs/errors\n`);
    const missing = (programs.get('gateway') ?? []).filter((file) => !narrower.has(file));
    expect(missing).toEqual(expect.arrayContaining(['libs/errors/src/index.ts']));
  });
});

/**
 * The runtime layout without a Docker engine: the built bundles (`npm run build`, which npm test
 * runs before test:deploy) next to a node_modules that holds only the production dependency tree
 * (what the `deps` stage's `npm ci --omit=dev` installs), in a directory with no node_modules
 * above it. The gateway then boots with each overlay's environment and policy file.
 */
describe('the runtime layout: the bundle with production dependencies only', () => {
  let work: string;
  let app: string;
  let mock: Running;
  let mockPort: number;

  beforeAll(async () => {
    for (const bundle of ['gateway', 'mock-upstream']) {
      if (!existsSync(join(REPO_ROOT, 'dist', 'apps', bundle, 'main.js'))) {
        throw new Error(`dist/apps/${bundle}/main.js is missing: run \`npm run build\` before test:deploy (npm test does)`);
      }
    }
    work = mkdtempSync(join(tmpdir(), 'keygate-image-'));
    app = join(work, 'app');
    mkdirSync(join(app, 'node_modules'), { recursive: true });
    cpSync(join(REPO_ROOT, 'dist'), join(app, 'dist'), { recursive: true });
    cpSync(join(REPO_ROOT, 'package.json'), join(app, 'package.json'));
    for (const dir of productionPackages()) linkTree(join(REPO_ROOT, 'node_modules', dir), join(app, 'node_modules', dir));

    mockPort = await freePort();
    mock = start(join(app, 'dist', 'apps', 'mock-upstream', 'main.js'), app, { PORT: String(mockPort) });
    // The mock prints one JSON line once it listens.
    for (let i = 0; i < 300 && !mock.output().includes('mock-upstream listening'); i++) await new Promise((r) => setTimeout(r, 100));
    if (!mock.output().includes('mock-upstream listening')) throw new Error(`the mock upstream did not start:\n${mock.output()}`);
  }, 120_000);

  afterAll(async () => {
    if (mock?.child.exitCode === null) {
      mock.child.kill('SIGTERM');
      await mock.exited;
    }
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('every package the bundles require (eagerly or lazily) resolves from the production node_modules', () => {
    for (const bundle of ['gateway', 'mock-upstream']) {
      expect([bundle, unresolvedRequires(join(app, 'dist', 'apps', bundle, 'main.js'))]).toEqual([bundle, []]);
    }
  });

  it('a production dependency missing from node_modules is caught', () => {
    const moved = join(app, 'node_modules', 'yaml');
    renameSync(moved, `${moved}.off`);
    try {
      expect(unresolvedRequires(join(app, 'dist', 'apps', 'gateway', 'main.js'))).toEqual(['yaml']);
    } finally {
      renameSync(`${moved}.off`, moved);
    }
  });

  it('an overlay environment the gateway refuses is caught: it does not boot', async () => {
    const { objects } = render(join(REPO_ROOT, 'k8s', 'overlays', 'dev'));
    const environment = { ...overlayEnvironment(objects, join(work, 'broken-policy.yaml')), LOG_LEVEL: 'verbose' };
    const gateway = start(join(app, 'dist', 'apps', 'gateway', 'main.js'), app, {
      ...environment,
      PORT: String(await freePort()),
      USE_SECRET_MANAGER: 'false',
    });
    const code = await gateway.exited;
    expect(code).not.toBe(0);
    expect(gateway.output()).toContain('LOG_LEVEL');
  });

  it('ships no build or test tooling', () => {
    for (const tool of ['typescript', 'jest', '@nestjs/cli', 'webpack', 'ts-loader', 'eslint']) {
      expect([tool, existsSync(join(app, 'node_modules', tool))]).toEqual([tool, false]);
    }
  });

  it.each(ENVIRONMENTS)('boots with the %s overlay environment and policy, serves, audits, and drains on SIGTERM', async (env) => {
    const { objects } = render(join(REPO_ROOT, 'k8s', 'overlays', env));
    const environment = overlayEnvironment(objects, join(work, `${env}-policy.yaml`));
    const port = await freePort();
    const issuer = (environment.API_KEY_SERVER_JWT_ISSUER ?? '').split(',')[0];
    const gateway = start(
      join(app, 'dist', 'apps', 'gateway', 'main.js'),
      app,
      { ...environment, PORT: String(port), ...testSecrets(mockPort) },
      imageCommand().nodeArgs,
    );
    try {
      await waitFor(`http://127.0.0.1:${port}/healthz`, 30_000, gateway);
      await waitFor(`http://127.0.0.1:${port}/readyz`, 30_000, gateway);

      const token = sign(
        { sub: 'deploy-check-user', product: 'deploy-check' },
        readFileSync(join(REPO_ROOT, 'dev', 'dev-rs256.key.pem'), 'utf8'),
        {
          algorithm: 'RS256',
          keyid: 'dev-rs256',
          issuer,
          audience: environment.API_KEY_SERVER_JWT_AUDIENCE ?? 'keygate',
          expiresIn: 300,
        },
      );
      const response = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }),
      });
      expect([response.status, await response.text()]).toEqual([200, expect.any(String)]);

      const audit = await waitForAudit(gateway);
      // Every field the log-based metrics (terraform/modules/gcp/monitoring) extract is there.
      for (const field of jsonPayloadFields(join(REPO_ROOT, 'terraform', 'modules', 'gcp', 'monitoring'))) {
        expect([field, field in audit]).toEqual([field, true]);
      }
      expect(audit).toMatchObject({
        type: 'audit',
        product: 'deploy-check',
        user: 'deploy-check-user',
        model: 'gpt-4o-mini',
        provider: 'openai',
        status: 200,
        failure: null,
      });
      expect(typeof audit.tokens_in).toBe('number');
    } finally {
      gateway.child.kill('SIGTERM');
    }
    const drain = Number(environment.API_KEY_SERVER_SHUTDOWN_DRAIN_SECONDS ?? 45);
    const code = await Promise.race([
      gateway.exited,
      new Promise<string>((r) => setTimeout(() => r('timeout'), (drain + 5) * 1000).unref()),
    ]);
    expect(code).toBe(0);
    // Cloud Logging reads stdout as structured JSON: every line must be one JSON object.
    const notJson = gateway
      .output()
      .split('\n')
      .filter((line) => line.trim() !== '' && !isJsonObject(line));
    expect(notJson).toEqual([]);
  });
});

function isJsonObject(line: string): boolean {
  try {
    const value = JSON.parse(line) as unknown;
    return typeof value === 'object' && value !== null;
  } catch {
    return false;
  }
}

async function waitForAudit(running: Running): Promise<Record<string, unknown>> {
  for (let i = 0; i < 50; i++) {
    for (const line of running.output().split('\n')) {
      if (!isJsonObject(line)) continue;
      const record = JSON.parse(line) as Record<string, unknown>;
      if (record.type === 'audit') return record;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no audit line:\n${running.output()}`);
}

/**
 * The literal environment the overlay gives the gateway container (ConfigMap envFrom + env), with
 * its policy file written to `policyPath` from the mounted ConfigMap. The Memorystore CA and URL
 * come from a Secret and are left out (limits fall back to memory without Redis).
 */
function overlayEnvironment(objects: readonly K8sObject[], policyPath: string): Record<string, string> {
  const deployment = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'keygate');
  type Container = Parameters<typeof effectiveEnv>[0] & { volumeMounts?: { name: string; mountPath: string }[] };
  const pod = (
    deployment?.spec as { template: { spec: { containers: Container[]; volumes?: { name: string; configMap?: { name: string } }[] } } }
  ).template.spec;
  const container = pod.containers[0];
  const configMaps = new Map(objects.filter((o) => o.kind === 'ConfigMap').map((o) => [o.metadata.name, o]));
  const env = Object.fromEntries(effectiveEnv(container, configMaps));
  delete env.NODE_EXTRA_CA_CERTS;

  const policyFile = env.API_KEY_SERVER_POLICY_FILE;
  const mount = container.volumeMounts?.find((m) => policyFile?.startsWith(`${m.mountPath}/`));
  const configMap = pod.volumes?.find((v) => v.name === mount?.name)?.configMap?.name;
  const data = (configMap && (configMaps.get(configMap)?.data as Record<string, string> | undefined)) || undefined;
  const key = mount && policyFile ? policyFile.slice(mount.mountPath.length + 1) : '';
  if (!data?.[key]) throw new Error(`the overlay mounts no policy file at ${policyFile}`);
  writeFileSync(policyPath, data[key]);
  env.API_KEY_SERVER_POLICY_FILE = policyPath;
  return env;
}

/**
 * The secrets as environment: in the cluster they come from Secret Manager; here from the
 * environment, which wins over Secret Manager anyway (SPEC §2). The Secret Manager source has its
 * own suites. One product whose OpenAI models go to the mock upstream; the development JWT key.
 */
function testSecrets(mockPort: number): Record<string, string> {
  return {
    USE_SECRET_MANAGER: 'false',
    API_KEY_SERVER_PRODUCT_KEYS: JSON.stringify({
      'deploy-check': {
        providers: { openai: { api_key: 'sk-mock-deploy-check', models: ['gpt-4o-mini'], base_url: `http://127.0.0.1:${mockPort}/v1` } },
      },
    }),
    API_KEY_SERVER_JWT_PUBLIC_KEYS: JSON.stringify({ 'dev-rs256': readFileSync(join(REPO_ROOT, 'dev', 'dev-rs256.pub.pem'), 'utf8') }),
  };
}

/** Packages a webpack bundle `require`s (externals) that do not resolve next to it. */
function unresolvedRequires(bundle: string): string[] {
  const modules = [...new Set([...readFileSync(bundle, 'utf8').matchAll(/require\("([^"./][^"]*)"\)/g)].map((m) => m[1]))].filter(
    (m) => !m.startsWith('node:'),
  );
  const probe = spawnSync(
    process.execPath,
    [
      '-e',
      'process.stdout.write(JSON.stringify(JSON.parse(process.argv[1]).filter((m) => { try { require.resolve(m); return false; } catch { return true; } })))',
      JSON.stringify(modules),
    ],
    { cwd: dirname(bundle), encoding: 'utf8' },
  );
  return JSON.parse(probe.stdout || 'null') as string[];
}

/** Top-level directories (scoped as `@scope/name`) of the production dependency tree. */
function productionPackages(): string[] {
  const result = spawnSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const root = join(REPO_ROOT, 'node_modules');
  const dirs = new Set<string>();
  for (const line of result.stdout.split('\n')) {
    if (!line.startsWith(`${root}/`)) continue;
    const [first, second] = relative(root, line).split('/');
    dirs.add(first.startsWith('@') ? `${first}/${second}` : first);
  }
  if (dirs.size === 0) throw new Error(`npm ls --omit=dev listed nothing:\n${result.stderr}`);
  return [...dirs];
}

/**
 * Copies a directory tree as hard links where the platform allows (`cp -al`: instant, and the
 * copy is only read), else byte for byte.
 */
function linkTree(source: string, target: string): void {
  mkdirSync(dirname(target), { recursive: true });
  if (spawnSync('cp', ['-al', source, target]).status !== 0) cpSync(source, target, { recursive: true });
}
