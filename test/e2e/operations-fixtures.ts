/**
 * Fixtures for the operations e2e suite (`operations.e2e-spec.ts`): a strict Prometheus text
 * exposition parser, raw-socket probes (fresh connection, no keep-alive) for the drain tests, and
 * the run's products and policy file. Nothing here imports from `apps/` or `libs/`: the gateway is
 * a black box.
 */
import { randomBytes } from 'node:crypto';
import { request as httpRequest, type Agent } from 'node:http';
import { connect } from 'node:net';
import { HOST, waitFor, writeTempFile } from './harness';

/** Per-run suffix so provider keys and user ids are unique strings a log grep can find. */
export const RUN = randomBytes(4).toString('hex');

/** Provider keys (the mock takes any `sk-mock…` / `sk-ant-mock…` key): they must never be logged. */
export const OPENAI_KEY = `sk-mock-ops-${RUN}-${randomBytes(8).toString('hex')}`;
export const ANTHROPIC_KEY = `sk-ant-mock-ops-${RUN}-${randomBytes(8).toString('hex')}`;
export const GEMINI_KEY = `AIza-mock-ops-${RUN}-${randomBytes(8).toString('hex')}`;

export const PRODUCT = 'ops';
export const OPENAI_MODELS = ['gpt-4o', 'gpt-4o-mini'];
export const CLAUDE_MODEL = 'claude-3-5-sonnet-20241022';
/** A model-name prefix the ops product serves through a pattern (`ft:gpt-4o-mini:*`). */
export const FINE_TUNES = 'ft:gpt-4o-mini:';

export function opsProducts(mockUrl: string): Record<string, unknown> {
  return {
    [PRODUCT]: {
      providers: {
        // The pattern serves any fine-tune name a client sends: metrics must label it by the pattern.
        openai: { api_key: OPENAI_KEY, models: [...OPENAI_MODELS, `${FINE_TUNES}*`], base_url: `${mockUrl}/v1` },
        anthropic: { api_key: ANTHROPIC_KEY, models: [CLAUDE_MODEL], base_url: mockUrl },
        gemini: { api_key: GEMINI_KEY, models: ['gemini-1.5-pro'], base_url: mockUrl },
      },
    },
  };
}

/** A policy file with limits far above anything the suite sends (50 concurrent streams included). */
export function generousPolicyFile(): string {
  return writeTempFile(
    'policy.yaml',
    [
      'defaults:',
      '  limits:',
      '    requests_per_second: 100000',
      '    user_requests_per_second: 100000',
      '    daily_requests: 10000000',
      '    user_daily_requests: 10000000',
      '    daily_tokens: 1000000000',
      '    user_daily_tokens: 1000000000',
      '',
    ].join('\n'),
  );
}

// ---------------------------------------------------------------------------------------------
// Raw probes: a fresh TCP connection each time, so "refused" really means the listener is gone
// ---------------------------------------------------------------------------------------------

export type ProbeResult = { status: number; body: string } | { error: string };

