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
  it('masks a credential the upstream echoed in its message before it reaches the client', () => {
    const echoed = new UpstreamError(
      'http',
      'openai',
      'Invalid header: Authorization: Bearer sk-proj-Abc123def456ghi789 for key AIzaSyA1234567890abcdefghijkl',
      400,
    ).toGatewayError();
    expect(echoed).toMatchObject({ code: 'upstream_bad_request', status: 400 });
    expect(echoed.message).not.toMatch(/sk-proj|AIzaSy/);
    expect(echoed.message).toContain('upstream openai rejected the request: Invalid header: Authorization: Bearer [redacted]');
    // A field name the upstream gave is passed on as `param`, unless it is shaped like a credential.
    expect(new UpstreamError('http', 'openai', 'bad', 400, undefined, 'messages[0].content').toGatewayError().options.param).toBe(
      'messages[0].content',
    );
    expect(
      new UpstreamError('http', 'openai', 'bad', 400, undefined, 'sk-proj-Abc123def456ghi789').toGatewayError().options.param,
    ).toBeUndefined();
    const inStream = new UpstreamError('stream_error', 'anthropic', 'bad key sk-ant-api03-abcdefghijkl', 500).toGatewayError();
    expect(inStream.message).toBe('upstream anthropic reported an error in its stream: bad key [redacted]');
  });

  it('answers a rate limit sent in the stream before any byte like the HTTP 429: upstream_rate_limited with Retry-After', () => {
    const error = new UpstreamError('stream_error', 'anthropic', 'rate_limit_error: slow down', 429).toGatewayError();
    expect(error).toMatchObject({ code: 'upstream_rate_limited', status: 429 });
    expect(error.options.retryAfterSeconds).toBe(1);
  });

  it('passes Anthropic’s details.error_code of a refusal on, and answers its thread_not_found 404 as such, not as an unknown model', () => {
    const gone = new UpstreamError('http', 'anthropic', 'No thread', 404, undefined, undefined, 'thread_not_found').toGatewayError();
    expect(gone).toMatchObject({ code: 'thread_not_found', status: 404 });
    expect(gone.toBody().error.details).toEqual({ error_code: 'thread_not_found' });
    const twice = new UpstreamError(
      'http',
      'anthropic',
      'continued',
      400,
      undefined,
      undefined,
      'thread_already_continued',
    ).toGatewayError();
    expect(twice).toMatchObject({ code: 'upstream_bad_request', status: 400 });
    expect(twice.toBody().error.details).toEqual({ error_code: 'thread_already_continued' });
    // An OpenAI code is read by keygate (a gone previous response), not passed on.
    const openai = new UpstreamError('http', 'openai', 'gone', 400, undefined, undefined, 'previous_response_not_found').toGatewayError();
    expect(openai.toBody().error).not.toHaveProperty('details');
    expect(new UpstreamError('http', 'anthropic', 'no such model', 404).toGatewayError()).toMatchObject({ code: 'model_not_found' });
  });

  it('keeps any other in-stream error a 502', () => {
    expect(new UpstreamError('stream_error', 'anthropic', 'overloaded_error', 529).toGatewayError()).toMatchObject({
      code: 'upstream_error',
      status: 502,
    });
  });
});

describe('a stream stalled before its first content', () => {
  it('is retried, unlike an idle timeout, and answered like one: 504 upstream_timeout, a timeout', () => {
    const stalled = new UpstreamError('stalled', 'openai', 'no data in time');
    expect([stalled.retryable, new UpstreamError('idle_timeout', 'openai', 'no data in time').retryable]).toEqual([true, false]);
    const error = stalled.toGatewayError();
    expect(error).toMatchObject({ code: 'upstream_timeout', status: 504 });
    expect(error.spec.failure).toBe('timeout');
  });
});

describe('openAiStreamFailure', () => {
  it.each([
    ['a server_error type with no code', { type: 'server_error', code: null, message: 'boom' }, 500],
    ['a server_error type beside another code', { type: 'server_error', code: 'internal_error', message: 'boom' }, 500],
    ['a rate-limit code', { type: 'rate_limit_error', code: 'rate_limit_exceeded', message: 'slow' }, 429],
    ["vLLM's numeric code", { message: 'overloaded', code: 503, type: 'ServiceUnavailableError' }, 503],
    ['a refusal of the request', { type: 'invalid_request_error', code: 'context_length_exceeded', message: 'long' }, 400],
    ['a numeric 4xx other than 400 and 429', { code: 404, message: 'bad' }, undefined],
    ['a status written as digits', { code: '503', message: 'busy' }, 503],
    ['a code named like an Object method', { code: 'constructor', message: 'odd' }, undefined],
  ])('reads %s as the status it stands for', (_what, detail, status) => {
    const error = openAiStreamFailure('openai', detail, 'error event');
    expect({ status: error.status, retryable: error.retryable, message: error.message }).toEqual({
      status,
      retryable: status !== undefined && status !== 400,
      message: detail.message,
    });
  });
});

describe('an in-stream error before any byte reached the client', () => {
  it('is answered like its status: a refusal of the request is 400 upstream_bad_request, a server error 502', () => {
    const refused = openAiStreamFailure('openai', { type: 'invalid_request_error', message: 'too long' }, 'x').toGatewayError();
    expect([refused.code, refused.status, refused.message]).toEqual([
      'upstream_bad_request',
      400,
      'upstream openai rejected the request: too long',
    ]);
    const failed = openAiStreamFailure('openai', { type: 'server_error', message: 'boom' }, 'x').toGatewayError();
    expect([failed.code, failed.status, failed.message]).toEqual([
      'upstream_error',
      502,
      'upstream openai reported an error in its stream: boom',
    ]);
  });
});
