import { GatewayError } from '@keygate/errors';
import { anthropicClientHeaders, answeringFallback } from './messages.service';

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

  it('leaves out an oauth-* beta (the SDK adds it with `credentials`; keygate calls Anthropic with an API key)', () => {
    expect(anthropicClientHeaders({ 'anthropic-beta': 'oauth-2025-04-20,prompt-caching-2024-07-31' })).toEqual({
      beta: 'prompt-caching-2024-07-31',
    });
    expect(anthropicClientHeaders({ 'anthropic-beta': 'OAuth-2025-04-20' })).toEqual({});
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

describe('answeringFallback', () => {
  const fallbacks = ['claude-sonnet-4', 'claude-haiku-4-5'];

  it('names the listed fallback an answer came from, by its name or a dated version of it', () => {
    expect(answeringFallback('claude-haiku-4-5', 'claude-opus-4-1', fallbacks)).toBe('claude-haiku-4-5');
    expect(answeringFallback('claude-haiku-4-5-20251001', 'claude-opus-4-1', fallbacks)).toBe('claude-haiku-4-5');
  });

  it('names none for the model asked for, its dated version, or a model not listed', () => {
    expect(answeringFallback('claude-opus-4-1', 'claude-opus-4-1', fallbacks)).toBeUndefined();
    // A dated version of the model asked for, though a listed fallback's name is a prefix of it.
    expect(answeringFallback('claude-sonnet-4-5-20250929', 'claude-sonnet-4-5', ['claude-sonnet-4'])).toBeUndefined();
    expect(answeringFallback('claude-3-opus', 'claude-opus-4-1', fallbacks)).toBeUndefined();
    expect(answeringFallback('claude-haiku-4-5', 'claude-opus-4-1', [])).toBeUndefined();
  });

  it('names a listed fallback whose name extends the model asked for (claude-opus-4 asked, claude-opus-4-5 answered)', () => {
    expect(answeringFallback('claude-opus-4-5-20251101', 'claude-opus-4', ['claude-opus-4-5'])).toBe('claude-opus-4-5');
    expect(answeringFallback('claude-sonnet-4-5', 'claude-sonnet-4', ['claude-sonnet-4-5'])).toBe('claude-sonnet-4-5');
    // A snapshot of the model asked for, whatever is listed.
    expect(answeringFallback('claude-opus-4-20250514', 'claude-opus-4', ['claude-opus-4-5'])).toBeUndefined();
  });

  it('prefers an exact name to a listed model it is a dated version of', () => {
    expect(answeringFallback('claude-sonnet-4-5', 'claude-opus-4-1', ['claude-sonnet-4', 'claude-sonnet-4-5'])).toBe('claude-sonnet-4-5');
  });
});
