import { parse } from '@cdktf/hcl2json';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { REPO_ROOT, run, type Violation } from './tools';

/** One declared input variable. */
export interface VariableDecl {
  required: boolean;
  typed: boolean;
  described: boolean;
}

/** One `module` block. */
export interface ModuleCall {
  source: string;
  /** Arguments given (meta-arguments excluded). */
  args: Set<string>;
  file: string;
}

/** What the checks need to know about one Terraform module (a directory of .tf files). */
export interface TerraformModule {
  dir: string;
  files: string[];
  variables: Map<string, VariableDecl>;
  outputs: Set<string>;
  locals: Set<string>;
  calls: Map<string, ModuleCall>;
  /** References found in expressions: `var.x`, `local.x`, `module.x.y`, with the file. */
  references: { kind: 'var' | 'local' | 'module'; name: string; attribute?: string; file: string }[];
  /** `terraform { backend "<type>" {...} }` types. */
  backends: string[];
  /** Provider requirements: name → version constraint (empty when none). */
  requiredProviders: Map<string, string>;
  /** Literal values of attributes named project / project_id (hard-coded project ids). */
  literalProjects: { file: string; value: string }[];
  /** IAM grants (`*_iam_member`, `*_iam_binding`): the resource type and the role as written. */
  iamGrants: { file: string; type: string; name: string; role: string }[];
  parseErrors: string[];
}

/** Arguments of a module block that are not module inputs. */
const MODULE_META_ARGUMENTS = new Set(['source', 'version', 'providers', 'count', 'for_each', 'depends_on']);

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** Every directory under `root` holding .tf files. */
export function findModuleDirs(root: string): string[] {
  const dirs: string[] = [];
  const walk = (dir: string): void => {
    const entries = readdirSync(dir, { withFileTypes: true });
    if (entries.some((e) => e.isFile() && e.name.endsWith('.tf'))) dirs.push(dir);
    for (const e of entries) if (e.isDirectory() && !e.name.startsWith('.')) walk(join(dir, e.name));
  };
  walk(root);
  return dirs.sort();
}

/** Parses every .tf file of one module directory with hcl2json. */
export async function loadModule(dir: string): Promise<TerraformModule> {
  const module: TerraformModule = {
    dir,
    files: readdirSync(dir)
      .filter((f) => f.endsWith('.tf'))
      .sort(),
    variables: new Map(),
    outputs: new Set(),
    locals: new Set(),
    calls: new Map(),
    references: [],
    backends: [],
    requiredProviders: new Map(),
    literalProjects: [],
    iamGrants: [],
    parseErrors: [],
  };
  for (const file of module.files) {
    let doc: Record<string, Json>;
    try {
      doc = (await parse(file, readFileSync(join(dir, file), 'utf8'))) as Record<string, Json>;
    } catch (error) {
      module.parseErrors.push(`${file}: ${error instanceof Error ? error.message : String(error)}`);
      continue;
    }
    collect(module, file, doc);
  }
  return module;
}

function blocks(value: Json | undefined): Record<string, Json>[] {
  return Array.isArray(value)
    ? value.filter((b): b is Record<string, Json> => typeof b === 'object' && b !== null && !Array.isArray(b))
    : [];
}

function labelled(value: Json | undefined): [string, Record<string, Json>][] {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return [];
  return Object.entries(value).flatMap(([label, body]) => blocks(body).map((b): [string, Record<string, Json>] => [label, b]));
}

function collect(module: TerraformModule, file: string, doc: Record<string, Json>): void {
  for (const [name, body] of labelled(doc.variable)) {
    module.variables.set(name, {
      required: !('default' in body),
      typed: 'type' in body,
      described: typeof body.description === 'string' && body.description.length > 0,
    });
  }
  for (const [name] of labelled(doc.output)) module.outputs.add(name);
  for (const body of blocks(doc.locals)) for (const name of Object.keys(body)) module.locals.add(name);
  for (const [name, body] of labelled(doc.module)) {
    module.calls.set(name, {
      source: typeof body.source === 'string' ? body.source : '',
      args: new Set(Object.keys(body).filter((k) => !MODULE_META_ARGUMENTS.has(k))),
      file,
    });
  }
  for (const body of blocks(doc.terraform)) {
    for (const [type] of labelled(body.backend)) module.backends.push(type);
    for (const req of blocks(body.required_providers)) {
      for (const [name, spec] of Object.entries(req)) {
        const version =
          typeof spec === 'object' && spec !== null && !Array.isArray(spec) && typeof spec.version === 'string' ? spec.version : '';
        module.requiredProviders.set(name, version);
      }
    }
  }
  for (const [type, byName] of Object.entries(doc.resource && typeof doc.resource === 'object' ? doc.resource : {})) {
    if (!/_iam_(member|binding)$/.test(type)) continue;
    for (const [name, body] of labelled(byName)) {
      if (typeof body.role === 'string') module.iamGrants.push({ file, type, name, role: body.role });
    }
  }
  const templates: string[] = [];
  walkValues(doc, (key, value) => {
    if ((key === 'project' || key === 'project_id') && typeof value === 'string' && !value.includes('${')) {
      module.literalProjects.push({ file, value });
    }
    if (typeof value === 'string') templates.push(...expressions(value));
  });
  // hcl2json gives each attribute as a template string. References are read from its `${...}`
  // parts (nested templates included) by pattern: hcl2json's own getReferencesInExpression misses
  // references in the body of a `for` expression (`[for c in x : var.y]` yields nothing).
  for (const expression of templates) {
    for (const m of expression.matchAll(/(?<![\w.])(var|local|module)\.([A-Za-z_][\w-]*)(?:\.([A-Za-z_][\w-]*))?/g)) {
      module.references.push({ kind: m[1] as 'var' | 'local' | 'module', name: m[2], attribute: m[3], file });
    }
  }
}

