import { reasons } from './reasoning';

describe('reasons', () => {
  it.each([
    ['openai', 'o4-mini'],
    ['openai', 'o3'],
    ['openai', 'gpt-5'],
    ['openai', 'gpt-5.1-codex'],
    ['openai', 'gpt-6'],
    ['anthropic', 'claude-3-7-sonnet-20250219'],
    ['anthropic', 'claude-sonnet-4-5'],
    ['anthropic', 'claude-opus-4-8'],
    ['gemini', 'gemini-2.5-flash'],
    ['gemini', 'gemini-3-pro-preview'],
  ] as const)('%s %s reasons', (provider, model) => {
    expect(reasons(provider, model)).toBe(true);
  });

  it.each([
    ['openai', 'gpt-4o'],
    ['openai', 'gpt-4o-mini'],
    ['openai', 'gpt-4.1-nano'],
    ['openai', 'gpt-3.5-turbo'],
    ['openai', 'chatgpt-4o-latest'],
    ['openai', 'gpt-5-chat-latest'],
    ['openai', 'gpt-5.2-chat'],
    ['anthropic', 'claude-3-5-sonnet-20241022'],
    ['anthropic', 'claude-3-haiku-20240307'],
    ['gemini', 'gemini-2.0-flash'],
    ['gemini', 'gemini-1.5-pro'],
    ['gemini', 'gemma-3-27b-it'],
  ] as const)('%s %s does not', (provider, model) => {
    expect(reasons(provider, model)).toBe(false);
  });
});
