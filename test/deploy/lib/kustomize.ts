import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT, run } from './tools';

/** A Kubernetes object as rendered (plain JSON data). */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

/** A rendered kustomization: where it came from and its objects. */
export interface Rendered {
  /** Repository-relative path of the kustomization directory. */
  target: string;
  objects: K8sObject[];
}

/** Every directory under `root` that holds a kustomization of kind Kustomization (not Component). */
export function findKustomizations(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    const file = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'].map((f) => join(dir, f)).find((f) => existsSync(f));
    if (file && !isComponent(file)) found.push(dir);
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(join(dir, entry.name));
    }
  };
  walk(root);
  return found.sort();
}

function isComponent(file: string): boolean {
  const first = parseAllDocuments(readFileSync(file, 'utf8'))[0]?.toJS() as { kind?: string } | undefined;
  return first?.kind === 'Component';
}

/**
 * Renders a kustomization with `kubectl kustomize` and parses the output. A kustomization that
 * does not render is an error carrying kubectl's message.
 */
export function render(dir: string): Rendered {
  const target = relative(REPO_ROOT, dir) || '.';
  const result = run('kubectl', ['kustomize', dir]);
  if (result.status !== 0) {
    throw new Error(`kubectl kustomize ${target} failed:\n${result.stderr.trim()}`);
  }
  return { target, objects: parseObjects(result.stdout, target) };
}

/** Parses a multi-document YAML stream into objects; YAML errors are thrown with the source. */
export function parseObjects(text: string, source: string): K8sObject[] {
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`${source}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    if (!isObject(value)) throw new Error(`${source}: a document is not a Kubernetes object`);
    objects.push(value);
  }
  return objects;
}

function isObject(value: unknown): value is K8sObject {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  const metadata = v.metadata as Record<string, unknown> | undefined;
  return typeof v.apiVersion === 'string' && typeof v.kind === 'string' && typeof metadata?.name === 'string';
}

/** `Kind/name` (and namespace when set), for messages. */
export function idOf(object: K8sObject): string {
  return `${object.kind}/${object.metadata.name}${object.metadata.namespace ? ` (${object.metadata.namespace})` : ''}`;
}

/** Deep copy, so a test can break one object without touching the others. */
export function clone<T>(value: T): T {
  return structuredClone(value);
}
