import {
  CLIENT_CLOSED_REQUEST,
  credentialProblem,
  failureForStatus,
  isAudited,
  repeatedHeader,
  requestPath,
  routedPath,
} from './request-lifecycle';

describe('requestPath', () => {
  it.each([
    ['/v1/chat/completions', '/v1/chat/completions'],
    ['/v1/models?limit=2', '/v1/models'],
    ['/v1/embeddings#frag', '/v1/embeddings'],
    ['/v1/models?x=1#frag', '/v1/models'],
    ['http://evil.example/v1/chat/completions', '/v1/chat/completions'],
    ['https://evil.example:8443/chat/demo?x=1', '/chat/demo'],
    ['HTTP://Evil.Example/v1/embeddings', '/v1/embeddings'],
    ['http://evil.example', '/'],
    ['http://evil.example?x=1', '/'],
    ['*', '*'],
  ])('%s -> %s', (target, path) => {
    expect(requestPath(target)).toBe(path);
  });
});

describe('routedPath', () => {
  it.each([
    ['/v1/chat/completions', '/v1/chat/completions'],
    ['/V1/Chat/Completions', '/v1/chat/completions'],
    ['/%761/no-such-thing', '/v1/no-such-thing'],
    ['/%56%31/models', '/v1/models'],
    // Reserved characters stay escaped, as the router leaves them: no route takes them.
    ['/v1%2Fchat/completions', '/v1%2fchat/completions'],
    ['/v1/%zz', '/v1/%zz'],
    ['/ADMIN/blocks', '/admin/blocks'],
  ])('%s -> %s', (path, routed) => {
    expect(routedPath(path)).toBe(routed);
  });
});

describe('isAudited', () => {
  it.each([
    ['/v1/chat/completions', undefined, true],
    ['/V1/chat/completions', undefined, true],
    ['/V1/models', undefined, true],
    ['/Chat/demo', undefined, true],
    ['/%761/no-such-thing', undefined, true],
    ['/%761/chat/completions', '/v1/chat/completions', true],
    ['/v1', undefined, false],
    ['/v1%2Fchat/completions', undefined, false],
    ['/healthz', '/healthz', false],
    ['/Admin/blocks', undefined, false],
    ['/v2/models', undefined, false],
    // A base URL ending in `/`: no route takes it, audited all the same.
    ['//v1/chat/completions', undefined, true],
    ['///chat/demo', undefined, true],
    ['//admin/blocks', undefined, false],
  ])('%s (route %s) -> %s', (path, route, audited) => {
    expect(isAudited(routedPath(path), route)).toBe(audited);
  });
});

describe('failureForStatus', () => {
  it.each([
    [400, 'bad_request'],
    [401, 'auth'],
    [403, 'forbidden'],
    [404, 'not_found'],
    [405, 'bad_request'],
    [413, 'policy'],
    [415, 'bad_request'],
    [429, 'rate_limit'],
    [CLIENT_CLOSED_REQUEST, 'client_abort'],
    [500, 'internal'],
    [503, 'internal'],
  ])('%i -> %s', (status, failure) => {
    expect(failureForStatus(status)).toBe(failure);
  });
});

describe('repeatedHeader', () => {
  it('finds a header sent twice, whatever its case, and only then', () => {
    expect(repeatedHeader(['Authorization', 'Bearer a', 'Host', 'x', 'authorization', 'Bearer b'], 'authorization')).toBe(true);
    expect(repeatedHeader(['Authorization', 'Bearer a', 'Host', 'x'], 'authorization')).toBe(false);
    expect(repeatedHeader(['X-Authorization', 'a', 'Authorization', 'b', 'x', 'authorization'], 'authorization')).toBe(false);
  });
});

describe('credentialProblem', () => {
  /** A request with these raw headers, as Node would present it (the first of a repeated header kept). */
  const request = (rawHeaders: string[]): Parameters<typeof credentialProblem>[0] => {
    const headers: Record<string, string> = {};
    for (let i = 0; i < rawHeaders.length; i += 2) headers[rawHeaders[i].toLowerCase()] ??= rawHeaders[i + 1];
    return { headers, raw: { rawHeaders } } as unknown as Parameters<typeof credentialProblem>[0];
  };

  it('refuses two Authorization headers anywhere, and on Anthropic routes two keys or two different credentials', () => {
    expect(credentialProblem(request(['Authorization', 'Bearer a', 'authorization', 'Bearer b']), false)?.options.param).toBe(
      'authorization',
    );
    expect(credentialProblem(request(['x-api-key', 'a', 'X-Api-Key', 'b']), true)?.options.param).toBe('x-api-key');
    expect(credentialProblem(request(['Authorization', 'Bearer a', 'x-api-key', 'b']), true)?.options.param).toBe('x-api-key');
    // Not on the OpenAI routes, where x-api-key is no credential.
    expect(credentialProblem(request(['Authorization', 'Bearer a', 'x-api-key', 'b']), false)).toBeUndefined();
  });

  it('takes one credential, the same token in both headers, and IAP’s own Authorization beside a key', () => {
    expect(credentialProblem(request(['Authorization', 'Bearer a']), true)).toBeUndefined();
    expect(credentialProblem(request(['authorization', 'bearer  a ', 'x-api-key', 'a']), true)).toBeUndefined();
    expect(
      credentialProblem(request(['Authorization', 'Bearer google-oidc', 'x-api-key', 'a', 'x-goog-iap-jwt-assertion', 'h.p.s']), true),
    ).toBeUndefined();
  });

  it('on Google’s routes, refuses two x-goog-api-key headers, a key beside a different Authorization, and any key in the query', () => {
    const google = (rawHeaders: string[], url = '/v1beta/models/m:generateContent'): Parameters<typeof credentialProblem>[0] => {
      const r = request(rawHeaders);
      (r.raw as { url?: string }).url = url;
      return r;
    };
    expect(credentialProblem(google(['x-goog-api-key', 'a', 'X-Goog-Api-Key', 'b']), false, true)?.options.param).toBe('x-goog-api-key');
    expect(credentialProblem(google(['Authorization', 'Bearer a', 'x-goog-api-key', 'b']), false, true)?.options.param).toBe(
      'x-goog-api-key',
    );
    expect(credentialProblem(google(['Authorization', 'Bearer a', 'x-goog-api-key', 'a']), false, true)).toBeUndefined();
    for (const query of ['?key=a', '?alt=sse&key=', '?%6Bey=a'])
      expect(
        credentialProblem(google(['x-goog-api-key', 'a'], `/v1beta/models/m:streamGenerateContent${query}`), false, true),
      ).toMatchObject({
        code: 'invalid_request',
        options: { param: 'key' },
      });
    expect(
      credentialProblem(google(['x-goog-api-key', 'a'], '/v1beta/models/m:streamGenerateContent?alt=sse&keys=1'), false, true),
    ).toBeUndefined();
    // Elsewhere neither header nor query is Google's.
    expect(
      credentialProblem(google(['Authorization', 'Bearer a', 'x-goog-api-key', 'b'], '/v1/chat/completions?key=a'), false),
    ).toBeUndefined();
  });
});
