import { GatewayError } from '@keygate/errors';
import { UpstreamError } from '@keygate/providers';
import { errorBodyFor } from '../http/error-envelope';
import { GOOGLE_STREAM, googleErrorBody, googleRpcStatus, speaksGoogle } from './google-errors';

describe('Google error envelope', () => {
  it.each([
    [400, 'INVALID_ARGUMENT'],
    [401, 'UNAUTHENTICATED'],
    [403, 'PERMISSION_DENIED'],
    [404, 'NOT_FOUND'],
    [408, 'DEADLINE_EXCEEDED'],
    [413, 'INVALID_ARGUMENT'],
    [429, 'RESOURCE_EXHAUSTED'],
    [500, 'INTERNAL'],
    [502, 'UNAVAILABLE'],
    [503, 'UNAVAILABLE'],
    [504, 'DEADLINE_EXCEEDED'],
  ])('names a %i as Google does (%s)', (status, name) => {
    expect(googleRpcStatus(status)).toBe(name);
  });

  it('carries keygate’s code and param in an ErrorInfo, and a Retry-After as a RetryInfo', () => {
    const error = new GatewayError('daily_quota_exceeded', 'daily quota exceeded', { retryAfterSeconds: 120, param: 'x' });
    expect(googleErrorBody(error, 'req-1')).toEqual({
      error: {
        code: 429,
        message: 'daily quota exceeded',
        status: 'RESOURCE_EXHAUSTED',
        details: [
          {
            '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
            reason: 'DAILY_QUOTA_EXCEEDED',
            domain: 'keygate',
            metadata: { code: 'daily_quota_exceeded', param: 'x', request_id: 'req-1' },
          },
          { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '120s' },
        ],
      },
    });
  });

  it('keeps the status name of a refusal Gemini sent, not of an outage', () => {
    const refused = new UpstreamError('http', 'gemini', 'User location is not supported', 400, undefined, undefined, 'FAILED_PRECONDITION');
    expect(googleErrorBody(refused.toGatewayError(), null).error).toMatchObject({ code: 400, status: 'FAILED_PRECONDITION' });
    const down = new UpstreamError('http', 'gemini', 'boom', 500, undefined, undefined, 'INTERNAL');
    expect(googleErrorBody(down.toGatewayError(), null).error).toMatchObject({ code: 502, status: 'UNAVAILABLE' });
    const other = new UpstreamError('http', 'openai', 'bad', 400, undefined, undefined, 'SOMETHING');
    expect(googleErrorBody(other.toGatewayError(), null).error.status).toBe('INVALID_ARGUMENT');
  });

  it('writes a stream’s error as a data event holding the envelope', () => {
    const event = GOOGLE_STREAM.errorEvent(new GatewayError('upstream_error', 'cut'), { requestId: 'r', eventsSent: 2, nextSequence: 2 });
    expect(event).toMatch(/^data: \{"error":\{"code":502,"message":"cut","status":"UNAVAILABLE"/);
    expect(event.endsWith('\n\n')).toBe(true);
  });

  it('is spoken under /v1beta, by route or path, whatever the case', () => {
    expect(speaksGoogle('/v1beta/models/:model(^[^:]+$)::generateContent', '/v1beta/models/m:generateContent')).toBe(true);
    expect(speaksGoogle(undefined, '/v1beta/models/m:embedContent')).toBe(true);
    expect(speaksGoogle(undefined, '/V1BETA/models/m:generateContent')).toBe(true);
    expect(speaksGoogle('/v1/chat/completions', '/v1/chat/completions')).toBe(false);
    expect(speaksGoogle(undefined, '/v1betax/models')).toBe(false);
    // @google/genai's files.upload, not served: refused in Google's shape too.
    expect(speaksGoogle(undefined, '/upload/v1beta/files')).toBe(true);
    expect(speaksGoogle(undefined, '/upload/v1/files')).toBe(false);
  });

  it('takes the Gemini routes under /v1 by the route matched, and leaves the OpenAI model routes and unmatched /v1 paths alone', () => {
    for (const method of ['generateContent', 'streamGenerateContent', 'countTokens', 'embedContent', 'batchEmbedContents'])
      expect(speaksGoogle(`/v1/models/:model(^[^:]+$)::${method}`, `/v1/models/m:${method}`)).toBe(true);
    expect(speaksGoogle('/v1/models', '/v1/models')).toBe(false);
    expect(speaksGoogle('/v1/models/:model', '/v1/models/ft:gpt-4o:org::id')).toBe(false);
    expect(speaksGoogle(undefined, '/v1/models/m:predict')).toBe(false);
    expect(speaksGoogle(undefined, '/v1/models/m')).toBe(false);
  });

  it('takes an unmatched /v1 path that names a Gemini method (a model the router refused, a method but POST) as Google’s', () => {
    // The lifecycle classifies the path decoded and lower-cased; an over-long or malformed model matches no route.
    expect(speaksGoogle(undefined, `/v1/models/${'m'.repeat(300)}:generatecontent`)).toBe(true);
    expect(speaksGoogle(undefined, '/v1/models/gemini-1.5-pro%:streamgeneratecontent')).toBe(true);
    expect(speaksGoogle(undefined, '/v1/models/m:batchembedcontents')).toBe(true);
    expect(speaksGoogle(undefined, '/v1/models/a/b:generatecontent')).toBe(false);
  });

  it('is the envelope errorBodyFor picks on a Google request, Anthropic’s and the contract’s elsewhere', () => {
    const error = new GatewayError('invalid_token', 'no');
    expect(errorBodyFor({ google: true, anthropic: false, requestId: 'r' }, error)).toMatchObject({ error: { status: 'UNAUTHENTICATED' } });
    expect(errorBodyFor({ google: false, anthropic: true, requestId: 'r' }, error)).toMatchObject({ type: 'error' });
    expect(errorBodyFor({ google: false, anthropic: false, requestId: 'r' }, error)).toEqual(error.toBody());
  });
});
