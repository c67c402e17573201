import { toUpstreamError, type UpstreamSignal } from './upstream.client';
import { UpstreamError, openAiStreamFailure } from './upstream.error';

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

describe('openAiStreamFailure', () => {
  it.each([
    ['a server_error type with no code', { type: 'server_error', code: null, message: 'boom' }, 500],
    ['a server_error type beside another code', { type: 'server_error', code: 'internal_error', message: 'boom' }, 500],
    ['a rate-limit code', { type: 'rate_limit_error', code: 'rate_limit_exceeded', message: 'slow' }, 429],
    ["vLLM's numeric code", { message: 'overloaded', code: 503, type: 'ServiceUnavailableError' }, 503],
    ['a client mistake', { type: 'invalid_request_error', code: 'context_length_exceeded', message: 'long' }, undefined],
    ['a numeric 4xx', { code: 400, message: 'bad' }, undefined],
    ['a code named like an Object method', { code: 'constructor', message: 'odd' }, undefined],
  ])('reads %s as the status it stands for', (_what, detail, status) => {
    const error = openAiStreamFailure('openai', detail, 'error event');
    expect({ status: error.status, retryable: error.retryable, message: error.message }).toEqual({
      status,
      retryable: status !== undefined,
      message: detail.message,
    });
  });
});