function walkValues(value: Json, visit: (key: string, value: Json) => void, key = ''): void {
  visit(key, value);
  if (Array.isArray(value)) for (const item of value) walkValues(item, visit, key);
  else if (value && typeof value === 'object') for (const [k, item] of Object.entries(value)) walkValues(item, visit, k);
}

/**
 * The top-level `${ ... }` interpolations of an hcl2json template string. Inside one, string
 * literals may hold templates of their own (`"x=${y}"`), so quotes and braces are tracked per
 * nesting level.
 */
export function expressions(text: string): string[] {
  const found: string[] = [];
  // Index just past the `}` closing the expression that starts at `from` (after `${` or `%{`).
  const endOfExpression = (from: number): number => {
    let depth = 0;
    for (let i = from; i < text.length; i++) {
      const c = text[i];
      if (c === '"') i = endOfString(i + 1) - 1;
      else if (c === '{') depth++;
      else if (c === '}') {
        if (depth === 0) return i + 1;
        depth--;
      }
    }
    return text.length;
  };
  // Index just past the `"` closing the string literal whose content starts at `from`.
  const endOfString = (from: number): number => {
    for (let i = from; i < text.length; i++) {
      const c = text[i];
      if (c === '\\') i++;
      else if (c === '"') return i + 1;
      else if ((c === '$' || c === '%') && text[i + 1] === '{') i = endOfExpression(i + 2) - 1;
    }
    return text.length;
  };
  for (let i = 0; i < text.length; i++) {
    if ((text[i] === '$' || text[i] === '%') && text[i + 1] === '{') {
      const end = endOfExpression(i + 2);
      if (text[i] === '$') found.push(text.slice(i + 2, end - 1));
      i = end - 1;
    }
  }
  return found;
}

/** `terraform fmt -check -recursive` over `dir`; each unformatted file is a violation. */
export function checkFormat(dir: string): Violation[] {
  const result = run('terraform', ['fmt', '-check', '-recursive', '-list=true', dir]);
  if (result.status === 0) return [];
  const files = result.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  if (files.length === 0)
    return [{ where: relative(REPO_ROOT, dir), rule: 'tf-fmt', message: result.stderr.trim() || `terraform fmt exited ${result.status}` }];
  return files.map((f) => ({
    where: relative(REPO_ROOT, resolve(dir, f)),
    rule: 'tf-fmt',
    message: 'not formatted (run terraform fmt -recursive)',
  }));
}

/** Options of {@link checkModules}. */
export interface ModuleCheckOptions {
  /** Directories that are root modules of an environment (backend, provider pins). */
  environments?: readonly string[];
}

/**
 * Static checks over every module under `root`: each file parses, each `var.` reference is
 * declared in its module and each variable is typed and described, each `local.`/`module.`
 * reference resolves, each module call's source exists, passes every required variable of the
 * module and nothing it does not declare; environments have a GCS backend and pinned providers;
 * no project id is hard-coded.
 */
