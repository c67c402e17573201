import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe as explain, REPO_ROOT } from './lib/tools';
import { checkRepositoryWorkflows, checkWorkflowPins } from './lib/workflows';

interface Step {
  uses?: string;
  run?: string;
  with?: Record<string, unknown>;
}
interface Workflow {
  on: Record<string, unknown>;
  permissions?: Record<string, string>;
  jobs: Record<string, { steps: Step[]; permissions?: Record<string, string>; environment?: string }>;
}

const workflow = (name: string): Workflow => parse(readFileSync(join(REPO_ROOT, '.github', 'workflows', name), 'utf8')) as Workflow;
const steps = (w: Workflow): Step[] => Object.values(w.jobs).flatMap((j) => j.steps);

describe('GitHub workflows', () => {
  it('pin every action by full commit SHA with its version in a comment', () => {
    expect(explain(checkRepositoryWorkflows(REPO_ROOT))).toBe('');
  });

  it('CI runs the README test command, terraform validate per environment, and the image build', () => {
    const ci = workflow('ci.yml');
    expect(steps(ci).map((s) => s.run)).toEqual(expect.arrayContaining(['npm test', 'terraform validate -no-color']));
    expect(steps(ci).some((s) => s.uses?.startsWith('docker/build-push-action@'))).toBe(true);
    expect(ci.permissions).toEqual({ contents: 'read' });
  });

  it('delivery authenticates through Workload Identity Federation, never a key, and opens a pull request for dev', () => {
    const deliver = workflow('deliver.yml');
    const auth = steps(deliver).find((s) => s.uses?.startsWith('google-github-actions/auth@'));
    expect(auth?.with).toMatchObject({ workload_identity_provider: expect.any(String), service_account: expect.any(String) });
    expect(auth?.with).not.toHaveProperty('credentials_json');
    expect(deliver.jobs.image.permissions).toMatchObject({ 'id-token': 'write' });
    expect(steps(deliver).some((s) => s.run?.includes('k8s/overlays/dev/kustomization.yaml'))).toBe(true);
    expect(steps(deliver).some((s) => s.uses?.startsWith('peter-evans/create-pull-request@'))).toBe(true);
  });

  it('delivery builds only when the commit has no image yet (tags are immutable), and a re-run pins the one there', () => {
    const deliver = workflow('deliver.yml');
    const image = deliver.jobs.image as Workflow['jobs'][string] & { outputs: Record<string, string> };
    const ids = image.steps.map((s) => (s as Step & { id?: string }).id);
    const existing = image.steps[ids.indexOf('existing')] as Step & { env?: Record<string, string> };
    const build = image.steps[ids.indexOf('build')] as Step & { if?: string };
    expect(ids.indexOf('existing')).toBeGreaterThan(-1);
    expect(ids.indexOf('existing')).toBeLessThan(ids.indexOf('build'));
    expect(existing.run).toContain('docker buildx imagetools inspect "$IMAGE"');
    expect(existing.env?.IMAGE).toBe('${{ vars.GAR_REPOSITORY_DEV }}/gateway:${{ steps.meta.outputs.tag }}');
    expect(build.with?.tags).toBe(existing.env?.IMAGE);
    expect(build.if).toBe("steps.existing.outputs.digest == ''");
    expect(image.outputs.digest).toBe('${{ steps.build.outputs.digest || steps.existing.outputs.digest }}');
  });

  it('promotion runs in the protected GitHub environment of its target', () => {
    const promote = workflow('promote.yml');
    expect(promote.jobs.promote.environment).toBe('${{ inputs.environment }}');
    expect(JSON.stringify(promote.on)).toContain('"stage"');
    expect(JSON.stringify(promote.on)).toContain('"prod"');
  });

  it.each([
    ['a tag', '      - uses: actions/checkout@v4'],
    ['a branch', '      - uses: actions/checkout@main'],
    ['a short SHA', '      - uses: actions/checkout@11bd719 # v4.2.2'],
    ['a SHA without its version', '      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683'],
    ['a docker image by tag', '      - uses: docker://alpine:3.20'],
  ])('the pin check rejects %s', (_, line) => {
    expect(checkWorkflowPins(`jobs:\n  a:\n    steps:\n${line}\n`, 'broken.yml').map((v) => v.rule)).toEqual(['action-pinned']);
  });
});

describe('Renovate', () => {
  const config = JSON.parse(readFileSync(join(REPO_ROOT, 'renovate.json'), 'utf8')) as {
    extends: string[];
    packageRules: { matchPackageNames?: string[]; matchManagers?: string[]; groupName?: string; enabled?: boolean }[];
  };

  it('groups NestJS, pins action digests and base images, and covers Terraform', () => {
    expect(config.extends).toEqual(expect.arrayContaining(['config:recommended', 'helpers:pinGitHubActionDigests', 'docker:pinDigests']));
    expect(config.packageRules.find((r) => r.matchPackageNames?.includes('@nestjs/**'))?.groupName).toBe('NestJS');
    for (const manager of ['github-actions', 'dockerfile', 'terraform']) {
      expect(config.packageRules.some((r) => r.matchManagers?.includes(manager))).toBe(true);
    }
  });

  it('leaves the gateway image tag of the overlays to the delivery workflow', () => {
    expect(config.packageRules.find((r) => r.matchManagers?.includes('kustomize'))).toMatchObject({ enabled: false });
  });
});
