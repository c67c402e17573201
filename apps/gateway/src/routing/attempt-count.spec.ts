import { deferAdmission, takeDeferredAdmission } from '@keygate/limits';
import { RequestContext } from '@keygate/observability';
import { ClientAbortedError, UpstreamError } from '@keygate/providers';
import { countAttempt, cutWhileAnswering } from './attempt-count';

const context = (): RequestContext => new RequestContext('req-1', 'POST', '/v1/chat/completions', 0n, null, true);

describe('countAttempt', () => {
  it('counts an attempt that answered, or that failed at the upstream or by the client leaving', async () => {
    const ctx = context();
    await expect(countAttempt(ctx, () => Promise.resolve('answer'))).resolves.toBe('answer');
    await expect(countAttempt(ctx, () => Promise.reject(new UpstreamError('http', 'openai', 'HTTP 500', 500)))).rejects.toThrow('HTTP 500');
    await expect(countAttempt(ctx, () => Promise.reject(new ClientAbortedError()))).rejects.toBeInstanceOf(ClientAbortedError);
    expect(ctx.attempts).toBe(3);
  });

  it('notes an abort that failed an attempt under way, not a failure before it nor the abort that follows it', async () => {
    const failed = context();
    await expect(countAttempt(failed, () => Promise.reject(new UpstreamError('http', 'openai', 'HTTP 503', 503)))).rejects.toThrow(
      'HTTP 503',
    );
    // The client leaves after the attempt failed (while keygate waits to retry it): no call was out.
    failed.abort.abort();
    expect(failed.abortedInFlight).toBe(false);

    const cut = context();
    await expect(
      countAttempt(cut, () => {
        cut.abort.abort();
        return Promise.reject(new ClientAbortedError());
      }),
    ).rejects.toBeInstanceOf(ClientAbortedError);
    expect(cut.abortedInFlight).toBe(true);
    expect(cut.attempts).toBe(1);
  });

  it('leaves an attempt under way to countAttemptsUnderWay (an audit line written before it settles), once; not one that settled', async () => {
    const ctx = context();
    ctx.provider = 'openai';
    await countAttempt(ctx, () => Promise.resolve('answer'));
    await expect(countAttempt(ctx, () => Promise.reject(new Error('n > 1 is not supported')))).rejects.toThrow('n > 1');
    void countAttempt(ctx, () => new Promise<never>(() => undefined));
    expect(ctx.attempts).toBe(1);
    ctx.countAttemptsUnderWay();
    ctx.countAttemptsUnderWay();
    expect(ctx.attempts).toBe(2);
  });

  it('does not count a request the adapter refused before sending it', async () => {
    const ctx = context();
    await expect(countAttempt(ctx, () => Promise.reject(new Error('n > 1 is not supported')))).rejects.toThrow('n > 1');
    expect(ctx.attempts).toBe(0);
  });

  it('starts no attempt, and counts none, once the client has left (e.g. while the request was being admitted)', async () => {
    const ctx = context();
    ctx.abort.abort();
    const start = jest.fn(() => Promise.resolve('answer'));
    await expect(countAttempt(ctx, start)).rejects.toBeInstanceOf(ClientAbortedError);
    expect(start).not.toHaveBeenCalled();
    expect(ctx.attempts).toBe(0);
    expect(ctx.abortedInFlight).toBe(false);
  });

  it('refuses to start an attempt while the request’s limits are left uncounted by its handler', async () => {
    const ctx = context();
    const admit = jest.fn(() => Promise.resolve({ store: 'shared' as const }));
    deferAdmission(ctx, admit);
    const start = jest.fn(() => Promise.resolve('answer'));

    await expect(countAttempt(ctx, start)).rejects.toThrow('before the request was admitted');
    expect(start).not.toHaveBeenCalled();
    expect(ctx.attempts).toBe(0);

    // Once the handler took its admission (QuotaService.admit does), the attempt goes ahead.
    await takeDeferredAdmission(ctx)?.('2026-12-07');
    expect(admit).toHaveBeenCalledTimes(1);
    await expect(countAttempt(ctx, start)).resolves.toBe('answer');
    expect(start).toHaveBeenCalledTimes(1);
    expect(ctx.attempts).toBe(1);
  });
});

describe('cutWhileAnswering', () => {
  const failure = (kind: UpstreamError['kind'], beforeHeaders: boolean): UpstreamError => {
    const error = new UpstreamError(kind, 'openai', kind);
    error.beforeHeaders = beforeHeaders;
    return error;
  };

  it('bills a whole answer cut at the total timeout whether its headers had come or not (they come with the answer)', () => {
    expect(cutWhileAnswering(failure('total_timeout', true), false)).toBe(true);
    expect(cutWhileAnswering(failure('total_timeout', false), false)).toBe(true);
  });

  it('bills a stream cut at the total timeout after its headers, not one whose headers had not come (as at its header timeout)', () => {
    expect(cutWhileAnswering(failure('total_timeout', false), true)).toBe(true);
    expect(cutWhileAnswering(failure('total_timeout', true), true)).toBe(false);
    expect(cutWhileAnswering(failure('ttfb_timeout', true), true)).toBe(false);
    expect(cutWhileAnswering(failure('stalled', false), true)).toBe(true);
  });
});