export async function checkModules(root: string, options: ModuleCheckOptions = {}): Promise<Violation[]> {
  const v: Violation[] = [];
  const modules = new Map<string, TerraformModule>();
  for (const dir of findModuleDirs(root)) modules.set(resolve(dir), await loadModule(dir));
  const load = async (dir: string): Promise<TerraformModule> => {
    const key = resolve(dir);
    const cached = modules.get(key);
    if (cached) return cached;
    const loaded = await loadModule(dir);
    modules.set(key, loaded);
    return loaded;
  };
  const rel = (dir: string, file?: string): string => relative(REPO_ROOT, file ? join(dir, file) : dir) || '.';

  for (const module of [...modules.values()]) {
    const { dir } = module;
    for (const error of module.parseErrors) v.push({ where: rel(dir), rule: 'tf-parse', message: error });
    for (const [name, decl] of module.variables) {
      if (!decl.typed) v.push({ where: rel(dir), rule: 'tf-variable-typed', message: `variable "${name}" has no type` });
      if (!decl.described) v.push({ where: rel(dir), rule: 'tf-variable-described', message: `variable "${name}" has no description` });
    }
    for (const ref of module.references) {
      const where = rel(dir, ref.file);
      if (ref.kind === 'var' && !module.variables.has(ref.name))
        v.push({ where, rule: 'var-declared', message: `var.${ref.name} is not declared in this module` });
      if (ref.kind === 'local' && !module.locals.has(ref.name))
        v.push({ where, rule: 'local-declared', message: `local.${ref.name} is not declared in this module` });
      if (ref.kind === 'module') {
        const call = module.calls.get(ref.name);
        if (!call) v.push({ where, rule: 'module-ref', message: `module.${ref.name} is not called in this module` });
        else if (ref.attribute && isLocal(call.source) && existsSync(join(dir, call.source))) {
          const callee = await load(join(dir, call.source));
          if (!callee.outputs.has(ref.attribute))
            v.push({
              where,
              rule: 'module-output',
              message: `module.${ref.name}.${ref.attribute}: ${call.source} has no output "${ref.attribute}"`,
            });
        }
      }
    }
    // Secret Manager roles are granted on each secret, never on a project, folder or organization,
    // where they would open every secret there (docs/runbook.md, "Secrets").
    for (const grant of module.iamGrants) {
      if (grant.role.includes('secretmanager') && !grant.type.startsWith('google_secret_manager_secret_iam_'))
        v.push({
          where: rel(dir, grant.file),
          rule: 'tf-secret-iam',
          message: `${grant.type}.${grant.name} grants ${grant.role} beyond single secrets; grant it per secret (google_secret_manager_secret_iam_member)`,
        });
    }
    for (const { file, value } of module.literalProjects) {
      v.push({
        where: rel(dir, file),
        rule: 'tf-project-literal',
        message: `project id "${value}" is hard-coded; take it from a variable`,
      });
    }
    for (const [name, call] of module.calls) {
      const where = rel(dir, call.file);
      if (!isLocal(call.source)) {
        v.push({
          where,
          rule: 'module-source',
          message: `module "${name}": source "${call.source}" is not a local path in this repository`,
        });
        continue;
      }
      const target = join(dir, call.source);
      if (!existsSync(target) || !statSync(target).isDirectory() || !readdirSync(target).some((f) => f.endsWith('.tf'))) {
        v.push({ where, rule: 'module-source', message: `module "${name}": source ${call.source} is not a directory with .tf files` });
        continue;
      }
      const callee = await load(target);
      for (const [variable, decl] of callee.variables) {
        if (decl.required && !call.args.has(variable))
          v.push({
            where,
            rule: 'module-required-vars',
            message: `module "${name}" (${call.source}) misses required variable "${variable}"`,
          });
      }
      for (const arg of call.args) {
        if (!callee.variables.has(arg))
          v.push({ where, rule: 'module-unknown-arg', message: `module "${name}" (${call.source}) has no variable "${arg}"` });
      }
    }
  }

  for (const envDir of options.environments ?? []) {
    const env = await load(envDir);
    if (!env.backends.includes('gcs')) v.push({ where: rel(envDir), rule: 'tf-backend', message: 'no backend "gcs" block' });
    const google = env.requiredProviders.get('google');
    if (!google) v.push({ where: rel(envDir), rule: 'tf-providers', message: 'required_providers does not pin google' });
  }
  return v;
}

function isLocal(source: string): boolean {
  return source.startsWith('./') || source.startsWith('../');
}

/** The literal string arguments a root module passes to one module call (e.g. CIDRs). */
export async function moduleArguments(dir: string, moduleName: string): Promise<Record<string, Json>> {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.tf'))) {
    const doc = (await parse(file, readFileSync(join(dir, file), 'utf8'))) as Record<string, Json>;
    const found = labelled(doc.module).find(([name]) => name === moduleName);
    if (found) return found[1];
  }
  throw new Error(`${relative(REPO_ROOT, dir)}: no module "${moduleName}"`);
}

/** The default of a module's variable as hcl2json gives it (undefined when it has none). */
export async function variableDefault(dir: string, name: string): Promise<Json | undefined> {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.tf'))) {
    const doc = (await parse(file, readFileSync(join(dir, file), 'utf8'))) as Record<string, Json>;
    const found = labelled(doc.variable).find(([n]) => n === name);
    if (found) return found[1].default;
  }
  return undefined;
}

/** The value of a module's local as hcl2json gives it (undefined when it has none). */
export async function localValue(dir: string, name: string): Promise<Json | undefined> {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.tf'))) {
    const doc = (await parse(file, readFileSync(join(dir, file), 'utf8'))) as Record<string, Json>;
    for (const body of blocks(doc.locals)) if (name in body) return body[name];
  }
  return undefined;
}

/** Attribute values of a .tfvars file (HCL). */
export async function readTfvars(file: string): Promise<Record<string, Json>> {
  return (await parse(file, readFileSync(file, 'utf8'))) as Record<string, Json>;
}

/** Every `jsonPayload.<field>` a module's expressions or strings mention (log-based metrics). */
export function jsonPayloadFields(dir: string): Set<string> {
  const fields = new Set<string>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.tf'))) {
    for (const m of readFileSync(join(dir, file), 'utf8').matchAll(/jsonPayload\.([A-Za-z_][\w]*)/g)) fields.add(m[1]);
  }
  return fields;
}
