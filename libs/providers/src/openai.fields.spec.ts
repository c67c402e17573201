import type { ChatCompletionRequest } from './chat.types';
import { openAiFieldsOnly } from './openai.fields';

describe('openAiFieldsOnly', () => {
  const messages = [{ role: 'user', content: 'hi' }];

  it("keeps the OpenAI API's fields as sent and leaves out the others (another provider's, a typo)", () => {
    const body: ChatCompletionRequest = {
      model: 'gpt-4o',
      messages,
      seed: 7,
      store: false,
      metadata: { team: 'search' },
      top_k: 40,
      extra_body: { google: { thinking_config: { include_thoughts: true } } },
      temprature: 0.2,
    };
    const out = openAiFieldsOnly(body);
    expect(out).toStrictEqual({ model: 'gpt-4o', messages, seed: 7, store: false, metadata: { team: 'search' } });
    expect(out.messages).toBe(messages);
    // The client's body is not changed: a later attempt at the requested model still has every field.
    expect(body).toHaveProperty('top_k', 40);
  });

  it('returns the body itself when every field is an OpenAI one', () => {
    const body: ChatCompletionRequest = { model: 'gpt-4o', messages, temperature: 0.5, stream: true, stream_options: null };
    expect(openAiFieldsOnly(body)).toBe(body);
  });
});
