import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

/** The repository root (test/deploy/lib → ../../..). */
export const REPO_ROOT = join(__dirname, '..', '..', '..');

/** One broken rule: where, which rule, and what is wrong. */
export interface Violation {
  /** File, overlay or object the rule is about (`Deployment/keygate in k8s/overlays/dev`). */
  where: string;
  /** Short rule id, stable for tests (`image-tag`, `var-declared`, ...). */
  rule: string;
  message: string;
}

/** Renders violations one per line, for assertion messages. */
export function describe(violations: readonly Violation[]): string {
  return violations.map((v) => `[${v.rule}] ${v.where}: ${v.message}`).join('\n');
}

/** Result of a finished external command. */
export interface CommandResult {
  status: number;
  stdout: string;
  stderr: string;
}

const INSTALL_HINTS: Readonly<Record<string, string>> = {
  kubectl: 'install kubectl 1.27+ (it bundles kustomize): https://kubernetes.io/docs/tasks/tools/',
  terraform: 'install Terraform 1.5+: https://developer.hashicorp.com/terraform/install',
};

/**
 * Runs a tool synchronously. A tool missing from PATH is an error that says how to get it, never
 * a silently skipped check.
 */
export function run(tool: string, args: readonly string[], options: { cwd?: string; timeoutMs?: number } = {}): CommandResult {
  const result = spawnSync(tool, args, {
    cwd: options.cwd ?? REPO_ROOT,
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 60_000,
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, TF_IN_AUTOMATION: '1', NO_COLOR: '1' },
  });
  if (result.error) {
    const code = (result.error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new Error(`${tool} is not on PATH: ${INSTALL_HINTS[tool] ?? `install ${tool}`}`);
    }
    throw result.error;
  }
  return { status: result.status ?? 1, stdout: result.stdout, stderr: result.stderr };
}
