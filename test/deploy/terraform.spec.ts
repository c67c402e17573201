import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { parse } from '@cdktf/hcl2json';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkFormat, checkModules, findModuleDirs, jsonPayloadFields, loadModule } from './lib/terraform';
import { describe as explain, REPO_ROOT, type Violation } from './lib/tools';

const TERRAFORM = join(REPO_ROOT, 'terraform');
const ENVIRONMENTS = ['dev', 'stage', 'prod'].map((env) => join(TERRAFORM, 'environments', env));

/** The audit record's fields (SPEC §7) that the log-based metrics may read. */
const AUDIT_FIELDS = [
  'type',
  'requestId',
  'product',
  'user',
  'model',
  'model_label',
  'product_label',
  'provider',
  'stream',
  'tokens_in',
  'tokens_out',
  'cost_usd',
  'latency_ms',
  'status',
  'failure',
];

describe('Terraform', () => {
  it('is formatted (terraform fmt -check -recursive)', () => {
    expect(explain(checkFormat(TERRAFORM))).toBe('');
  });

  it('has the environments and the GCP modules of the issue', () => {
    const dirs = findModuleDirs(TERRAFORM).map((d) => d.slice(TERRAFORM.length + 1));
    expect(dirs).toEqual(expect.arrayContaining(['environments/dev', 'environments/prod', 'environments/stage']));
    for (const m of [
      'gke',
      'memorystore',
      'secret-manager',
      'artifact-registry',
      'workload-identity',
      'github-oidc',
      'cloud-armor',
      'monitoring',
    ]) {
      expect(dirs).toContain(`modules/gcp/${m}`);
    }
  });

  it('every module parses, references only what it declares, and every module call is complete', async () => {
    expect(explain(await checkModules(TERRAFORM, { environments: ENVIRONMENTS }))).toBe('');
  });

  it('every .tf file was parsed, and its references were found', async () => {
    let files = 0;
    for (const dir of findModuleDirs(TERRAFORM)) {
      const module = await loadModule(dir);
      expect(module.parseErrors).toEqual([]);
      files += module.files.length;
    }
    expect(files).toBeGreaterThan(30);
    const keygate = await loadModule(join(TERRAFORM, 'modules', 'gcp', 'keygate'));
    expect(keygate.references).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ kind: 'var', name: 'project_id' }),
        expect.objectContaining({ kind: 'module', name: 'gke', attribute: 'workload_pool' }),
        expect.objectContaining({ kind: 'local', name: 'namespace' }),
      ]),
    );
  });

  it('the registries keep tags immutable, so the tag an overlay pins always means one image', async () => {
    const file = join(TERRAFORM, 'modules', 'gcp', 'artifact-registry', 'main.tf');
    const doc = (await parse(file, readFileSync(file, 'utf8'))) as {
      resource: { google_artifact_registry_repository: Record<string, { docker_config?: { immutable_tags?: boolean }[] }[]> };
    };
    const repositories = Object.values(doc.resource.google_artifact_registry_repository).flat();
    expect(repositories.length).toBeGreaterThan(0);
    expect(repositories.map((r) => r.docker_config?.[0]?.immutable_tags)).toEqual(repositories.map(() => true));
  });

  it('Cloud NAT lets a node hold more than 64 connections to one provider address (streams keep theirs for minutes)', async () => {
    const file = join(TERRAFORM, 'modules', 'gcp', 'network', 'main.tf');
    type Nat = { enable_dynamic_port_allocation?: boolean; min_ports_per_vm?: number; max_ports_per_vm?: number };
    const doc = (await parse(file, readFileSync(file, 'utf8'))) as { resource: { google_compute_router_nat: Record<string, Nat[]> } };
    const gateways = Object.values(doc.resource.google_compute_router_nat).flat();
    expect(gateways.length).toBeGreaterThan(0);
    // Cloud NAT's default is 64 ports per node, allocated statically: 64 connections at once from all
    // the node's pods to one destination address and port, after which new connections are dropped.
    for (const nat of gateways) {
      const most = nat.enable_dynamic_port_allocation === true ? (nat.max_ports_per_vm ?? 65536) : (nat.min_ports_per_vm ?? 64);
      expect(most).toBeGreaterThanOrEqual(1024);
    }
  });

  it('the log-based metrics read only fields the audit record has (and those of the failed-attempt lines they count)', () => {
    const fields = [...jsonPayloadFields(join(TERRAFORM, 'modules', 'gcp', 'monitoring'))];
    expect(fields).toEqual(expect.arrayContaining(['type', 'product_label', 'tokens_in', 'tokens_out', 'failure', 'latency_ms']));
    // Beside the audit record's: the message, which tells the failed-attempt and crash lines apart.
    expect(fields.filter((f) => !AUDIT_FIELDS.includes(f) && f !== 'message')).toEqual([]);
    // A model a client named is not a label: any caller could grow the metrics without bound.
    expect(fields).not.toContain('model');
    expect(fields).toContain('model_label');
    // Nor a product a token names (any claim a trusted issuer signs).
    expect(fields).not.toContain('product');
    expect(fields).toContain('product_label');
  });

  it("the latency alert reads requests that were not streamed (a stream's latency_ms is the whole stream)", async () => {
    const file = join(TERRAFORM, 'modules', 'gcp', 'monitoring', 'main.tf');
    type Metric = { label_extractors?: Record<string, string> };
    type Alert = { conditions: { condition_prometheus_query_language?: { query: string }[] }[] };
    const doc = (await parse(file, readFileSync(file, 'utf8'))) as {
      resource: { google_logging_metric: Record<string, Metric[]>; google_monitoring_alert_policy: Record<string, Alert[]> };
    };
    expect(doc.resource.google_logging_metric.latency[0].label_extractors?.stream).toBe('EXTRACT(jsonPayload.stream)');
    const queries = Object.values(doc.resource.google_monitoring_alert_policy)
      .flat()
      .flatMap((a) => a.conditions.flatMap((c) => (c.condition_prometheus_query_language ?? []).map((q) => q.query)))
      .filter((q) => q.includes('local.promql.latency'));
    expect(queries.length).toBeGreaterThan(0);
    for (const query of queries) expect(query).toMatch(/_bucket\{stream="false"\}/);
  });

  it("the load balancer's log entries of a URL that carries a credential (Gemini's ?key=) are not stored, for this gateway's backends only", async () => {
    const file = join(TERRAFORM, 'modules', 'gcp', 'monitoring', 'main.tf');
    const doc = (await parse(file, readFileSync(file, 'utf8'))) as {
      resource: { google_logging_project_exclusion?: Record<string, { filter: string }[]> };
    };
    const filters = Object.values(doc.resource.google_logging_project_exclusion ?? {})
      .flat()
      .map((e) => e.filter);
    const credentialInUrl = filters.filter((f) => f.includes('http_load_balancer') && f.includes('requestUrl'));
    expect(credentialInUrl).toHaveLength(1);
    const [filter] = credentialInUrl;
    expect(filter).toContain('backend_service_name:\\"${var.namespace}\\"');
    // The pattern the filter uses, as Cloud Logging's RE2 reads it, matches a key in the query and nothing else.
    const pattern = new RegExp(/requestUrl=~\\"(.+?)\\"/.exec(filter)![1]);
    expect(pattern.test('https://gw.example.com/v1beta/models/gemini-2.5-flash:generateContent?key=eyJhbGciOi')).toBe(true);
    expect(pattern.test('https://gw.example.com/v1beta/models/x:streamGenerateContent?alt=sse&key=eyJ')).toBe(true);
    expect(pattern.test('https://gw.example.com/v1/chat/completions')).toBe(false);
    expect(pattern.test('https://gw.example.com/v1/models?monkey=1')).toBe(false);
  });

  it('the alerts on the Prometheus scrape name metrics the gateway exports, Redis among them', async () => {
    const file = join(TERRAFORM, 'modules', 'gcp', 'monitoring', 'main.tf');
    type Alert = { conditions: { condition_prometheus_query_language?: { query: string }[] }[] };
    const doc = (await parse(file, readFileSync(file, 'utf8'))) as {
      resource: { google_monitoring_alert_policy: Record<string, Alert[]> };
    };
    const queries = Object.values(doc.resource.google_monitoring_alert_policy)
      .flat()
      .flatMap((a) => a.conditions.flatMap((c) => (c.condition_prometheus_query_language ?? []).map((q) => q.query)));
    const scraped = [...new Set(queries.flatMap((q) => [...q.matchAll(/\b(keygate_[a-z_]+)\b/g)].map((m) => m[1])))];
    const exported = [
      ...readFileSync(join(REPO_ROOT, 'libs', 'observability', 'src', 'metrics.service.ts'), 'utf8').matchAll(/name: '(keygate_\w+)'/g),
    ].map((m) => m[1]);
    expect(scraped).toContain('keygate_redis_up');
    for (const name of scraped) expect(exported).toContain(name);
    // Scoped to the environment's namespace, as the log-based metrics are.
    for (const query of queries.filter((q) => /\bkeygate_redis_up\b/.test(q)))
      expect(query).toMatch(/keygate_redis_up\{namespace=\\?"\$\{var\.namespace\}\\?"\}/);
    // A refused secret rotation: the outcomes it reads are ones the gateway counts.
    const rotation = queries.filter((q) => /\bkeygate_secret_refreshes_total\b/.test(q));
    expect(rotation).toHaveLength(1);
    expect(rotation[0]).toMatch(/namespace=\\?"\$\{var\.namespace\}\\?"/);
    const outcomes = /const OUTCOMES[^=]*= \[([^\]]*)\]/.exec(
      readFileSync(join(REPO_ROOT, 'libs', 'secrets', 'src', 'secrets.service.ts'), 'utf8'),
    )![1];
    for (const result of /result=~\\?"([^"\\]+)/.exec(rotation[0])![1].split('|')) expect(outcomes).toContain(`'${result}'`);
  });

  it('the messages the metrics and alerts match are ones the gateway writes (failed upstream attempts and streams, crashes)', () => {
    const tf = readFileSync(join(TERRAFORM, 'modules', 'gcp', 'monitoring', 'main.tf'), 'utf8');
    const prefixes = [...tf.matchAll(/jsonPayload\.message=~\\"\^([^\\"]+)\\"/g)].map((m) => m[1]);
    expect(prefixes.sort()).toEqual(['crashed ', 'upstream attempt failed', 'upstream stream failed']);
    const gateway = ['routing/attempt-log.ts', 'chat/sse-relay.ts', 'crash-report.ts']
      .map((f) => readFileSync(join(REPO_ROOT, 'apps', 'gateway', 'src', f), 'utf8'))
      .join('\n');
    // Each as the start of a string literal the gateway logs.
    for (const prefix of prefixes) expect([`'${prefix}`, `\`${prefix}`].some((literal) => gateway.includes(literal))).toBe(true);
  });
});

