import { GatewayError } from '@keygate/errors';
import { isGeminiEmbeddingModel } from '@keygate/providers';
import { knownQuery } from '../http/query-params';

/** Google's default page size for `models.list`, and the most it returns in one page. */
const DEFAULT_PAGE_SIZE = 50;
const MAX_PAGE_SIZE = 1000;
const PAGE_SIZE = /^\d{1,9}$/;
/** What a page token may decode to: a model id as keygate's configuration holds one. */
const MODEL_ID = /^[\x21-\x7e]{1,256}$/;

/**
 * A model in Google's `Model` shape, as `@google/genai`'s `models.get` and `models.list` read it.
 * keygate knows a model's name and nothing else about it: what Google would tell (version, token
 * limits, sampling defaults) is left out, as Google's JSON leaves out a field it has no value for;
 * `supportedGenerationMethods` names the methods keygate serves for the model.
 */
export interface GeminiModel {
  /** Google's resource name, `models/{id}`. */
  name: string;
  /** The id to put in a request's path. */
  baseModelId: string;
  /** The id: keygate knows no display name. */
  displayName: string;
  /** `embedContent` and `batchEmbedContents` for an embedding model; `generateContent` and `countTokens` for another. */
  supportedGenerationMethods: string[];
}

/** Google's `ListModelsResponse`: one page, and the token of the next while there is one. */
export interface GeminiModelList {
  models: GeminiModel[];
  nextPageToken?: string;
}

/** The Gemini model `id` in Google's `Model` shape. */
export function geminiModel(id: string): GeminiModel {
  return {
    name: `models/${id}`,
    baseModelId: id,
    displayName: id,
    supportedGenerationMethods: isGeminiEmbeddingModel(id) ? ['embedContent', 'batchEmbedContents'] : ['generateContent', 'countTokens'],
  };
}

/**
 * One page of Google's model list over `ids`, sorted by id: `pageSize` models (absent or 0: 50;
 * over 1000: 1000, as Google clamps it) after the model a `pageToken` names. The token is the last
 * id of the previous page, base64url-encoded: opaque to the client, and still good after the
 * product's models change (the page goes on after where that id sorts). A token keygate did not
 * give, a malformed `pageSize` and any other parameter are refused (400).
 */
export function geminiModelPage(ids: readonly string[], query: Record<string, unknown> | undefined): GeminiModelList {
  const params = knownQuery(query, ['pageSize', 'pageToken']);
  let size = DEFAULT_PAGE_SIZE;
  if (params.pageSize !== undefined) {
    const raw = params.pageSize;
    if (typeof raw !== 'string' || !PAGE_SIZE.test(raw))
      throw new GatewayError('invalid_request', 'pageSize must be a whole number (at most 1000 are listed per page)', {
        param: 'pageSize',
      });
    const asked = Number(raw);
    size = asked === 0 ? DEFAULT_PAGE_SIZE : Math.min(asked, MAX_PAGE_SIZE);
  }
  const sorted = [...ids].sort();
  let from = 0;
  if (params.pageToken !== undefined && params.pageToken !== '') {
    const after = pageTokenId(params.pageToken);
    from = sorted.findIndex((id) => id > after);
    if (from === -1) from = sorted.length;
  }
  const page = sorted.slice(from, from + size);
  const list: GeminiModelList = { models: page.map(geminiModel) };
  if (from + size < sorted.length) list.nextPageToken = Buffer.from(page[page.length - 1]).toString('base64url');
  return list;
}

/** The model id a page token names; a token keygate could not have given is refused. */
function pageTokenId(token: unknown): string {
  const id = typeof token === 'string' && /^[A-Za-z0-9_-]{1,512}$/.test(token) ? Buffer.from(token, 'base64url').toString('utf8') : '';
  if (!MODEL_ID.test(id) || Buffer.from(id).toString('base64url') !== token)
    throw new GatewayError('invalid_request', 'pageToken is not a token this list gave (send the nextPageToken of the previous page)', {
      param: 'pageToken',
    });
  return id;
}
