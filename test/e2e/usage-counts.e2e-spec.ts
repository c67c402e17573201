/**
 * Usage counts that are not counts, black box: Anthropic and Gemini answers (from a compatible
 * host) whose usage counts are JSON strings (the mock's `bad_usage=1`), through the built gateway
 * with the official `openai` SDK. The client gets no usage rather than one made of strings (`"12"`
 * and `"3"` once added up to `"123"`), and the request is billed and audited at keygate's estimate,
 * as for a host that reports no usage: its prompt's, which an OpenAI model's answer without usage
 * (`no_usage=1`) to the same messages shows, and its answer text's.
 */
import { countTokens } from 'gpt-tokenizer';
import type { ChatCompletionChunk, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { OPENAI_MODEL, rid, TRANSLATED_PROVIDERS, useProviderStack } from './provider-fixtures';
import { mintToken, type Gateway } from './harness';

const suite = useProviderStack(0);
const { counting, expectOneAudit } = suite;

let gw: Gateway;
let token: string;

beforeAll(() => {
  ({ gw } = suite.stack());
  token = mintToken({ product: 'prov', sub: 'usage-counts-user' });
});

function user(text: string): ChatCompletionMessageParam[] {
  return [{ role: 'user', content: text }];
}

/**
 * keygate's estimate of the prompt of `messages`: the tokens_in of an OpenAI model's answer that
 * reports no usage (the estimate counts the messages, whichever model they go to).
 */
async function estimatedPrompt(messages: ChatCompletionMessageParam[]): Promise<number | null> {
  const { id, headers } = rid('usage-counts-estimate');
  const answer = await gw.openai(token).chat.completions.create({ model: OPENAI_MODEL, messages }, { headers });
  expect(answer.usage).toBeUndefined();
  return (await expectOneAudit(id, { status: 200, failure: null, provider: 'openai' })).tokens_in;
}

/** The audit's token columns of a request billed at keygate's estimate. */
function estimated(tokensIn: number | null, answerText: string): Record<string, unknown> {
  return {
    tokens_in: tokensIn,
    tokens_out: countTokens(answerText),
    tokens_cached: null,
    tokens_cache_write: null,
    tokens_reasoning: null,
  };
}

describe.each(TRANSLATED_PROVIDERS)('$provider usage whose counts are strings', ({ provider, model, route, streamRoute }) => {
  it('answers without usage, billed and audited at keygate’s estimate', async () => {
    // `no_usage` is the OpenAI mock's and `bad_usage` the others': the same messages go to both.
    const messages = user(`count this answer [mock bad_usage=1 no_usage=1] (${provider})`);
    const prompt = await estimatedPrompt(messages);
    expect(prompt).toBeGreaterThan(5);

    const { id, headers } = rid(`usage-counts-${provider}`);
    const { result, moved } = await counting(() => gw.openai(token).chat.completions.create({ model, messages }, { headers }));
    expect(moved).toEqual({ [route]: 1 });
    const text = result.choices[0].message.content ?? '';
    expect(text).toContain(`Hello from mock ${provider}`);
    expect(result.usage).toBeUndefined();
    await expectOneAudit(id, { status: 200, failure: null, provider, stream: false, attempts: 1, ...estimated(prompt, text) });
  });

  it('streams without a usage chunk though the client asked for one, billed and audited at keygate’s estimate', async () => {
    const messages = user(`count this stream [mock bad_usage=1 no_usage=1 chunks=3] (${provider})`);
    const prompt = await estimatedPrompt(messages);

    const { id, headers } = rid(`usage-counts-${provider}-stream`);
    const { result: chunks, moved } = await counting(async () => {
      const stream = await gw
        .openai(token)
        .chat.completions.create({ model, messages, stream: true, stream_options: { include_usage: true } }, { headers });
      const all: ChatCompletionChunk[] = [];
      for await (const chunk of stream) all.push(chunk);
      return all;
    });
    expect(moved).toEqual({ [streamRoute]: 1 });
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    expect(text).toContain(`Hello from mock ${provider}`);
    expect(chunks.filter((c) => c.choices.length === 0 || (c.usage !== undefined && c.usage !== null))).toEqual([]);
    await expectOneAudit(id, { status: 200, failure: null, provider, stream: true, attempts: 1, ...estimated(prompt, text) });
  });
});
