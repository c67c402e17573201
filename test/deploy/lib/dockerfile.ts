import ignore from '@balena/dockerignore';
import { DockerfileParser, type From } from 'dockerfile-ast';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Violation } from './tools';

/** Parsed `.dockerignore`: `included(path)` says whether a context path reaches the build. */
export function loadDockerignore(text: string): { included(path: string): boolean } {
  const rules = ignore().add(text.split('\n'));
  return { included: (path: string) => !rules.ignores(path) };
}

/** Names that must never be copied into an image or set in its environment. */
const SECRET_PATH = /(^|\/)(\.env(\..*)?|.*\.pem|.*\.key|dev)(\/|$)/;
const SECRET_NAME = /(SECRET|PASSWORD|TOKEN|API_KEY|PRIVATE|CREDENTIAL)/i;

/**
 * Rules for the Dockerfile: multi-stage, every base image pinned by tag or digest (not latest),
 * the final stage runs as a non-root user under an init process, production dependencies only
 * in the final stage (`npm ci --omit=dev`), every COPY from the context names files that exist
 * and pass .dockerignore, and no secret file or variable in any layer.
 */
export function checkDockerfile(dockerfile: string, contextDir: string, dockerignore: string): Violation[] {
  const v: Violation[] = [];
  const add = (rule: string, message: string, line?: number): void => {
    v.push({ where: `Dockerfile${line === undefined ? '' : `:${line + 1}`}`, rule, message });
  };
  const df = DockerfileParser.parse(dockerfile);
  const context = loadDockerignore(dockerignore);
  const froms = df.getFROMs();
  const stages = new Set(froms.map((f) => f.getBuildStage()).filter((s): s is string => Boolean(s)));
  const args = new Map<string, string>();
  for (const arg of df.getInitialARGs()) {
    const [name, value] = arg.getArgumentsContent()?.split('=') ?? [];
    if (name && value) args.set(name.trim(), value.trim());
  }

  if (froms.length < 2)
    add('docker-multi-stage', `${froms.length} stage(s): build with dev dependencies and run with production ones in separate stages`);
  for (const from of froms) checkBase(from, stages, args, (m) => add('docker-base-pinned', m, from.getRange().start.line));

  const instructions = df.getInstructions();
  const finalFrom = froms[froms.length - 1];
  const finalStart = finalFrom ? finalFrom.getRange().start.line : 0;
  let user: string | undefined;
  let entrypoint = '';
  for (const instruction of instructions) {
    const line = instruction.getRange().start.line;
    const keyword = instruction.getKeyword();
    const content = instruction.getArgumentsContent() ?? '';
    if (keyword === 'COPY' || keyword === 'ADD') {
      // Flags are not part of the arguments: read --from from the instruction's text.
      const fromStage = /--from=(\S+)/.exec(instruction.getTextContent())?.[1];
      const parts = content.trim().split(/\s+/);
      const sources = parts.slice(0, -1);
      for (const source of sources) {
        if (SECRET_PATH.test(source))
          add('docker-no-secrets', `${keyword} ${source} would put a secret or development key in a layer`, line);
        if (fromStage) continue;
        if (!existsSync(join(contextDir, source)))
          add('docker-copy-source', `${keyword} ${source}: no such file in the build context`, line);
        else if (!context.included(source.replace(/^\.\//, '').replace(/\/$/, '')))
          add('docker-copy-source', `${keyword} ${source} is excluded by .dockerignore`, line);
      }
      if (fromStage && !stages.has(fromStage)) add('docker-copy-source', `--from=${fromStage} is not a stage of this Dockerfile`, line);
    }
    if ((keyword === 'ENV' || keyword === 'ARG') && SECRET_NAME.test(content))
      add('docker-no-secrets', `${keyword} ${content.split(/[=\s]/)[0]} looks like a secret; secrets arrive at run time`, line);
    if (line >= finalStart) {
      if (keyword === 'USER') user = content.trim();
      if (keyword === 'ENTRYPOINT') entrypoint = content;
      if (keyword === 'RUN' && /\bnpm (ci|install)\b/.test(content) && !/--omit=dev/.test(content))
        add('docker-prod-deps', 'the final stage installs dev dependencies', line);
    }
  }
  if (!user || /^(root|0)(:|$)/.test(user)) add('docker-non-root', `the final stage runs as ${user ?? 'root (no USER)'}`);
  if (!/\b(tini|dumb-init)\b/.test(entrypoint))
    add('docker-init', 'the final stage has no init process (tini or dumb-init) as ENTRYPOINT for PID 1');

  // The node_modules of the final stage must come from a stage that installed with --omit=dev.
  const nodeModulesCopy = instructions.find(
    (i) => i.getRange().start.line >= finalStart && i.getKeyword() === 'COPY' && /node_modules/.test(i.getArgumentsContent() ?? ''),
  );
  const sourceStage = nodeModulesCopy && /--from=(\S+)/.exec(nodeModulesCopy.getTextContent())?.[1];
  if (!sourceStage) add('docker-prod-deps', 'the final stage copies no node_modules from a production-only stage');
  else {
    const stageFrom = froms.find((f) => f.getBuildStage() === sourceStage);
    const next = froms.find((f) => f.getRange().start.line > (stageFrom?.getRange().start.line ?? 0));
    const stageInstructions = instructions.filter(
      (i) =>
        i.getRange().start.line > (stageFrom?.getRange().start.line ?? 0) &&
        i.getRange().start.line < (next?.getRange().start.line ?? Infinity),
    );
    if (!stageInstructions.some((i) => i.getKeyword() === 'RUN' && /npm ci\b.*--omit=dev/.test(i.getArgumentsContent() ?? ''))) {
      add('docker-prod-deps', `stage ${sourceStage} (whose node_modules the image ships) does not run npm ci --omit=dev`);
    }
  }
  return v;
}

function checkBase(from: From, stages: ReadonlySet<string>, args: ReadonlyMap<string, string>, error: (m: string) => void): void {
  const image = from.getImage() ?? '';
  if (stages.has(image)) return;
  // The reference with its ARGs substituted (`FROM ${NODE_IMAGE}` or `FROM node:${VERSION}-slim`),
  // then split into name, tag and digest.
  const substitute = (text: string): string =>
    text.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => args.get(a ?? b ?? '') ?? '');
  const resolved = substitute(
    `${image}${from.getImageTag() ? `:${from.getImageTag()}` : ''}${from.getImageDigest() ? `@${from.getImageDigest()}` : ''}`,
  );
  const at = resolved.indexOf('@');
  const digest = at >= 0 ? resolved.slice(at + 1) : undefined;
  const nameAndTag = at >= 0 ? resolved.slice(0, at) : resolved;
  const colon = nameAndTag.lastIndexOf(':');
  const tag = colon > nameAndTag.lastIndexOf('/') ? nameAndTag.slice(colon + 1) : undefined;
  if (!digest && !tag) error(`${resolved} has no tag or digest (it would mean latest)`);
  if (tag === 'latest') error(`${resolved} uses the latest tag`);
}

/** Reads the repository's Dockerfile and .dockerignore and checks them. */
export function checkRepositoryDockerfile(root: string): Violation[] {
  return checkDockerfile(readFileSync(join(root, 'Dockerfile'), 'utf8'), root, readFileSync(join(root, '.dockerignore'), 'utf8'));
}
