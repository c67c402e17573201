import { GatewayError } from '@keygate/errors';
import { knownQuery, queryList, queryValue } from '../http/query-params';
import { RESPONSE_ID } from './response-id';

/** The stored-response routes keygate serves. */
export type StoredResponseRoute = 'retrieve' | 'delete' | 'inputItems' | 'cancel';

/** `include` values: OpenAI's are dotted names (`message.input_image.image_url`, `reasoning.encrypted_content`…). */
const INCLUDE = /^[a-z_]{1,64}(\.[a-z_]{1,64}){0,7}$/;
const MAX_INCLUDES = 16;
const LIMIT = { test: (value: string): boolean => /^\d{1,3}$/.test(value) && Number(value) >= 1 && Number(value) <= 100 };
const ORDER = /^(asc|desc)$/;

/** The `include` values of a query: the SDKs send `include[]=…` once per value; `include=…` is taken too. */
function includes(params: Record<string, unknown>): string[] {
  return queryList(params, 'include', INCLUDE, 'a list of field names such as reasoning.encrypted_content', MAX_INCLUDES);
}

/**
 * The query string to send upstream for a stored-response route (with its `?`, or empty), rebuilt
 * from the parameters the route takes, each checked: an unknown parameter is refused rather than
 * passed to OpenAI under keygate's key, a repeated one that is not a list is refused.
 */
export function storedResponseQuery(route: StoredResponseRoute, query: Record<string, unknown> | undefined): string {
  const out = new URLSearchParams();
  if (route === 'delete' || route === 'cancel') {
    knownQuery(query, []);
    return '';
  }
  if (route === 'retrieve') {
    // `include_obfuscation` and `starting_after` shape a stream back (refused below), and are taken
    // as the SDKs' retrieve sends them, checked and passed on.
    const params = knownQuery(query, ['include', 'include[]', 'stream', 'include_obfuscation', 'starting_after']);
    for (const value of includes(params)) out.append('include[]', value);
    if (params.include_obfuscation !== undefined)
      out.append('include_obfuscation', queryValue(params.include_obfuscation, 'include_obfuscation', /^(true|false)$/, 'true or false'));
    if (params.starting_after !== undefined)
      out.append('starting_after', queryValue(params.starting_after, 'starting_after', /^\d{1,9}$/, 'a sequence number'));
    if (params.stream !== undefined) {
      const stream = queryValue(params.stream, 'stream', /^(true|false)$/, 'true or false');
      // OpenAI streams back only a background response, which keygate does not create.
      if (stream === 'true')
        throw new GatewayError('unsupported_parameter', 'only a background response can be streamed back, and keygate serves none', {
          param: 'stream',
        });
    }
  } else {
    const params = knownQuery(query, ['after', 'limit', 'order', 'include', 'include[]']);
    if (params.after !== undefined) out.append('after', queryValue(params.after, 'after', RESPONSE_ID, 'an input item id'));
    if (params.limit !== undefined) out.append('limit', queryValue(params.limit, 'limit', LIMIT, 'a whole number from 1 to 100'));
    if (params.order !== undefined) out.append('order', queryValue(params.order, 'order', ORDER, 'asc or desc'));
    for (const value of includes(params)) out.append('include[]', value);
  }
  const text = out.toString();
  return text === '' ? '' : `?${text}`;
}
