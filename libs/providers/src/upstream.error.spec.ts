import { toUpstreamError, type UpstreamSignal } from './upstream.client';
import { UpstreamError } from './upstream.error';

const signal: UpstreamSignal = {
  signal: new AbortController().signal,
  clientAborted: () => false,
  timedOut: () => false,
  dispose: () => undefined,
};

describe('toUpstreamError', () => {
  it('takes the ETIMEDOUT of a failed happy-eyeballs connect (an AggregateError) for a connect failure, retried', () => {
    const failed = Object.assign(new AggregateError([new Error('connect ETIMEDOUT 10.0.0.1:443')], 'connect ETIMEDOUT'), {
      code: 'ETIMEDOUT',
    });
    const error = toUpstreamError(failed, 'openai', signal);
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ kind: 'connect', retryable: true });
  });

  it('leaves an unknown transport failure a protocol error, not retried', () => {
    expect(toUpstreamError(new Error('bad things'), 'openai', signal)).toMatchObject({ kind: 'protocol', retryable: false });
  });
});

describe('UpstreamError.toGatewayError', () => {
  it('answers a rate limit sent in the stream before any byte like the HTTP 429: upstream_rate_limited with Retry-After', () => {
    const error = new UpstreamError('stream_error', 'anthropic', 'rate_limit_error: slow down', 429).toGatewayError();
    expect(error).toMatchObject({ code: 'upstream_rate_limited', status: 429 });
    expect(error.options.retryAfterSeconds).toBe(1);
  });

  it('keeps any other in-stream error a 502', () => {
    expect(new UpstreamError('stream_error', 'anthropic', 'overloaded_error', 529).toGatewayError()).toMatchObject({
      code: 'upstream_error',
      status: 502,
    });
  });
});
