import { ERROR_CODES, GatewayError, type GatewayErrorCode } from '@keygate/errors';
import { UpstreamError } from '@keygate/providers';
import { routedPath } from '../http/request-lifecycle';
import { ANTHROPIC_STREAM, anthropicErrorBody, anthropicErrorType, speaksAnthropic } from './anthropic-errors';

describe('Anthropic error envelope', () => {
  it.each([
    [400, 'invalid_request_error'],
    [401, 'authentication_error'],
    [403, 'permission_error'],
    [404, 'not_found_error'],
    [408, 'invalid_request_error'],
    [413, 'request_too_large'],
    [429, 'rate_limit_error'],
    [500, 'api_error'],
    [502, 'api_error'],
    [503, 'api_error'],
    [504, 'timeout_error'],
    [529, 'overloaded_error'],
  ])('types a %i as Anthropic does (%s)', (status, type) => {
    expect(anthropicErrorType(status)).toBe(type);
  });

  it('gives every contract code one of the types the Anthropic SDK knows', () => {
    const known = new Set([
      'invalid_request_error',
      'authentication_error',
      'permission_error',
      'not_found_error',
      'request_too_large',
      'rate_limit_error',
      'timeout_error',
      'api_error',
      'overloaded_error',
    ]);
    for (const code of Object.keys(ERROR_CODES) as GatewayErrorCode[]) {
      const body = anthropicErrorBody(new GatewayError(code, 'x'), 'req-1');
      expect({ code, known: known.has(body.error.type) }).toEqual({ code, known: true });
    }
  });

  it('keeps the contract’s code, param and message and carries the request id', () => {
    expect(anthropicErrorBody(new GatewayError('upstream_timeout', 'slow', { param: 'model' }), 'req-7')).toEqual({
      type: 'error',
      error: { type: 'timeout_error', code: 'upstream_timeout', param: 'model', message: 'slow' },
      request_id: 'req-7',
    });
  });

  it('names Anthropic’s own overload overloaded_error though keygate answers it 502, plain or sent in its stream', () => {
    const answered = new UpstreamError('http', 'anthropic', 'Overloaded', 529).toGatewayError();
    expect(answered.status).toBe(502);
    expect(anthropicErrorBody(answered, null).error).toMatchObject({ type: 'overloaded_error', code: 'upstream_error' });
    // What an `overloaded_error` event in Anthropic's stream is read as.
    const inStream = new UpstreamError('stream_error', 'anthropic', 'Overloaded', 529).toGatewayError();
    expect(anthropicErrorBody(inStream, null).error.type).toBe('overloaded_error');
    // Another provider's 529, or Anthropic's other failures, keep their status's type.
    expect(anthropicErrorBody(new UpstreamError('http', 'openai', 'x', 529).toGatewayError(), null).error.type).toBe('api_error');
    expect(anthropicErrorBody(new UpstreamError('stream_error', 'anthropic', 'x', 500).toGatewayError(), null).error.type).toBe(
      'api_error',
    );
  });

  it('writes a stream failure as Anthropic’s error event with the request id', () => {
    const frame = ANTHROPIC_STREAM.errorEvent(new GatewayError('upstream_error', 'cut'), {
      requestId: 'req-9',
      eventsSent: 3,
      nextSequence: 3,
    });
    expect(frame.startsWith('event: error\ndata: ')).toBe(true);
    expect(frame.endsWith('\n\n')).toBe(true);
    expect(JSON.parse(frame.slice('event: error\ndata: '.length))).toEqual({
      type: 'error',
      error: { type: 'api_error', code: 'upstream_error', param: null, message: 'cut' },
      request_id: 'req-9',
    });
  });
});

describe('speaksAnthropic', () => {
  it('takes the Messages routes, any path under them no route takes, and the models routes with anthropic-version', () => {
    const version = { 'anthropic-version': '2023-06-01' };
    expect(speaksAnthropic('/v1/messages', '/v1/messages', {})).toBe(true);
    expect(speaksAnthropic(undefined, '/v1/messages/batches', {})).toBe(true);
    expect(speaksAnthropic(undefined, '/v1/messages/batches/msgbatch_1/results', version)).toBe(true);
    expect(speaksAnthropic('/v1/models', '/v1/models', version)).toBe(true);
    expect(speaksAnthropic('/v1/models', '/v1/models', {})).toBe(false);
    expect(speaksAnthropic(undefined, '/v1/messagesx', {})).toBe(false);
    expect(speaksAnthropic('/v1/chat/completions', '/v1/chat/completions', version)).toBe(false);
  });

  it('reads a path no route took as the lifecycle classifies it: a /V1/messages the case-sensitive router missed is Anthropic’s', () => {
    const version = { 'anthropic-version': '2023-06-01' };
    expect(speaksAnthropic(undefined, routedPath('/V1/messages'), {})).toBe(true);
    expect(speaksAnthropic(undefined, routedPath('/v1/Messages/batches'), {})).toBe(true);
    expect(speaksAnthropic(undefined, routedPath('/V1/Models/a/b'), version)).toBe(true);
    expect(speaksAnthropic(undefined, routedPath('/V1/models'), {})).toBe(false);
    expect(speaksAnthropic(undefined, routedPath('/V1/chat/completions'), version)).toBe(false);
  });
});
