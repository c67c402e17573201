import { CLIENT_CLOSED_REQUEST, failureForStatus, repeatedHeader, requestPath } from './request-lifecycle';

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
