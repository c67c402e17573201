import { GatewayError } from '@keygate/errors';
import { anthropicClientHeaders } from './messages.service';

describe('anthropicClientHeaders', () => {
  it('keeps the client’s anthropic-version and anthropic-beta, and nothing else', () => {
    expect(
      anthropicClientHeaders({
        'anthropic-version': '2023-06-01',
        'anthropic-beta': ' prompt-caching-2024-07-31,interleaved-thinking-2025-05-14 ',
        'x-api-key': 'the client token',
      }),
    ).toEqual({ version: '2023-06-01', beta: 'prompt-caching-2024-07-31,interleaved-thinking-2025-05-14' });
    expect(anthropicClientHeaders({})).toEqual({});
  });

  it.each([
    ['anthropic-version', 'latest'],
    ['anthropic-version', '2023-06-01, 2023-06-01'],
    ['anthropic-beta', 'a b'],
    ['anthropic-beta', 'ok,,twice'],
    ['anthropic-beta', 'x'.repeat(1025)],
    ['anthropic-beta', 'evil\r\nx-api-key: stolen'],
  ])('refuses %s %j with a 400 naming the header', (name, value) => {
    let error: unknown;
    try {
      anthropicClientHeaders({ [name]: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ code: 'invalid_request', options: { param: name } });
  });

  it('refuses a header sent twice (an array)', () => {
    expect(() => anthropicClientHeaders({ 'anthropic-beta': ['a', 'b'] })).toThrow(GatewayError);
  });
});
