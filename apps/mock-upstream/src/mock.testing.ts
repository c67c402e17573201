import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeMockServer, createMockServer, type MockServerOptions } from './mock.server';
import type { StatsSnapshot } from './mock.stats';
import type { ResponseObject } from './openai.responses.types';

/**
 * Helpers shared by the specs: start the mock in-process on port 0 and talk to
 * it over real HTTP with the global fetch (undici). Free of jest globals so it
 * type-checks in the app build too.
 */

export interface RunningMock {
  server: Server;
  base: string;
  close: () => Promise<void>;
}

export async function startMock(options: MockServerOptions = {}): Promise<RunningMock> {
  const server = createMockServer(options);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, base: `http://127.0.0.1:${port}`, close: () => closeMockServer(server) };
}

export const OPENAI_AUTH = { authorization: 'Bearer sk-mock-test' };
export const ANTHROPIC_AUTH = { 'x-api-key': 'sk-ant-mock-test', 'anthropic-version': '2023-06-01' };
export const GEMINI_AUTH = { 'x-goog-api-key': 'AIza-mock-test' };

export function postJson(
  base: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal,
  });
}

/** Parses a JSON body as the given wire type (the specs then assert on it). */
export async function readJson<T>(res: Response): Promise<T> {
  return JSON.parse(await res.text()) as T;
}

export async function getStats(base: string): Promise<StatsSnapshot> {
  const res = await fetch(`${base}/__mock/stats`);
  // Parse in this realm: under Jest, objects from fetch's own JSON parser fail toStrictEqual's prototype check.
  return JSON.parse(await res.text()) as StatsSnapshot;
}

export interface SseEvent {
  event?: string;
  data: string;
}

/** Minimal SSE parser (CRLF or LF), enough to assert exact framing in tests. */
export function parseSse(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    if (block.trim() === '') continue;
    const ev: SseEvent = { data: '' };
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('event: ')) ev.event = line.slice(7);
      else if (line.startsWith('data: ')) ev.data += line.slice(6);
    }
    events.push(ev);
  }
  return events;
}

export interface PartialRead {
  text: string;
  /** The body ended cleanly. */
  done: boolean;
  /** Reading failed (connection dropped mid-body). */
  error?: unknown;
  /** No data arrived within the idle window and the body had not ended. */
  idle: boolean;
}

/** Reads a body until it ends, errors, or stays silent for `idleMs`. */
export async function readUntilIdle(res: Response, idleMs: number): Promise<PartialRead> {
  if (!res.body) return { text: '', done: true, idle: false };
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  for (;;) {
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<'idle'>((resolve) => {
      timer = setTimeout(() => resolve('idle'), idleMs);
    });
    try {
      const r = await Promise.race([reader.read(), idle]);
      if (r === 'idle') {
        reader.releaseLock();
        return { text, done: false, idle: true };
      }
      if (r.done) return { text, done: true, idle: false };
      text += decoder.decode(r.value, { stream: true });
    } catch (error) {
      return { text, done: false, idle: false, error };
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Polls `check` until it passes or `timeoutMs` elapses (stats update asynchronously on close). */
export async function eventually<T>(fn: () => Promise<T>, check: (v: T) => boolean, timeoutMs = 2_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (check(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `POST /v1/responses` on a mock: the raw answer (`create`), or the Response of one that must succeed (`plain`). */
export function responsesCalls(base: () => string): {
  create: (body: Record<string, unknown>, headers?: Record<string, string>) => Promise<Response>;
  plain: (body: Record<string, unknown>) => Promise<ResponseObject>;
} {
  const create = (body: Record<string, unknown>, headers: Record<string, string> = OPENAI_AUTH): Promise<Response> =>
    postJson(base(), '/v1/responses', { model: 'gpt-4o-mini', ...body }, headers);
  const plain = async (body: Record<string, unknown>): Promise<ResponseObject> => {
    const res = await create(body);
    if (res.status !== 200) throw new Error(`POST /v1/responses answered ${res.status}: ${await res.text()}`);
    return readJson<ResponseObject>(res);
  };
  return { create, plain };
}
