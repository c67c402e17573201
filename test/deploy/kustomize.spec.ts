import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { clone, findKustomizations, render, type K8sObject, type Rendered } from './lib/kustomize';
import { checkArgoProjectAdmits, checkArgoRules, checkWorkloadRules, quantityBytes } from './lib/rules';
import { validateSchemas } from './lib/schemas';
import { checkOverlayAgainstTerraform } from './lib/consistency';
import { describe as explain, REPO_ROOT, type Violation } from './lib/tools';

const K8S = join(REPO_ROOT, 'k8s');
const FIXTURES = join(__dirname, 'fixtures');
const ENVIRONMENTS = ['dev', 'stage', 'prod'] as const;
const pathExists = (path: string): boolean => existsSync(join(REPO_ROOT, path));
const rel = (dir: string): string => relative(REPO_ROOT, dir);

/** Every kustomization of k8s/, plus the fixture that renders the optional components. */
const targets = [...findKustomizations(K8S), join(FIXTURES, 'with-components')];
const rendered = new Map<string, Rendered>();

beforeAll(() => {
  for (const dir of targets) rendered.set(rel(dir), render(dir));
});

function get(target: string): Rendered {
  const r = rendered.get(target);
  if (!r) throw new Error(`${target} was not rendered`);
  return r;
}

function find(objects: readonly K8sObject[], kind: string, name?: string): K8sObject {
  const o = objects.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  if (!o) throw new Error(`no ${kind}${name ? `/${name}` : ''}`);
  return o;
}

/** Typed access to the gateway container of a rendered Deployment, for the break-it tests. */
function gateway(objects: K8sObject[]): Record<string, unknown> & {
  image: string;
  resources: { limits: Record<string, string>; requests: Record<string, string> };
  securityContext: Record<string, unknown>;
  volumeMounts: { name: string; mountPath: string }[];
  startupProbe: { httpGet: { port: number | string } };
  lifecycle?: unknown;
  env: { name: string; value?: string }[];
  envFrom: { configMapRef?: { name: string } }[];
} {
  const spec = find(objects, 'Deployment', 'keygate').spec as { template: { spec: { containers: ReturnType<typeof gateway>[] } } };
  return spec.template.spec.containers[0];
}

function probe(objects: K8sObject[], name: 'readinessProbe' | 'livenessProbe'): { httpGet: { path: string } } {
  return gateway(objects)[name] as { httpGet: { path: string } };
}

function secretStore(objects: K8sObject[]): { projectID: string; auth: { workloadIdentity: { clusterName: string } } } {
  return (
    find(objects, 'SecretStore').spec as { provider: { gcpsm: { projectID: string; auth: { workloadIdentity: { clusterName: string } } } } }
  ).provider.gcpsm;
}

function networkPolicy(objects: K8sObject[]): { ingress: Record<string, unknown>[]; egress: Record<string, unknown>[] } {
  return find(objects, 'NetworkPolicy', 'keygate').spec as { ingress: Record<string, unknown>[]; egress: Record<string, unknown>[] };
}

/** The (hash-suffixed) name of the keygate-env ConfigMap the gateway reads. */
function keygateEnv(objects: K8sObject[]): string {
  const ref = gateway(objects).envFrom.find((e) => e.configMapRef?.name.startsWith('keygate-env'));
  if (!ref?.configMapRef) throw new Error('the gateway reads no keygate-env ConfigMap');
  return ref.configMapRef.name;
}

function podSpec(objects: K8sObject[]): Record<string, unknown> & { securityContext: Record<string, unknown> } {
  return (
    find(objects, 'Deployment', 'keygate').spec as {
      template: { spec: Record<string, unknown> & { securityContext: Record<string, unknown> } };
    }
  ).template.spec;
}

