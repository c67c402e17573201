import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Violation } from './tools';

/**
 * Every `uses:` of a workflow pins a third-party action by full commit SHA with the version in a
 * trailing comment (`owner/repo@<40 hex> # v1.2.3`), so a moved tag cannot change what runs and
 * Renovate can still read the version. Local actions (`./...`) and `docker://` images pinned by
 * digest are allowed.
 */
export function checkWorkflowPins(text: string, file: string): Violation[] {
  const v: Violation[] = [];
  text.split('\n').forEach((line, index) => {
    const m = /^\s*(?:-\s+)?uses:\s*["']?([^"'\s#]+)["']?\s*(#.*)?$/.exec(line);
    if (!m) return;
    const [, ref, comment] = m;
    const where = `${file}:${index + 1}`;
    if (ref.startsWith('./')) return;
    if (ref.startsWith('docker://')) {
      if (!/@sha256:[0-9a-f]{64}$/.test(ref)) v.push({ where, rule: 'action-pinned', message: `${ref} is not pinned by digest` });
      return;
    }
    const [, version] = ref.split('@');
    if (!version || !/^[0-9a-f]{40}$/.test(version))
      v.push({ where, rule: 'action-pinned', message: `${ref} is not pinned by a full commit SHA` });
    else if (!comment || !/#\s*v?\d+(\.\d+)*/.test(comment))
      v.push({ where, rule: 'action-pinned', message: `${ref} has no "# vX.Y.Z" comment naming the pinned version` });
  });
  return v;
}

/** Checks every workflow file under .github/workflows. */
export function checkRepositoryWorkflows(root: string): Violation[] {
  const dir = join(root, '.github', 'workflows');
  return readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .flatMap((f) => checkWorkflowPins(readFileSync(join(dir, f), 'utf8'), `.github/workflows/${f}`));
}