describe('each Terraform check fails on a broken module', () => {
  let root: string;
  const rulesOf = (violations: readonly Violation[]): string[] => [...new Set(violations.map((v) => v.rule))];

  /** Writes a tree of files under a fresh temporary directory and returns its path. */
  function tree(files: Record<string, string>): string {
    const dir = mkdtempSync(join(root, 'case-'));
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(join(dir, path, '..'), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    return dir;
  }

  const child = [
    'variable "name" {',
    '  type        = string',
    '  description = "Required."',
    '}',
    '',
    'variable "size" {',
    '  type        = number',
    '  description = "Optional."',
    '  default     = 1',
    '}',
    '',
    'output "id" {',
    '  value = var.name',
    '}',
    '',
  ].join('\n');
  const root_ = (body: string): string => `module "child" {\n  source = "./modules/child"\n${body}}\n`;

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'keygate-tf-'));
  });
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
  });

  it('the well-formed fixture passes (the baseline of the cases below)', async () => {
    const dir = tree({ 'main.tf': root_('  name = "x"\n'), 'modules/child/main.tf': child });
    expect(await checkModules(dir)).toEqual([]);
  });

  it('fmt: an unformatted file', () => {
    const dir = tree({ 'main.tf': 'variable "x" {\ntype=string\n    description = "x"\n}\n' });
    expect(rulesOf(checkFormat(dir))).toEqual(['tf-fmt']);
  });

  const cases: [string, string, Record<string, string>][] = [
    ['a syntax error', 'tf-parse', { 'main.tf': 'module "child" {\n  source = \n' }],
    ['an undeclared var. reference', 'var-declared', { 'main.tf': 'output "o" {\n  value = var.missing\n}\n' }],
    ['an undeclared local. reference', 'local-declared', { 'main.tf': 'output "o" {\n  value = local.missing\n}\n' }],
    ['a module source that does not exist', 'module-source', { 'main.tf': 'module "child" {\n  source = "./modules/nowhere"\n}\n' }],
    [
      'a module source outside the repository',
      'module-source',
      { 'main.tf': 'module "child" {\n  source = "terraform-google-modules/kubernetes-engine/google"\n}\n' },
    ],
    ['a required variable not passed', 'module-required-vars', { 'main.tf': root_('  size = 2\n'), 'modules/child/main.tf': child }],
    [
      'an argument the module does not declare',
      'module-unknown-arg',
      { 'main.tf': root_('  name  = "x"\n  color = "red"\n'), 'modules/child/main.tf': child },
    ],
    [
      'an output the module does not have',
      'module-output',
      { 'main.tf': `${root_('  name = "x"\n')}\noutput "o" {\n  value = module.child.nope\n}\n`, 'modules/child/main.tf': child },
    ],
    ['a reference to a module not called', 'module-ref', { 'main.tf': 'output "o" {\n  value = module.ghost.id\n}\n' }],
    [
      'Secret Manager access granted on the whole project',
      'tf-secret-iam',
      {
        'main.tf': [
          'variable "project_id" {',
          '  type        = string',
          '  description = "x"',
          '}',
          '',
          'resource "google_project_iam_member" "runtime" {',
          '  project = var.project_id',
          '  role    = "roles/secretmanager.secretAccessor"',
          '  member  = "serviceAccount:keygate-runtime@example.iam.gserviceaccount.com"',
          '}',
          '',
        ].join('\n'),
      },
    ],
    ['an untyped variable', 'tf-variable-typed', { 'main.tf': 'variable "v" {\n  description = "x"\n}\n' }],
    ['an undescribed variable', 'tf-variable-described', { 'main.tf': 'variable "v" {\n  type = string\n}\n' }],
    [
      'a hard-coded project id',
      'tf-project-literal',
      { 'main.tf': 'resource "google_compute_network" "n" {\n  project = "acme-prod-123"\n  name    = "n"\n}\n' },
    ],
  ];

  it.each(cases)('modules: %s → %s', async (_, rule, files) => {
    expect(rulesOf(await checkModules(tree(files)))).toContain(rule);
  });

  it('environments: no GCS backend, no provider pin', async () => {
    const dir = tree({ 'main.tf': 'terraform {\n  backend "local" {}\n}\n' });
    expect(rulesOf(await checkModules(dir, { environments: [dir] })).sort()).toEqual(['tf-backend', 'tf-providers']);
  });

  it('a reference inside a nested template string is still checked', async () => {
    const dir = tree({ 'main.tf': 'output "o" {\n  value = join(",", [for c in ["a"] : "x=\\"${var.ghost}\\""])\n}\n' });
    expect(rulesOf(await checkModules(dir))).toEqual(['var-declared']);
  });
});
