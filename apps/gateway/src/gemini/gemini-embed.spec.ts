import { refusalOf } from '@keygate/errors/testing';
import { checkBatchEmbedRequests } from './gemini-embed';

const content = { parts: [{ text: 'x' }] };

describe('checkBatchEmbedRequests', () => {
  it('takes requests that name the path’s model as Google’s resource name, as the bare id, or not at all', () => {
    expect(() =>
      checkBatchEmbedRequests(
        [{ content, model: 'models/text-embedding-004' }, { content, model: 'text-embedding-004' }, { content }, { content, model: null }],
        'text-embedding-004',
      ),
    ).not.toThrow();
  });

  it('refuses a request naming another model, naming the request', () => {
    const error = refusalOf(() =>
      checkBatchEmbedRequests([{ content }, { content, model: 'models/gemini-embedding-001' }], 'text-embedding-004'),
    );
    expect(error).toMatchObject({ code: 'invalid_request', options: { param: 'requests[1].model' } });
    expect(error.message).toMatch(/models\/gemini-embedding-001.*models\/text-embedding-004/);
  });

  it('refuses a model that is not a string', () => {
    expect(refusalOf(() => checkBatchEmbedRequests([{ content, model: 7 }], 'text-embedding-004'))).toMatchObject({
      options: { param: 'requests[0].model' },
    });
  });

  it.each([
    ['missing', {}],
    ['an array', { content: [content] }],
    ['a string', { content: 'hello' }],
  ])('refuses a request whose content is %s', (_case, request) => {
    expect(refusalOf(() => checkBatchEmbedRequests([{ content }, request], 'text-embedding-004'))).toMatchObject({
      code: 'invalid_request',
      options: { param: 'requests[1].content' },
    });
  });

  it('refuses a request whose content holds one Part, not a list of them (its text would be estimated as nothing)', () => {
    const bare = { content: { parts: { text: 'x'.repeat(1500) } } };
    expect(refusalOf(() => checkBatchEmbedRequests([{ content }, bare], 'text-embedding-004'))).toMatchObject({
      code: 'invalid_request',
      options: { param: 'requests[1].content.parts' },
    });
  });
});