/** GET over a new connection (no agent, `Connection: close`); a network error is returned, not thrown. */
export function probe(port: number, path: string, timeoutMs = 2_000): Promise<ProbeResult> {
  return new Promise((done) => {
    const req = httpRequest(
      { host: HOST, port, path, method: 'GET', agent: false, headers: { connection: 'close' }, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => done({ status: res.statusCode ?? 0, body }));
        res.on('error', (e: NodeJS.ErrnoException) => done({ error: e.code ?? e.message }));
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('probe timed out'), { code: 'PROBE_TIMEOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => done({ error: e.code ?? e.message }));
    req.end();
  });
}

/** Opens (and at once closes) a TCP connection: 'connected', or the connect error's code. */
export function tryConnect(port: number, timeoutMs = 1_000): Promise<string> {
  return new Promise((done) => {
    const socket = connect({ host: HOST, port });
    const timer = setTimeout(() => {
      socket.destroy();
      done('CONNECT_TIMEOUT');
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      done('connected');
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      done(e.code ?? e.message);
    });
  });
}

/** A raw connection that sent a chat request's headers and the first bytes of a body it never finishes. */
export interface UnfinishedUpload {
  /** Everything the gateway wrote back so far. */
  answer(): string;
  /** Resolves when the gateway (or the test) closed the connection. */
  closed: Promise<unknown>;
  /** When the headers were sent. */
  sentAt: number;
  /** The client goes away: its socket is destroyed without a word. */
  leave(): void;
}

/**
 * Sends headers (with `Content-Length: 1000`) and 9 bytes of body, then nothing more. Resolves once
 * the gateway holds the request: the headers ask `Expect: 100-continue`, and Node answers the
 * interim 100 only after it parsed them, so a SIGTERM sent next finds a request in flight rather
 * than an idle connection it may close at once (a race on a loaded machine). The interim answer is
 * not part of {@link UnfinishedUpload.answer}.
 */
export async function unfinishedUpload(
  port: number,
  /** A bearer token, or the credential headers to send instead (an HMAC signature's). */
  credential: string | Record<string, string>,
  requestId: string,
): Promise<UnfinishedUpload> {
  const headers = typeof credential === 'string' ? { Authorization: `Bearer ${credential}` } : credential;
  const socket = connect(port, HOST);
  let answer = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (answer += d));
  socket.on('error', () => undefined);
  const closed = new Promise((r) => socket.once('close', r));
  await new Promise((r) => socket.once('connect', r));
  const sentAt = Date.now();
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('')}Content-Type: application/json\r\n` + `X-Request-Id: ${requestId}\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n`,
  );
  const interim = 'HTTP/1.1 100 Continue\r\n\r\n';
  await waitFor('the gateway to take the request (100 Continue)', () => answer.startsWith(interim) || undefined, 5_000, 5);
  answer = answer.slice(interim.length);
  socket.write('{"model":');
  return { answer: () => answer, closed, sentAt, leave: () => socket.destroy() };
}

// ---------------------------------------------------------------------------------------------
// A strict Prometheus text exposition (0.0.4) parser
// ---------------------------------------------------------------------------------------------

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
/** A Go-`ParseFloat`-style number as Prometheus writes it. */
const NUMBER = /^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$/;

function parseNumber(text: string, where: string): number {
  if (!NUMBER.test(text)) throw new Error(`${where}: "${text}" is not a sample value`);
  if (/^\+?Inf$/.test(text)) return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  return Number(text);
}

/** HELP text: only `\\` and `\n` escapes are legal. */
function unescapeHelp(text: string, where: string): string {
  return text.replace(/\\(.?)/g, (_, c: string) => {
    if (c === '\\') return '\\';
    if (c === 'n') return '\n';
    throw new Error(`${where}: illegal escape "\\${c}" in HELP text`);
  });
}

/** `{a="x",b="y"}` starting at `text[0] === '{'`; returns the labels and the rest after `}`. */
function parseLabels(text: string, where: string): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1;
  if (text[i] === '}') return { labels, rest: text.slice(i + 1) };
  for (;;) {
    const eq = text.indexOf('=', i);
    if (eq === -1) throw new Error(`${where}: label without "="`);
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name) || name.startsWith('__')) throw new Error(`${where}: invalid label name "${name}"`);
    if (name in labels) throw new Error(`${where}: label "${name}" repeated`);
    if (text[eq + 1] !== '"') throw new Error(`${where}: label value of "${name}" is not quoted`);
    let j = eq + 2;
    let value = '';
    for (;;) {
      const c = text[j];
      if (c === undefined) throw new Error(`${where}: unterminated label value`);
      if (c === '\n') throw new Error(`${where}: raw newline in a label value`);
      if (c === '"') break;
      if (c === '\\') {
        const next = text[j + 1];
        if (next === '\\') value += '\\';
        else if (next === '"') value += '"';
        else if (next === 'n') value += '\n';
        else throw new Error(`${where}: illegal escape "\\${next}" in a label value`);
        j += 2;
        continue;
      }
      value += c;
      j += 1;
    }
    labels[name] = value;
    j += 1;
    if (text[j] === '}') return { labels, rest: text.slice(j + 1) };
    if (text[j] !== ',') throw new Error(`${where}: expected "," or "}" after label "${name}"`);
    i = j + 1;
  }
}

/** The family a sample name belongs to (histogram/summary suffixes folded in). */
function familyOf(sampleName: string, families: Map<string, Family>): Family | undefined {
  const direct = families.get(sampleName);
  if (direct) return direct;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sampleName.endsWith(suffix)) continue;
    const family = families.get(sampleName.slice(0, -suffix.length));
    if (family && (family.type === 'histogram' || (family.type === 'summary' && suffix !== '_bucket'))) return family;
  }
  return undefined;
}

/**
 * Parses the text format strictly: every line is `# HELP name text`, `# TYPE name type` or a
 * sample `name{label="value",...} value`; HELP and TYPE come once per family, before its samples;
 * a family's samples are contiguous; no series is repeated; histograms have cumulative buckets
 * ending in `le="+Inf"` equal to `_count`. Throws on the first violation, naming the line.
 */
