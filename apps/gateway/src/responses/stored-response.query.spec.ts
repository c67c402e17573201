import { GatewayError } from '@keygate/errors';
import { storedResponseQuery } from './stored-response.query';

function refusal(work: () => unknown): { code: string; param: string | undefined } {
  try {
    work();
  } catch (error) {
    if (error instanceof GatewayError) return { code: error.code, param: error.options.param };
    throw error;
  }
  throw new Error('not refused');
}

describe('storedResponseQuery', () => {
  it('passes the include list on as the SDKs send it', () => {
    expect(storedResponseQuery('retrieve', { 'include[]': ['message.input_image.image_url', 'reasoning.encrypted_content'] })).toBe(
      '?include%5B%5D=message.input_image.image_url&include%5B%5D=reasoning.encrypted_content',
    );
    expect(storedResponseQuery('retrieve', { include: 'reasoning.encrypted_content' })).toBe('?include%5B%5D=reasoning.encrypted_content');
    expect(storedResponseQuery('retrieve', {})).toBe('');
    expect(storedResponseQuery('retrieve', undefined)).toBe('');
  });

  it('takes stream=false and refuses a stream back (background responses only)', () => {
    expect(storedResponseQuery('retrieve', { stream: 'false' })).toBe('');
    expect(refusal(() => storedResponseQuery('retrieve', { stream: 'true' }))).toEqual({ code: 'unsupported_parameter', param: 'stream' });
    expect(refusal(() => storedResponseQuery('retrieve', { stream: 'yes' }))).toEqual({ code: 'invalid_request', param: 'stream' });
    // What the SDK's retrieve may send beside stream, checked and passed on.
    expect(storedResponseQuery('retrieve', { include_obfuscation: 'false', starting_after: '3' })).toBe(
      '?include_obfuscation=false&starting_after=3',
    );
    expect(refusal(() => storedResponseQuery('retrieve', { include_obfuscation: 'no' }))).toEqual({
      code: 'invalid_request',
      param: 'include_obfuscation',
    });
    expect(refusal(() => storedResponseQuery('retrieve', { starting_after: '-1' }))).toEqual({
      code: 'invalid_request',
      param: 'starting_after',
    });
  });

  it('rebuilds the input items paging from checked values', () => {
    expect(storedResponseQuery('inputItems', { after: 'msg_1', limit: '100', order: 'asc', 'include[]': 'file_search_call.results' })).toBe(
      '?after=msg_1&limit=100&order=asc&include%5B%5D=file_search_call.results',
    );
    expect(refusal(() => storedResponseQuery('inputItems', { limit: '0' }))).toEqual({ code: 'invalid_request', param: 'limit' });
    expect(refusal(() => storedResponseQuery('inputItems', { limit: '101' }))).toEqual({ code: 'invalid_request', param: 'limit' });
    expect(refusal(() => storedResponseQuery('inputItems', { limit: ['1', '2'] }))).toEqual({ code: 'invalid_request', param: 'limit' });
    expect(refusal(() => storedResponseQuery('inputItems', { order: 'random' }))).toEqual({ code: 'invalid_request', param: 'order' });
    expect(refusal(() => storedResponseQuery('inputItems', { after: 'msg_1&limit=5' }))).toEqual({
      code: 'invalid_request',
      param: 'after',
    });
  });

  it('refuses a parameter the route does not take, and odd include values', () => {
    expect(refusal(() => storedResponseQuery('retrieve', { limit: '5' }))).toEqual({ code: 'invalid_request', param: 'limit' });
    expect(refusal(() => storedResponseQuery('delete', { include: 'x' }))).toEqual({ code: 'invalid_request', param: 'include' });
    // A cancel takes no query either (OpenAI's takes none).
    expect(storedResponseQuery('cancel', {})).toBe('');
    expect(refusal(() => storedResponseQuery('cancel', { stream: 'false' }))).toEqual({ code: 'invalid_request', param: 'stream' });
    expect(refusal(() => storedResponseQuery('retrieve', { include: 'a&b=c' }))).toEqual({ code: 'invalid_request', param: 'include' });
    expect(refusal(() => storedResponseQuery('retrieve', { 'include[]': Array.from({ length: 17 }, () => 'a.b') }))).toEqual({
      code: 'invalid_request',
      param: 'include',
    });
  });
});
