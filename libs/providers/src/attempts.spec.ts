import { runAttempts, retryDelay, type Candidate } from './attempts';
import { ClientAbortedError } from './upstream.client';
import { UpstreamError } from './upstream.error';

const policy = { maxRetries: 2, baseDelayMs: 1, maxDelayMs: 50 };
const http = (status: number, retryAfter?: number): UpstreamError =>
  new UpstreamError('http', 'openai', `status ${status}`, status, retryAfter);

/** A candidate that answers from a script of outcomes and records its calls. */
function scripted(model: string, outcomes: Array<Error | string>): Candidate<string> & { calls: number } {
  const c = {
    model,
    calls: 0,
    attempt: () => {
      const outcome = outcomes[Math.min(c.calls++, outcomes.length - 1)];
      return outcome instanceof Error ? Promise.reject(outcome) : Promise.resolve(outcome);
    },
  };
  return c;
}

describe('runAttempts', () => {
  const signal = new AbortController().signal;

  it('retries a 5xx and succeeds on the same model', async () => {
    const a = scripted('gpt-4o', [http(503), 'ok']);
    const seen: string[] = [];
    await expect(runAttempts([a], policy, signal, (m, o) => seen.push(`${m}:${o}`))).resolves.toEqual({ value: 'ok', model: 'gpt-4o' });
    expect(a.calls).toBe(2);
    expect(seen).toEqual(['gpt-4o:retry', 'gpt-4o:ok']);
  });

  it('falls back after the retries of a model are spent', async () => {
    const a = scripted('gpt-4o', [http(429)]);
    const b = scripted('claude', ['from claude']);
    await expect(runAttempts([a, b], policy, signal)).resolves.toEqual({ value: 'from claude', model: 'claude' });
    expect(a.calls).toBe(3);
    expect(b.calls).toBe(1);
  });

  it('moves on at once when Retry-After asks for longer than the maximum wait', async () => {
    const a = scripted('gpt-4o', [http(429, 60)]);
    const b = scripted('claude', ['ok']);
    await runAttempts([a, b], policy, signal);
    expect(a.calls).toBe(1);
  });

  it('does not retry a client error or a timeout after the request was sent', async () => {
    const a = scripted('gpt-4o', [http(400)]);
    const b = scripted('claude', ['ok']);
    await expect(runAttempts([a, b], policy, signal)).rejects.toMatchObject({ status: 400 });
    expect(b.calls).toBe(0);
    const t = scripted('gpt-4o', [new UpstreamError('ttfb_timeout', 'openai', 'slow')]);
    await expect(runAttempts([t], policy, signal)).rejects.toMatchObject({ kind: 'ttfb_timeout' });
    expect(t.calls).toBe(1);
  });

  it('throws the last failure when every candidate fails', async () => {
    const a = scripted('gpt-4o', [http(503)]);
    const b = scripted('claude', [new UpstreamError('connect', 'anthropic', 'refused')]);
    await expect(runAttempts([a, b], policy, signal)).rejects.toMatchObject({ kind: 'connect', provider: 'anthropic' });
    expect(a.calls + b.calls).toBe(6);
  });

  it('skips a fallback that refuses the request before sending it, and reports the upstream failure', async () => {
    const a = scripted('gpt-4o', [http(503)]);
    const b = scripted('claude', [new Error('n is not supported by anthropic models')]);
    const c = scripted('gemini', ['from gemini']);
    await expect(runAttempts([a, b, c], policy, signal)).resolves.toEqual({ value: 'from gemini', model: 'gemini' });
    await expect(runAttempts([scripted('gpt-4o', [http(503)]), b], policy, signal)).rejects.toMatchObject({ status: 503 });
  });

  it('does not skip the requested model when it refuses the request', async () => {
    const a = scripted('gpt-4o', [new Error('bad parameter')]);
    const b = scripted('claude', ['ok']);
    await expect(runAttempts([a, b], policy, signal)).rejects.toThrow('bad parameter');
    expect(b.calls).toBe(0);
  });

  it('stops waiting when the client goes away', async () => {
    const controller = new AbortController();
    const a = scripted('gpt-4o', [http(503)]);
    const run = runAttempts([a], { maxRetries: 5, baseDelayMs: 10_000, maxDelayMs: 10_000 }, controller.signal, undefined, () => 0.99);
    setTimeout(() => controller.abort(), 20);
    await expect(run).rejects.toBeInstanceOf(ClientAbortedError);
    expect(a.calls).toBe(1);
  });
});

describe('retryDelay', () => {
  it('uses exponential backoff with full jitter under the cap', () => {
    const p = { maxRetries: 5, baseDelayMs: 100, maxDelayMs: 1000 };
    expect(retryDelay(http(503), 0, p, () => 0.5)).toBe(50);
    expect(retryDelay(http(503), 2, p, () => 0.5)).toBe(200);
    expect(retryDelay(http(503), 6, p, () => 0.999)).toBe(999);
  });

  it('honours Retry-After within the cap', () => {
    expect(retryDelay(http(429, 2), 0, { maxRetries: 1, baseDelayMs: 1, maxDelayMs: 5000 }, () => 0)).toBe(2000);
    expect(retryDelay(http(429, 6), 0, { maxRetries: 1, baseDelayMs: 1, maxDelayMs: 5000 }, () => 0)).toBeUndefined();
  });
});
