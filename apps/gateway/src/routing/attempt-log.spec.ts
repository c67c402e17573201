import { JsonLogger, RequestContext, requestContextStorage } from '@keygate/observability';
import { ClientAbortedError, UpstreamError, runAttempts } from '@keygate/providers';
import { upstreamAttemptLog } from './attempt-log';

function context(): RequestContext {
  return new RequestContext(
    'req-deep-1',
    'POST',
    '/v1/chat/completions',
    0n,
    { traceId: 'c'.repeat(32), spanId: 'd'.repeat(16), sampled: true },
    true,
  );
}

/** Runs `candidates` through runAttempts inside a request's context and returns the lines written. */
async function linesOf(
  candidates: Array<{ model: string; attempt: () => Promise<string> }>,
  level: 'debug' | 'error' = 'debug',
): Promise<Array<Record<string, unknown>>> {
  const lines: string[] = [];
  const log = upstreamAttemptLog(new JsonLogger(level, 'proj-1', (line) => lines.push(line)));
  const ctx = context();
  await requestContextStorage
    .run(ctx, () => runAttempts(candidates, { maxRetries: 1, baseDelayMs: 0, maxDelayMs: 0 }, ctx.abort.signal, log))
    .catch(() => undefined);
  return lines.map((line) => JSON.parse(line) as Record<string, unknown>);
}

const PROMPT = 'the secret prompt text';
/** An upstream 500 whose message quotes the prompt (as a careless upstream's error body may). */
const echoing500 = (): UpstreamError => new UpstreamError('http', 'openai', `boom: ${PROMPT}`, 500);

describe('upstreamAttemptLog', () => {
  it('writes a WARNING per failed attempt, retried then given up for the fallback, with the request id and trace of the request it serves', async () => {
    const lines = await linesOf([
      { model: 'gpt-4o', attempt: () => Promise.reject(echoing500()) },
      { model: 'claude-3-5-sonnet-20241022', attempt: () => Promise.resolve('answer') },
    ]);
    const common = {
      severity: 'WARNING',
      provider: 'openai',
      model: 'gpt-4o',
      failure: 'http',
      upstreamStatus: 500,
      requestId: 'req-deep-1',
      'logging.googleapis.com/trace': `projects/proj-1/traces/${'c'.repeat(32)}`,
      'logging.googleapis.com/spanId': 'd'.repeat(16),
      'logging.googleapis.com/trace_sampled': true,
      'logging.googleapis.com/labels': { service: 'keygate', request_id: 'req-deep-1' },
    };
    expect(lines).toEqual([
      { ...common, time: expect.any(String) as unknown, message: 'upstream attempt failed; retrying' },
      { ...common, time: expect.any(String) as unknown, message: 'upstream attempt failed; trying the next fallback model' },
    ]);
    expect(JSON.stringify(lines)).not.toContain(PROMPT);
  });

  it('writes the last failure of an outage, but not an upstream refusal of the request, a client leaving, or a skipped fallback', async () => {
    expect((await linesOf([{ model: 'gpt-4o', attempt: () => Promise.reject(echoing500()) }])).map((l) => l.message)).toEqual([
      'upstream attempt failed; retrying',
      'upstream attempt failed; no retry or fallback left',
    ]);
    // An answer keygate cannot read is the upstream's failure too (not retried: it may have generated).
    const unreadable = await linesOf([
      { model: 'gpt-4o', attempt: () => Promise.reject(new UpstreamError('protocol', 'openai', `bad JSON: ${PROMPT}`)) },
    ]);
    expect(unreadable.map((l) => [l.message, l.failure, l.upstreamStatus])).toEqual([
      ['upstream attempt failed; no retry or fallback left', 'protocol', null],
    ]);
    expect(JSON.stringify(unreadable)).not.toContain(PROMPT);
    const refusal = new UpstreamError('http', 'openai', `bad: ${PROMPT}`, 400);
    expect(await linesOf([{ model: 'gpt-4o', attempt: () => Promise.reject(refusal) }])).toEqual([]);
    expect(await linesOf([{ model: 'gpt-4o', attempt: () => Promise.reject(new ClientAbortedError()) }])).toEqual([]);
    const skipped = await linesOf([
      { model: 'gpt-4o', attempt: () => Promise.reject(new UpstreamError('connect', 'openai', 'refused')) },
      { model: 'claude', attempt: () => Promise.reject(new Error('cannot express n > 1')) },
    ]);
    expect(skipped.map((l) => l.message)).toEqual([
      'upstream attempt failed; retrying',
      'upstream attempt failed; trying the next fallback model',
    ]);
  });

  it("writes a provider's refusal of keygate's own key (a 502 the operator must fix), with the status it sent, never its text", async () => {
    // OpenAI's 401 quotes part of the key it refused; Gemini refuses a bad key with a 400 API_KEY_INVALID.
    const refusals = [
      new UpstreamError('http', 'openai', 'Incorrect API key provided: sk-proj-****abcd', 401),
      new UpstreamError('http', 'anthropic', 'permission_error: your key may not use this model', 403),
      new UpstreamError('credentials', 'gemini', 'API key not valid. Please pass a valid API key.', 400),
    ];
    for (const refusal of refusals) {
      const lines = await linesOf([{ model: 'm', attempt: () => Promise.reject(refusal) }]);
      expect(lines.map((l) => [l.message, l.provider, l.failure, l.upstreamStatus])).toEqual([
        ['upstream attempt failed; no retry or fallback left', refusal.provider, refusal.kind, refusal.status],
      ]);
      expect(JSON.stringify(lines)).not.toContain(refusal.message);
    }
  });

  it('follows LOG_LEVEL: nothing at error', async () => {
    expect(await linesOf([{ model: 'gpt-4o', attempt: () => Promise.reject(echoing500()) }], 'error')).toEqual([]);
  });
});