describe('Kubernetes manifests', () => {
  it('finds the base, the three overlays and the Argo CD objects', () => {
    expect(targets.map(rel)).toEqual(
      expect.arrayContaining(['k8s/argocd', 'k8s/base', 'k8s/overlays/dev', 'k8s/overlays/prod', 'k8s/overlays/stage']),
    );
  });

  it.each(targets.map(rel))('%s: every object matches its schema', (target) => {
    const r = get(target);
    expect(r.objects.length).toBeGreaterThan(0);
    expect(explain(validateSchemas(r.objects, target))).toBe('');
  });

  it.each(ENVIRONMENTS)('overlay %s follows the project rules', (env) => {
    expect(explain(checkWorkloadRules(get(`k8s/overlays/${env}`), { overlay: true, environment: env }))).toBe('');
  });

  it('the optional components (ExternalSecrets, IP allowlist) keep an overlay within the rules', () => {
    const r = get('test/deploy/fixtures/with-components');
    expect(explain(checkWorkloadRules(r, { overlay: true, environment: 'prod' }))).toBe('');
    const container = gateway(r.objects);
    expect(container.envFrom).toEqual(expect.arrayContaining([{ secretRef: { name: 'keygate-app-secrets' } }]));
    expect(container.env).toEqual(expect.arrayContaining([{ name: 'USE_SECRET_MANAGER', value: 'false' }]));
    expect((find(r.objects, 'BackendConfig').spec as { iap: { enabled: boolean } }).iap.enabled).toBe(false);
  });

  it('the base follows the workload rules', () => {
    expect(explain(checkWorkloadRules(get('k8s/base'), { overlay: false }))).toBe('');
  });

  it('Argo CD: one AppProject per environment, dev automated, stage and prod manual', () => {
    expect(explain(checkArgoRules(get('k8s/argocd').objects, 'k8s/argocd', pathExists))).toBe('');
  });

  it.each(ENVIRONMENTS)('Argo CD: the AppProject of %s admits every kind its overlay renders', (env) => {
    const project = find(get('k8s/argocd').objects, 'AppProject', `keygate-${env}`);
    expect(explain(checkArgoProjectAdmits(project, get(`k8s/overlays/${env}`)))).toBe('');
    // The optional components add no kind an AppProject would refuse.
    expect(explain(checkArgoProjectAdmits(project, get('test/deploy/fixtures/with-components')))).toBe('');
  });

  it('overlays differ where environments differ: namespace, image tag, replicas, host', () => {
    for (const env of ENVIRONMENTS) {
      const { objects } = get(`k8s/overlays/${env}`);
      expect(find(objects, 'Namespace').metadata.name).toBe(`keygate-${env}`);
      expect(gateway(objects).image).toMatch(
        new RegExp(`^europe-west1-docker\\.pkg\\.dev/example-keygate-${env}/keygate/gateway:[\\w.-]+$`),
      );
    }
    const min = (env: string): number =>
      (find(get(`k8s/overlays/${env}`).objects, 'HorizontalPodAutoscaler').spec as { minReplicas: number }).minReplicas;
    expect(min('prod')).toBeGreaterThanOrEqual(3);
  });

  it.each(ENVIRONMENTS)(
    "overlay %s: the Ingress routes every public route (Gemini's /v1beta included), and not /metrics or the probes",
    (env) => {
      type Path = { path: string; pathType: string };
      const rules = (find(get(`k8s/overlays/${env}`).objects, 'Ingress').spec as { rules: { http: { paths: Path[] } }[] }).rules;
      const paths = rules.flatMap((rule) => rule.http.paths);
      // As Kubernetes matches them: Prefix by whole path elements (/v1 is not a prefix of /v1beta/…).
      const routed = (target: string): boolean =>
        paths.some(({ path, pathType }) =>
          pathType === 'Exact' ? target === path : target === path || target.startsWith(path.endsWith('/') ? path : `${path}/`),
        );
      const publicRoutes = [
        '/v1/chat/completions',
        '/chat/demo/completions',
        '/v1/messages',
        '/v1/messages/count_tokens',
        '/v1/responses',
        '/v1/embeddings',
        '/v1/models',
        '/v1/models/gemini-2.5-flash:generateContent',
        '/v1beta/models/gemini-2.5-flash:streamGenerateContent',
        '/v1beta/models',
        '/admin/blocks',
        '/admin/usage',
        '/.well-known/oauth-protected-resource',
        '/docs',
        '/docs-json',
      ];
      expect(publicRoutes.filter((route) => !routed(route))).toEqual([]);
      expect(['/metrics', '/healthz', '/readyz'].filter(routed)).toEqual([]);
    },
  );

  it.each(ENVIRONMENTS)('overlay %s agrees with its Terraform environment (Redis range, region, namespace)', async (env) => {
    const violations = await checkOverlayAgainstTerraform(
      get(`k8s/overlays/${env}`),
      join(REPO_ROOT, 'terraform', 'environments', env),
      env,
    );
    expect(explain(violations)).toBe('');
  });
});

