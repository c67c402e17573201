import { isOpenAiOwnHost } from './openai-host';

describe('isOpenAiOwnHost', () => {
  it.each([
    ['https://api.openai.com/v1', true],
    ['https://us.api.openai.com/v1', true],
    ['https://eu.api.openai.com/v1', true],
    ['https://API.OpenAI.com/v1', true],
    ['http://api.openai.com/v1', false],
    ['https://api.openai.com.evil.example/v1', false],
    ['https://notapi.openai.com/v1', false],
    ['https://my-openai-proxy.example/v1', false],
    ['http://127.0.0.1:8090/v1', false],
    ['not a url', false],
  ])('%s is OpenAI’s own API: %s', (url, own) => {
    expect(isOpenAiOwnHost(url)).toBe(own);
    expect(isOpenAiOwnHost(url)).toBe(own);
  });
});
