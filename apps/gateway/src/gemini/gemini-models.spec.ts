import { refusalOf } from '@keygate/errors/testing';
import { geminiModel, geminiModelPage } from './gemini-models';

const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `gemini-m${String(i).padStart(4, '0')}`);

describe('geminiModel', () => {
  it('gives Google’s resource name and the methods keygate serves for a generative model', () => {
    expect(geminiModel('gemini-2.5-flash')).toEqual({
      name: 'models/gemini-2.5-flash',
      baseModelId: 'gemini-2.5-flash',
      displayName: 'gemini-2.5-flash',
      supportedGenerationMethods: ['generateContent', 'countTokens'],
    });
  });

  it('gives an embedding model the embedding methods only', () => {
    for (const id of ['text-embedding-004', 'gemini-embedding-001', 'embedding-001'])
      expect(geminiModel(id).supportedGenerationMethods).toEqual(['embedContent', 'batchEmbedContents']);
  });
});

describe('geminiModelPage', () => {
  it('lists every model sorted by id in one page, without a next page token, by default', () => {
    const list = geminiModelPage(['gemini-b', 'gemini-a', 'text-embedding-004'], {});
    expect(list.models.map((m) => m.name)).toEqual(['models/gemini-a', 'models/gemini-b', 'models/text-embedding-004']);
    expect(list).not.toHaveProperty('nextPageToken');
  });

  it('pages by pageSize and follows nextPageToken to the end, each model once', () => {
    const all = ids(7);
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = geminiModelPage(all, { pageSize: '3', ...(token === undefined ? {} : { pageToken: token }) });
      expect(page.models.length).toBeLessThanOrEqual(3);
      seen.push(...page.models.map((m) => m.baseModelId));
      token = page.nextPageToken;
      pages++;
    } while (token !== undefined && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual(all);
  });

  it('gives no token on a last page that is exactly full', () => {
    const first = geminiModelPage(ids(4), { pageSize: '2' });
    const last = geminiModelPage(ids(4), { pageSize: '2', pageToken: first.nextPageToken });
    expect(last.models.map((m) => m.baseModelId)).toEqual(ids(4).slice(2));
    expect(last.nextPageToken).toBeUndefined();
  });

  it('takes 50 for a pageSize of 0 and at most 1000, as Google does', () => {
    expect(geminiModelPage(ids(60), { pageSize: '0' }).models).toHaveLength(50);
    expect(geminiModelPage(ids(60), {}).models).toHaveLength(50);
    expect(geminiModelPage(ids(1001), { pageSize: '5000' }).models).toHaveLength(1000);
  });

  it('goes on after where a token’s model sorts when that model is no longer listed', () => {
    const token = geminiModelPage(['gemini-a', 'gemini-b', 'gemini-c'], { pageSize: '1' }).nextPageToken;
    expect(geminiModelPage(['gemini-b', 'gemini-c'], { pageToken: token }).models.map((m) => m.baseModelId)).toEqual([
      'gemini-b',
      'gemini-c',
    ]);
  });

  it.each([
    ['a negative pageSize', { pageSize: '-1' }, 'pageSize'],
    ['a pageSize that is not a number', { pageSize: 'ten' }, 'pageSize'],
    ['a repeated pageSize', { pageSize: ['1', '2'] }, 'pageSize'],
    ['a token keygate did not give', { pageToken: 'not a token!' }, 'pageToken'],
    ['a token that is not base64url of itself', { pageToken: 'Z2VtaW5pLWE' + '=' }, 'pageToken'],
    ['another parameter', { filter: 'x' }, 'filter'],
  ])('refuses %s (400 naming it)', (_case, query, param) => {
    expect(refusalOf(() => geminiModelPage(ids(3), query))).toMatchObject({ code: 'invalid_request', options: { param } });
  });
});