export function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  const families = new Map<string, Family>();
  const seenSeries = new Set<string>();
  const closed = new Set<string>();
  let current: Family | undefined;
  const lines = text.slice(0, -1).split('\n');
  lines.forEach((line, index) => {
    const where = `line ${index + 1} (${JSON.stringify(line.slice(0, 120))})`;
    // "Empty lines are ignored" (text format 0.0.4); prom-client separates families with one.
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      if (!m) throw new Error(`${where}: a comment line must be "# HELP name text" or "# TYPE name type"`);
      const [, kind, name, rest] = m;
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: invalid metric name`);
      if (closed.has(name)) throw new Error(`${where}: family ${name} continues after another family`);
      let family = families.get(name);
      if (family && family.samples.length) throw new Error(`${where}: ${kind} after samples of ${name}`);
      if (!family) {
        family = { name, help: '', type: 'untyped', samples: [] };
        families.set(name, family);
      }
      if (current && current !== family) closed.add(current.name);
      current = family;
      if (kind === 'HELP') {
        if (family.help) throw new Error(`${where}: second HELP for ${name}`);
        family.help = unescapeHelp(rest, where);
      } else {
        if (!TYPES.has(rest)) throw new Error(`${where}: unknown type "${rest}"`);
        if ((family as Family & { typed?: boolean }).typed) throw new Error(`${where}: second TYPE for ${name}`);
        (family as Family & { typed?: boolean }).typed = true;
        family.type = rest as Family['type'];
      }
      return;
    }
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nameMatch) throw new Error(`${where}: a sample must start with a metric name`);
    const name = nameMatch[0];
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith('{')) ({ labels, rest } = parseLabels(rest, where));
    const valueMatch = /^ (\S+)(?: (-?\d+))?$/.exec(rest);
    if (!valueMatch) throw new Error(`${where}: expected " value [timestamp]" after the labels`);
    const value = parseNumber(valueMatch[1], where);
    const family = familyOf(name, families);
    if (!family) throw new Error(`${where}: sample ${name} has no preceding HELP/TYPE`);
    if (family !== current) throw new Error(`${where}: sample of ${family.name} is not contiguous with its family`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seenSeries.has(key)) throw new Error(`${where}: series repeated`);
    seenSeries.add(key);
    if (name.endsWith('_bucket') && family.type === 'histogram' && !('le' in labels)) throw new Error(`${where}: bucket without le`);
    family.samples.push({ name, labels, value });
  });
  for (const family of families.values()) if (family.type === 'histogram') checkHistogram(family);
  return families;
}

/** Buckets are cumulative, end in `+Inf`, and `+Inf` equals `_count`, for every label set. */
function checkHistogram(family: Family): void {
  const groups = new Map<string, { buckets: Array<[number, number]>; count?: number; sum?: number }>();
  for (const s of family.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const group = groups.get(key) ?? { buckets: [] };
    groups.set(key, group);
    if (s.name === `${family.name}_bucket`) group.buckets.push([parseNumber(le, `${family.name} le`), s.value]);
    else if (s.name === `${family.name}_count`) group.count = s.value;
    else if (s.name === `${family.name}_sum`) group.sum = s.value;
    else throw new Error(`${family.name}: unexpected sample ${s.name} in a histogram`);
  }
  for (const [key, g] of groups) {
    if (g.count === undefined || g.sum === undefined) throw new Error(`${family.name}${key}: _count or _sum missing`);
    const last = g.buckets[g.buckets.length - 1];
    if (!last || last[0] !== Infinity) throw new Error(`${family.name}${key}: no le="+Inf" bucket last`);
    for (let i = 1; i < g.buckets.length; i++) {
      if (g.buckets[i][0] <= g.buckets[i - 1][0]) throw new Error(`${family.name}${key}: le not increasing`);
      if (g.buckets[i][1] < g.buckets[i - 1][1]) throw new Error(`${family.name}${key}: buckets not cumulative`);
    }
    if (last[1] !== g.count) throw new Error(`${family.name}${key}: +Inf bucket ${last[1]} != _count ${g.count}`);
  }
}

/** The samples named `name` whose labels include `match`. */
export function samples(families: Map<string, Family>, name: string, match: Record<string, string> = {}): Sample[] {
  const family = familyOf(name, families);
  if (!family) return [];
  return family.samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

/** The sum of the values of {@link samples}. */
export function total(families: Map<string, Family>, name: string, match: Record<string, string> = {}): number {
  return samples(families, name, match).reduce((sum, s) => sum + s.value, 0);
}

/** Cloud Logging's LogSeverity names. */
export const CLOUD_SEVERITIES = new Set(['DEFAULT', 'DEBUG', 'INFO', 'NOTICE', 'WARNING', 'ERROR', 'CRITICAL', 'ALERT', 'EMERGENCY']);

/** RFC 3339 date-time (with `T`, seconds, optional fraction, `Z` or an offset) that also parses. */
export function isRfc3339(value: unknown): boolean {
  return (
    typeof value === 'string' &&
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/.test(value) &&
    !Number.isNaN(Date.parse(value))
  );
}

/**
 * Wraps a fetch so every response body is also read as text on the side (a `tee`), keyed by the
 * request's `X-Request-Id`: the SDK consumes one branch, the test reads the raw SSE off the other.
 */
export function rawBodies(base: typeof fetch): { fetch: typeof fetch; bodies: Map<string, Promise<string>> } {
  const bodies = new Map<string, Promise<string>>();
  const wrapped = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const res = await base(input, init);
    const id = new Headers(init?.headers).get('x-request-id');
    if (!id || !res.body) return res;
    const [forSdk, forTest] = res.body.tee();
    bodies.set(
      id,
      new Response(forTest).text().catch((error: unknown) => `<<body error: ${(error as Error).message}>>`),
    );
    return new Response(forSdk, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  return { fetch: wrapped, bodies };
}

/**
 * POSTs JSON through `agent` (a keep-alive agent stands in for a load balancer that keeps its
 * backend connections open) and reads the answer as text. `first` resolves on the first body bytes.
 */
export function postThroughAgent(
  port: number,
  agent: Agent,
  path: string,
  headers: Record<string, string>,
  body: unknown,
): { first: Promise<void>; done: Promise<{ status: number; text: string }> } {
  let markFirst: () => void = () => undefined;
  const first = new Promise<void>((r) => (markFirst = r));
  const done = new Promise<{ status: number; text: string }>((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = httpRequest(
      {
        host: HOST,
        port,
        path,
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)), ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
          markFirst();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
  return { first, done };
}