describe('each manifest check fails on a broken manifest', () => {
  const rulesOf = (violations: readonly Violation[]): string[] => [...new Set(violations.map((v) => v.rule))];

  it('render: a kustomization naming a missing file does not render', () => {
    expect(() => render(join(FIXTURES, 'broken-missing-resource'))).toThrow(/kubectl kustomize .* failed/);
  });

  it('schema: wrong types, unknown fields in strict schemas, unknown kinds', () => {
    const objects = clone(get('k8s/overlays/dev').objects);
    (find(objects, 'HorizontalPodAutoscaler').spec as Record<string, unknown>).maxReplicas = 'ten';
    (find(objects, 'BackendConfig').spec as Record<string, unknown>).iap = { enabeld: true };
    (find(objects, 'PodMonitoring').spec as { endpoints: Record<string, unknown>[] }).endpoints[0].interval = 'often';
    (find(objects, 'ExternalSecret').spec as Record<string, unknown>).data = 'url';
    objects.push({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } });
    const violations = validateSchemas(objects, 'broken');
    expect(violations.map((v) => v.where).sort()).toEqual(
      [
        'BackendConfig/keygate (keygate-dev) in broken',
        'ExternalSecret/keygate-redis (keygate-dev) in broken',
        'HorizontalPodAutoscaler/keygate (keygate-dev) in broken',
        'PodMonitoring/keygate (keygate-dev) in broken',
        'Widget/w in broken',
      ].sort(),
    );
    expect(rulesOf(violations).sort()).toEqual(['schema', 'schema-known']);
  });

  const cases: [string, string, (objects: K8sObject[]) => void][] = [
    ['the latest tag', 'image-tag', (o) => void (gateway(o).image = 'europe-west1-docker.pkg.dev/p/keygate/gateway:latest')],
    ['an image without a tag', 'image-tag', (o) => void (gateway(o).image = 'europe-west1-docker.pkg.dev/p/keygate/gateway')],
    ['a moving tag', 'image-tag', (o) => void (gateway(o).image = 'europe-west1-docker.pkg.dev/p/keygate/gateway:main')],
    ['an image from outside Artifact Registry', 'image-registry', (o) => void (gateway(o).image = 'docker.io/library/node:22')],
    ['a missing readiness probe', 'probes', (o) => void delete gateway(o).readinessProbe],
    ['a probe on an undeclared port', 'probes', (o) => void (gateway(o).startupProbe.httpGet.port = 9999)],
    ['no memory limit', 'resources', (o) => void delete gateway(o).resources.limits.memory],
    [
      'runAsNonRoot false',
      'non-root',
      (o) => {
        gateway(o).securityContext.runAsNonRoot = false;
        podSpec(o).securityContext.runAsNonRoot = false;
      },
    ],
    ['runAsUser 0', 'non-root', (o) => void (podSpec(o).securityContext.runAsUser = 0)],
    ['a writable root filesystem', 'read-only-root', (o) => void (gateway(o).securityContext.readOnlyRootFilesystem = false)],
    ['privilege escalation', 'privilege', (o) => void (gateway(o).securityContext.allowPrivilegeEscalation = true)],
    ['capabilities kept', 'capabilities', (o) => void (gateway(o).securityContext.capabilities = { drop: ['NET_RAW'] })],
    ['no seccomp profile', 'seccomp', (o) => void delete podSpec(o).securityContext.seccompProfile],
    [
      'no writable /tmp',
      'writable-tmp',
      (o) => void (gateway(o).volumeMounts = gateway(o).volumeMounts.filter((m) => m.mountPath !== '/tmp')),
    ],
    ['a grace period shorter than preStop + drain', 'graceful-shutdown', (o) => void (podSpec(o).terminationGracePeriodSeconds = 30)],
    // README (Operations): grace ≥ preStop + drain + 10, 85 with the base's 30 s and 45 s.
    ['a grace period 1 s under preStop + drain + 10', 'graceful-shutdown', (o) => void (podSpec(o).terminationGracePeriodSeconds = 84)],
    [
      'no preStop and a grace period shorter than the drain',
      'graceful-shutdown',
      (o) => {
        delete gateway(o).lifecycle;
        podSpec(o).terminationGracePeriodSeconds = 30;
      },
    ],
    ['readiness on the liveness route', 'probe-routes', (o) => void (probe(o, 'readinessProbe').httpGet.path = '/healthz')],
    ['liveness on the readiness route', 'probe-routes', (o) => void (probe(o, 'livenessProbe').httpGet.path = '/readyz')],
    [
      'a listen port the probes and the container do not use',
      'ports',
      (o) => void (gateway(o).env.find((e) => e.name === 'PORT')!.value = '9090'),
    ],
    [
      'a Service targeting another port',
      'ports',
      (o) => void ((find(o, 'Service').spec as { ports: { targetPort: number }[] }).ports[0].targetPort = 9090),
    ],
    [
      'a load balancer health check on /',
      'probe-routes',
      (o) => void ((find(o, 'BackendConfig').spec as { healthCheck: { requestPath: string } }).healthCheck.requestPath = '/'),
    ],
    [
      'a load balancer health check on the Service port',
      'ports',
      (o) => void ((find(o, 'BackendConfig').spec as { healthCheck: { port: number } }).healthCheck.port = 80),
    ],
    [
      'a scrape of an undeclared port',
      'metrics-scrape',
      (o) => void ((find(o, 'PodMonitoring').spec as { endpoints: { port: string }[] }).endpoints[0].port = 'metrics'),
    ],
    [
      'a scrape of another route',
      'metrics-scrape',
      (o) => void ((find(o, 'PodMonitoring').spec as { endpoints: { path: string }[] }).endpoints[0].path = '/stats'),
    ],
    [
      'a NetworkPolicy without the managed Prometheus collectors',
      'network-policy',
      (o) => void (networkPolicy(o).ingress = networkPolicy(o).ingress.filter((r) => !JSON.stringify(r).includes('gmp-system'))),
    ],
    ['a NetworkPolicy admitting every source', 'network-policy', (o) => void networkPolicy(o).ingress.push({ ports: [{ port: 'http' }] })],
    [
      'a NetworkPolicy without the metadata server (Workload Identity)',
      'network-policy',
      (o) => void (networkPolicy(o).egress = networkPolicy(o).egress.filter((r) => !JSON.stringify(r).includes('169.254.169.254/32'))),
    ],
    [
      'a disruption budget that keeps the only replica',
      'disruption',
      (o) => {
        const spec = find(o, 'PodDisruptionBudget').spec as Record<string, unknown>;
        delete spec.maxUnavailable;
        spec.minAvailable = 1;
      },
    ],
    [
      'a disruption budget of 0 %',
      'disruption',
      (o) => void ((find(o, 'PodDisruptionBudget').spec as Record<string, unknown>).maxUnavailable = '0%'),
    ],
    [
      'a secret in a ConfigMap',
      'env-hygiene',
      (o) => void ((find(o, 'ConfigMap', keygateEnv(o)).data as Record<string, string>).API_KEY_SERVER_HMAC_SECRETS = '{}'),
    ],
    [
      'a loopback listen address',
      'env-hygiene',
      (o) => void gateway(o).env.push({ name: 'API_KEY_SERVER_LISTEN_ADDRESS', value: '127.0.0.1' }),
    ],
    [
      'a load balancer draining shorter than preStop + drain',
      'graceful-shutdown',
      (o) =>
        void ((
          find(o, 'BackendConfig').spec as { connectionDraining: { drainingTimeoutSec: number } }
        ).connectionDraining.drainingTimeoutSec = 60),
    ],
    [
      'an ExternalSecret remoteRef left to the CRD defaults (Argo CD drift)',
      'argo-drift',
      (o) =>
        void delete (find(o, 'ExternalSecret', 'keygate-redis').spec as { data: { remoteRef: Record<string, unknown> }[] }).data[1]
          .remoteRef.decodingStrategy,
    ],
    ["args that drop the image's node flags", 'node-flags', (o) => void Object.assign(gateway(o), { args: ['dist/apps/gateway/main.js'] })],
    ['a command that replaces the entrypoint', 'node-flags', (o) => void Object.assign(gateway(o), { command: ['node'] })],
    ['a Secret nothing produces', 'config-refs', (o) => void o.splice(o.indexOf(find(o, 'ExternalSecret', 'keygate-redis')), 1)],
    ['a ConfigMap that does not exist', 'config-refs', (o) => void (gateway(o).envFrom = [{ configMapRef: { name: 'nope' } }])],
    [
      'a policy file outside its mount',
      'policy-file',
      (o) => void gateway(o).env.push({ name: 'API_KEY_SERVER_POLICY_FILE', value: '/etc/elsewhere/policy.yaml' }),
    ],
    ['a service account without Workload Identity', 'workload-identity', (o) => void (find(o, 'ServiceAccount').metadata.annotations = {})],
    [
      'a Service that selects nothing',
      'selectors',
      (o) => void ((find(o, 'Service').spec as { selector: Record<string, string> }).selector = { app: 'other' }),
    ],
    ['replicas set under an HPA', 'autoscaling', (o) => void ((find(o, 'Deployment').spec as Record<string, unknown>).replicas = 3)],
    // 384Mi: under the RSS under load × 1.25, and V8 may grow its heap to 304 MiB there, which
    // with ~100 MB off-heap is over the limit (the kernel kills the pod before V8 collects harder).
    ['a memory limit the gateway under load outgrows', 'memory', (o) => void (gateway(o).resources.limits.memory = '384Mi')],
    ['a memory request below the idle RSS', 'memory', (o) => void (gateway(o).resources.requests.memory = '128Mi')],
    [
      'a startup probe shorter than the Secret Manager wait at boot',
      'startup-probe',
      (o) => void Object.assign(gateway(o).startupProbe, { periodSeconds: 2, failureThreshold: 10 }),
    ],
    ['a misspelt variable outside API_KEY_SERVER_', 'env-names', (o) => void gateway(o).env.push({ name: 'LOGLEVEL', value: 'info' })],
    [
      'a placeholder left in',
      'placeholder',
      (o) => void ((find(o, 'SecretStore').spec as { provider: { gcpsm: { projectID: string } } }).provider.gcpsm.projectID = 'PROJECT_ID'),
    ],
    ['an object in another namespace', 'namespace', (o) => void (find(o, 'Service').metadata.namespace = 'default')],
  ];

  it('memory quantities are read as Kubernetes reads them', () => {
    expect([quantityBytes('512Mi'), quantityBytes('1Gi'), quantityBytes('400M'), quantityBytes('1e9'), quantityBytes('1.5Gi')]).toEqual([
      512 * 2 ** 20,
      2 ** 30,
      400e6,
      1e9,
      1.5 * 2 ** 30,
    ]);
    expect(quantityBytes('lots')).toBeNaN();
  });

  it('the unbroken dev overlay passes (the baseline of the cases below)', () => {
    expect(checkWorkloadRules(clone(get('k8s/overlays/dev')), { overlay: true })).toEqual([]);
  });

  it.each(cases)('rules: %s → %s', (_, rule, breakIt) => {
    const r = clone(get('k8s/overlays/dev'));
    breakIt(r.objects);
    expect(rulesOf(checkWorkloadRules(r, { overlay: true }))).toContain(rule);
  });

  it("rules: dev's settings deployed as prod (LOG_LEVEL=debug, a Secret Manager emulator) → env-hygiene", () => {
    const r = clone(get('k8s/overlays/dev'));
    expect(rulesOf(checkWorkloadRules(r, { overlay: true, environment: 'dev' }))).toEqual([]);
    const messages = checkWorkloadRules(r, { overlay: true, environment: 'prod' });
    expect(messages.map((m) => [m.rule, m.message])).toEqual([['env-hygiene', expect.stringContaining('LOG_LEVEL=debug')]]);
    gateway(r.objects).env.push({ name: 'API_KEY_SERVER_SECRET_MANAGER_ENDPOINT', value: '127.0.0.1:9090' });
    expect(checkWorkloadRules(r, { overlay: true, environment: 'stage' }).map((m) => m.message)).toEqual([
      expect.stringContaining('LOG_LEVEL=debug'),
      expect.stringContaining('API_KEY_SERVER_SECRET_MANAGER_ENDPOINT'),
    ]);
  });

  const argoCases: [string, string, (objects: K8sObject[]) => void][] = [
    [
      'dev without automated sync',
      'argo-sync',
      (o) => {
        const spec = find(o, 'ApplicationSet').spec as { generators: { list: { template?: unknown } }[] };
        delete spec.generators[0].list.template;
      },
    ],
    [
      'stage and prod syncing automatically',
      'argo-sync',
      (o) => {
        const spec = find(o, 'ApplicationSet').spec as { template: { spec: { syncPolicy: Record<string, unknown> } } };
        spec.template.spec.syncPolicy.automated = { prune: true, selfHeal: true };
      },
    ],
    [
      'prod missing',
      'argo-appset',
      (o) => {
        const spec = find(o, 'ApplicationSet').spec as { generators: { list: { elements: { env: string }[] } }[] };
        spec.generators[1].list.elements = [{ env: 'stage' }];
      },
    ],
    [
      'an AppProject allowing every namespace',
      'argo-project',
      (o) => {
        (find(o, 'AppProject', 'keygate-prod').spec as { destinations: { namespace: string }[] }).destinations[0].namespace = '*';
      },
    ],
    [
      'a source path that is not the overlay',
      'argo-source',
      (o) => {
        const spec = find(o, 'ApplicationSet').spec as { template: { spec: { source: { path: string } } } };
        spec.template.spec.source.path = 'k8s/base';
      },
    ],
  ];

  it('argo: an overlay kind its AppProject does not admit → argo-project', () => {
    const objects = clone(get('k8s/argocd').objects);
    const project = find(objects, 'AppProject', 'keygate-dev');
    const spec = project.spec as { namespaceResourceWhitelist: { kind: string }[] };
    spec.namespaceResourceWhitelist = spec.namespaceResourceWhitelist.filter((e) => e.kind !== 'PodMonitoring');
    expect(checkArgoProjectAdmits(project, get('k8s/overlays/dev')).map((v) => [v.rule, v.message])).toEqual([
      ['argo-project', expect.stringContaining('PodMonitoring')],
    ]);
  });

  it.each(argoCases)('argo: %s → %s', (_, rule, breakIt) => {
    const objects = clone(get('k8s/argocd').objects);
    breakIt(objects);
    expect(rulesOf(checkArgoRules(objects, 'broken', pathExists))).toContain(rule);
  });

  const nameCases: [string, RegExp, (objects: K8sObject[]) => void][] = [
    [
      'a ServiceAccount annotated with another Google account',
      /annotated keygate@example-keygate-prod/,
      (o) =>
        void (find(o, 'ServiceAccount').metadata.annotations = {
          'iam.gke.io/gcp-service-account': 'keygate@example-keygate-prod.iam.gserviceaccount.com',
        }),
    ],
    [
      "the runtime account of another environment's project",
      /annotated keygate-runtime@example-keygate-stage/,
      (o) =>
        void (find(o, 'ServiceAccount').metadata.annotations = {
          'iam.gke.io/gcp-service-account': 'keygate-runtime@example-keygate-stage.iam.gserviceaccount.com',
        }),
    ],
    [
      'a Deployment running as another ServiceAccount',
      /runs as ServiceAccount default/,
      (o) => void (podSpec(o).serviceAccountName = 'default'),
    ],
    [
      'a SecretStore reading another project',
      /SecretStore gcp-secret-manager reads project example-keygate-dev/,
      (o) => void (secretStore(o).projectID = 'example-keygate-dev'),
    ],
    [
      'a SecretStore naming another cluster',
      /names cluster gke-main/,
      (o) => void (secretStore(o).auth.workloadIdentity.clusterName = 'gke-main'),
    ],
    [
      'an ExternalSecret reading a secret Terraform does not create',
      /secret redis-password is read/,
      (o) =>
        void ((find(o, 'ExternalSecret', 'keygate-redis').spec as { data: { remoteRef: { key: string } }[] }).data[0].remoteRef.key =
          'redis-password'),
    ],
    [
      'the gateway reading a renamed secret',
      /secret provider-keys is read/,
      (o) =>
        void ((find(o, 'ConfigMap', keygateEnv(o)).data as Record<string, string>).API_KEY_SERVER_SECRET_PRODUCT_KEYS_NAME =
          'provider-keys'),
    ],
    [
      'an Ingress naming a per-environment static IP',
      /static IP keygate-prod, Terraform reserves keygate/,
      (o) => void (find(o, 'Ingress').metadata.annotations!['kubernetes.io/ingress.global-static-ip-name'] = 'keygate-prod'),
    ],
    [
      'a FrontendConfig naming a per-environment SSL policy',
      /SSL policy keygate-prod/,
      (o) => void ((find(o, 'FrontendConfig').spec as { sslPolicy: string }).sslPolicy = 'keygate-prod'),
    ],
    [
      'a BackendConfig naming another Cloud Armor policy',
      /Cloud Armor policy keygate-prod/,
      (o) => void ((find(o, 'BackendConfig').spec as { securityPolicy: { name: string } }).securityPolicy.name = 'keygate-prod'),
    ],
    [
      'a certificate for another host',
      /keygate\.example\.com, keygate\.stage\.example\.com/,
      (o) => void ((find(o, 'ManagedCertificate').spec as { domains: string[] }).domains = ['keygate.stage.example.com']),
    ],
  ];

  it.each(nameCases)('consistency: %s is caught', async (_, message, breakIt) => {
    const r = clone(get('k8s/overlays/prod'));
    breakIt(r.objects);
    const violations = await checkOverlayAgainstTerraform(r, join(REPO_ROOT, 'terraform', 'environments', 'prod'), 'prod');
    expect(violations.map((v) => v.message)).toEqual([expect.stringMatching(message)]);
  });

  it('consistency: an overlay whose Redis range or region differs from Terraform is caught', async () => {
    const r = clone(get('k8s/overlays/prod'));
    const spec = find(r.objects, 'NetworkPolicy').spec as {
      egress: { to: { ipBlock?: { cidr: string } }[]; ports?: { port: number }[] }[];
    };
    const rule = spec.egress.find((e) => e.ports?.some((p) => p.port === 6378));
    if (rule?.to[0]?.ipBlock) rule.to[0].ipBlock.cidr = '10.99.0.0/29';
    gateway(r.objects).image = 'us-central1-docker.pkg.dev/example-keygate-prod/keygate/gateway:0.1.0';
    const messages = (await checkOverlayAgainstTerraform(r, join(REPO_ROOT, 'terraform', 'environments', 'prod'), 'prod'))
      .map((v) => v.message)
      .join('\n');
    expect(messages).toMatch(/Redis egress 10\.99\.0\.0\/29/);
    expect(messages).toMatch(/us-central1/);
  });
});
