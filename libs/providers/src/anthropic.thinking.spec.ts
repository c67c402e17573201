import { GatewayError } from '@keygate/errors';
import { refusalOf } from '@keygate/errors/testing';
import { claudeVersion, messagesForFallback, thinkingBlocksOf, thinkingForm, withoutClaudeThinking } from './anthropic.thinking';
import { toMessagesRequest } from './anthropic.translate';
import type { ChatCompletionRequest } from './chat.types';

function refusal(body: ChatCompletionRequest): { code: string; param: string | undefined; message: string } {
  try {
    toMessagesRequest(body);
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    return { code: error.code, param: error.options.param, message: error.message };
  }
  throw new Error('the request was not refused');
}

const ask = (model: string, extra: Partial<ChatCompletionRequest> = {}): ChatCompletionRequest => ({
  model,
  max_tokens: 20000,
  messages: [{ role: 'user', content: 'Think about it' }],
  ...extra,
});

describe('claudeVersion', () => {
  it.each([
    ['claude-3-7-sonnet-20250219', { major: 3, minor: 7 }],
    ['claude-3-5-haiku-20241022', { major: 3, minor: 5 }],
    ['claude-3-opus-20240229', { major: 3, minor: 0 }],
    ['claude-sonnet-4-20250514', { major: 4, minor: 0 }],
    ['claude-opus-4-1-20250805', { major: 4, minor: 1 }],
    ['claude-opus-4-1@20250805', { major: 4, minor: 1 }],
    ['claude-sonnet-4-5', { major: 4, minor: 5 }],
    ['claude-haiku-4-5-20251001', { major: 4, minor: 5 }],
    ['anthropic.claude-opus-4-6-v1', { major: 4, minor: 6 }],
    ['claude-fable-5-1', { major: 5, minor: 1 }],
    ['claude-sonnet-5', { major: 5, minor: 0 }],
    ['claude-2.1', { major: 2, minor: 1 }],
    ['claude-instant-1.2', { major: 1, minor: 2 }],
  ])('reads %s', (model, version) => {
    expect(claudeVersion(model)).toStrictEqual(version);
  });

  it('reads no version from an id that names none', () => {
    expect(claudeVersion('claude-mythos-preview')).toBeNull();
    expect(claudeVersion('my-finetune')).toBeNull();
  });
});

describe('thinkingForm', () => {
  it.each([
    ['claude-3-5-sonnet-20241022', 'none'],
    ['claude-3-haiku-20240307', 'none'],
    ['claude-2.1', 'none'],
    ['claude-3-7-sonnet-20250219', 'budget'],
    ['claude-opus-4-20250514', 'budget'],
    ['claude-sonnet-4-5', 'budget'],
    ['claude-opus-4-5', 'budget'],
    ['claude-sonnet-4-6', 'adaptive'],
    ['claude-opus-4-7', 'adaptive'],
    ['claude-sonnet-5', 'adaptive'],
    ['claude-mythos-preview', 'adaptive'],
  ])('%s thinks in the %s form', (model, form) => {
    expect(thinkingForm(model)).toBe(form);
  });
});

describe('reasoning_effort on Claude', () => {
  it('gives a budget-form model the effort’s budget, kept below max_tokens', () => {
    const budgets = ['minimal', 'low', 'medium', 'high', 'xhigh'].map(
      (effort) => toMessagesRequest(ask('claude-sonnet-4-5', { reasoning_effort: effort, max_tokens: 64000 })).thinking,
    );
    expect(budgets).toStrictEqual([1024, 2048, 8192, 16384, 32768].map((budget_tokens) => ({ type: 'enabled', budget_tokens })));
    expect(toMessagesRequest(ask('claude-3-7-sonnet-20250219', { reasoning_effort: 'high', max_tokens: 4096 })).thinking).toStrictEqual({
      type: 'enabled',
      budget_tokens: 4095,
    });
  });

  it('refuses a budget-form request that cannot think: 1,024 completion tokens or fewer', () => {
    const r = refusal(ask('claude-sonnet-4-5', { reasoning_effort: 'low', max_completion_tokens: 1024, max_tokens: undefined }));
    expect(r).toMatchObject({ code: 'invalid_request', param: 'max_completion_tokens' });
    expect(r.message).toContain('this request allows 1024');
    // The refusal names the field the request set (or the one keygate's cap went in as).
    const viaMaxTokens = refusal(ask('claude-sonnet-4-5', { reasoning_effort: 'low', max_tokens: 1000 }));
    expect(viaMaxTokens).toMatchObject({ code: 'invalid_request', param: 'max_tokens' });
    expect(viaMaxTokens.message).toContain('which max_tokens counts); this request allows 1000');
    const smallerOfTwo = refusal(ask('claude-sonnet-4-5', { reasoning_effort: 'low', max_tokens: 900, max_completion_tokens: 4000 }));
    expect(smallerOfTwo).toMatchObject({ param: 'max_tokens' });
    expect(refusal(ask('claude-sonnet-4-5', { reasoning_effort: 'low', max_tokens: 4000, max_completion_tokens: 900 }))).toMatchObject({
      param: 'max_completion_tokens',
    });
    expect(toMessagesRequest(ask('claude-sonnet-4-5', { reasoning_effort: 'low', max_tokens: 1025 })).thinking).toStrictEqual({
      type: 'enabled',
      budget_tokens: 1024,
    });
  });

  it('gives an adaptive model adaptive thinking at the effort (minimal as low, xhigh as max on 4.6), summarized from 4.7', () => {
    const effort = (model: string, e: string): unknown => {
      const out = toMessagesRequest(ask(model, { reasoning_effort: e }));
      // From 4.7 on Claude leaves the thinking's text out unless asked to show it.
      const shown = /-4-6$/.test(model) ? { type: 'adaptive' } : { type: 'adaptive', display: 'summarized' };
      expect(out.thinking).toStrictEqual(shown);
      return out.output_config?.effort;
    };
    expect(['minimal', 'low', 'medium', 'high', 'xhigh'].map((e) => effort('claude-opus-4-6', e))).toStrictEqual([
      'low',
      'low',
      'medium',
      'high',
      'max',
    ]);
    expect(effort('claude-opus-4-7', 'xhigh')).toBe('xhigh');
    expect(effort('claude-sonnet-5', 'high')).toBe('high');
  });

  it('asks for no thinking with none, nor with minimal on a model that does not think', () => {
    for (const [model, effort] of [
      ['claude-sonnet-4-5', 'none'],
      ['claude-opus-4-7', 'none'],
      ['claude-3-5-sonnet-20241022', 'none'],
      ['claude-3-5-sonnet-20241022', 'minimal'],
    ]) {
      const out = toMessagesRequest(ask(model, { reasoning_effort: effort }));
      expect(out.thinking).toBeUndefined();
      expect(out.output_config).toBeUndefined();
    }
    expect(toMessagesRequest(ask('claude-sonnet-4-5', { reasoning_effort: null })).thinking).toBeUndefined();
  });

  it('refuses more than minimal on a model that does not think, and an effort OpenAI does not have', () => {
    expect(refusal(ask('claude-3-5-sonnet-20241022', { reasoning_effort: 'low' }))).toMatchObject({
      code: 'unsupported_parameter',
      param: 'reasoning_effort',
    });
    expect(refusal(ask('claude-sonnet-4-5', { reasoning_effort: 'max' }))).toMatchObject({
      code: 'invalid_request',
      param: 'reasoning_effort',
    });
  });

  it('refuses what Claude refuses while thinking: a temperature but 1, top_p below 0.95, a forced tool', () => {
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }];
    for (const model of ['claude-sonnet-4-5', 'claude-opus-4-7']) {
      expect(refusal(ask(model, { reasoning_effort: 'low', temperature: 0.2 }))).toMatchObject({ param: 'temperature' });
      expect(refusal(ask(model, { reasoning_effort: 'low', top_p: 0.9 }))).toMatchObject({ param: 'top_p' });
      expect(refusal(ask(model, { reasoning_effort: 'low', tools, tool_choice: 'required' }))).toMatchObject({ param: 'tool_choice' });
      expect(
        refusal(ask(model, { reasoning_effort: 'low', tools, tool_choice: { type: 'function', function: { name: 'lookup' } } })),
      ).toMatchObject({ code: 'unsupported_parameter', param: 'tool_choice' });
      const fine = toMessagesRequest(ask(model, { reasoning_effort: 'low', temperature: 1, top_p: 0.95, tools, tool_choice: 'auto' }));
      expect(fine.thinking).toBeDefined();
    }
    // Without thinking the same sampling passes.
    expect(toMessagesRequest(ask('claude-sonnet-4-5', { reasoning_effort: 'none', temperature: 0.2 })).temperature).toBe(0.2);
  });

  describe('mid tool loop', () => {
    const call = { id: 'toolu_1', type: 'function', function: { name: 'lookup', arguments: '{}' } };
    const loop = (assistant: Record<string, unknown>): ChatCompletionRequest =>
      ask('claude-sonnet-4-5', {
        reasoning_effort: 'medium',
        tools: [{ type: 'function', function: { name: 'lookup' } }],
        messages: [
          { role: 'user', content: 'Look it up' },
          { role: 'assistant', content: null, tool_calls: [call], ...assistant },
          { role: 'tool', tool_call_id: 'toolu_1', content: 'found' },
        ],
      });

    it('thinks when the assistant turn comes back with its thinking first', () => {
      const out = toMessagesRequest(loop({ thinking_blocks: [{ type: 'thinking', thinking: 'Look up.', signature: 'sig' }] }));
      expect(out.thinking).toStrictEqual({ type: 'enabled', budget_tokens: 8192 });
      expect(out.messages[1].content).toStrictEqual([
        { type: 'thinking', thinking: 'Look up.', signature: 'sig' },
        { type: 'tool_use', id: 'toolu_1', name: 'lookup', input: {} },
      ]);
    });

    it('does not think when the client did not keep the thinking (Claude would refuse the request)', () => {
      const out = toMessagesRequest(loop({}));
      expect(out.thinking).toBeUndefined();
      expect(out.output_config).toBeUndefined();
    });

    it('keeps thinking at the loop’s next steps: only the turn’s first assistant message carries thinking', () => {
      const body = loop({ thinking_blocks: [{ type: 'thinking', thinking: 'Look up.', signature: 'sig' }] });
      const second = { id: 'toolu_2', type: 'function', function: { name: 'lookup', arguments: '{"more":true}' } };
      body.messages.push(
        { role: 'assistant', content: null, tool_calls: [second] },
        { role: 'tool', tool_call_id: 'toolu_2', content: 'more found' },
      );
      const out = toMessagesRequest(body);
      expect(out.thinking).toStrictEqual({ type: 'enabled', budget_tokens: 8192 });
      expect(out.messages.map((m) => (typeof m.content === 'string' ? 'text' : m.content.map((b) => b.type).join('+')))).toStrictEqual([
        'text',
        'thinking+tool_use',
        'tool_result',
        'tool_use',
        'tool_result',
      ]);
    });

    it('does not think at a later step when the turn’s first assistant message came back without its thinking', () => {
      const body = loop({});
      const second = { id: 'toolu_2', type: 'function', function: { name: 'lookup', arguments: '{}' } };
      body.messages.push(
        {
          role: 'assistant',
          content: null,
          tool_calls: [second],
          thinking_blocks: [{ type: 'thinking', thinking: 'a later thought', signature: 's2' }],
        },
        { role: 'tool', tool_call_id: 'toolu_2', content: 'more found' },
      );
      expect(toMessagesRequest(body).thinking).toBeUndefined();
    });

    it('thinks again once a user turn follows the loop', () => {
      const body = loop({});
      body.messages.push({ role: 'assistant', content: 'It is found.' }, { role: 'user', content: 'And now?' });
      expect(toMessagesRequest(body).thinking).toStrictEqual({ type: 'enabled', budget_tokens: 8192 });
    });
  });
});

describe('thinking blocks where Claude refuses them', () => {
  const signed = [{ type: 'thinking', thinking: 'hmm', signature: 'sig' }];

  it('refuses a prefill (a final assistant message) while thinking, before anything is sent', () => {
    const body = ask('claude-opus-4-7', {
      reasoning_effort: 'low',
      messages: [
        { role: 'user', content: 'Answer in French' },
        { role: 'assistant', content: 'Bien sûr,' },
      ],
    });
    expect(refusal(body)).toMatchObject({ code: 'unsupported_parameter', param: 'reasoning_effort' });
  });

  it('takes thinking out of a prefill when Claude does not think (it refuses them there), and keeps it elsewhere', () => {
    const out = toMessagesRequest(
      ask('claude-sonnet-4-5', {
        messages: [
          { role: 'user', content: 'one' },
          { role: 'assistant', content: 'first', thinking_blocks: signed },
          { role: 'user', content: 'two' },
          { role: 'assistant', content: 'Well,', thinking_blocks: signed },
        ],
      }),
    );
    expect(out.thinking).toBeUndefined();
    expect(out.messages[1].content).toStrictEqual([signed[0], { type: 'text', text: 'first' }]);
    expect(out.messages[3].content).toStrictEqual([{ type: 'text', text: 'Well,' }]);
  });

  it('leaves out an assistant message that is only thinking (an answer cut short while thinking): Claude refuses a turn ending in thinking', () => {
    const out = toMessagesRequest(
      ask('claude-sonnet-4-5', {
        reasoning_effort: 'low',
        messages: [
          { role: 'user', content: 'one' },
          { role: 'assistant', content: null, thinking_blocks: signed },
          { role: 'user', content: 'go on' },
        ],
      }),
    );
    expect(out.messages).toStrictEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'one' },
          { type: 'text', text: 'go on' },
        ],
      },
    ]);
    expect(out.thinking).toStrictEqual({ type: 'enabled', budget_tokens: 2048 });
  });
});

describe('thinkingBlocksOf', () => {
  it('keeps exactly the fields Claude signed, dropping anything else the client added', () => {
    expect(
      thinkingBlocksOf(
        [
          { type: 'thinking', thinking: 'a', signature: 's', index: 0 },
          { type: 'redacted_thinking', data: 'd', extra: true },
        ],
        'messages[1].thinking_blocks',
      ),
    ).toStrictEqual([
      { type: 'thinking', thinking: 'a', signature: 's' },
      { type: 'redacted_thinking', data: 'd' },
    ]);
    expect(thinkingBlocksOf(null, 'x')).toStrictEqual([]);
  });

  it.each([
    ['not an array', { type: 'thinking' }, 'messages[1].thinking_blocks'],
    ['a block without its signature', [{ type: 'thinking', thinking: 'a' }], 'messages[1].thinking_blocks[0]'],
    ['a redacted block without data', [{ type: 'redacted_thinking' }], 'messages[1].thinking_blocks[0]'],
    ['a text block', [{ type: 'text', text: 'a' }], 'messages[1].thinking_blocks[0]'],
  ])('refuses %s, naming it', (_name, value, param) => {
    let caught: unknown;
    try {
      thinkingBlocksOf(value, 'messages[1].thinking_blocks');
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(GatewayError);
    expect((caught as GatewayError).options.param).toBe(param);
  });
});

describe('withoutClaudeThinking', () => {
  it('takes thinking_blocks and reasoning_content off the messages that carry them, and leaves the rest as sent', () => {
    const user = { role: 'user', content: 'hi' };
    const answered = {
      role: 'assistant',
      content: 'hello',
      reasoning_content: 'thought',
      thinking_blocks: [{ type: 'thinking', thinking: 'thought', signature: 's' }],
      tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }],
    };
    const messages = [user, answered, { role: 'tool', tool_call_id: 'c1', content: '1' }];
    const out = withoutClaudeThinking(messages);
    expect(out).toStrictEqual([user, { role: 'assistant', content: 'hello', tool_calls: answered.tool_calls }, messages[2]]);
    expect(out[0]).toBe(user);
    // The client's body is not changed: a later attempt at Claude still has the thinking.
    expect(messages[1]).toHaveProperty('thinking_blocks');
  });

  it('returns the same array when no message carries thinking', () => {
    const messages = [{ role: 'user', content: 'hi' }];
    expect(withoutClaudeThinking(messages)).toBe(messages);
  });
});

describe('messagesForFallback', () => {
  const history = [
    { role: 'user', content: 'first' },
    {
      role: 'assistant',
      content: [
        { type: 'thinking', thinking: 'hmm', signature: 'sig' },
        { type: 'redacted_thinking', data: 'x' },
        { type: 'text', text: 'ok' },
      ],
    },
    { role: 'user', content: 'next' },
  ];
  const budget = { model: 'claude-sonnet-4-5', max_tokens: 2048, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: history };
  const adaptive = {
    model: 'claude-opus-4-7',
    max_tokens: 2048,
    thinking: { type: 'adaptive' },
    output_config: { effort: 'high', format: { type: 'json_schema', schema: {} } },
    messages: history,
  };

  it('sends a fallback that does not think (Claude 3.5) the request without thinking, effort or the history’s thinking blocks', () => {
    const out = messagesForFallback(adaptive, 'claude-3-5-sonnet-20241022');
    expect(out).not.toHaveProperty('thinking');
    expect(out.output_config).toEqual({ format: { type: 'json_schema', schema: {} } });
    expect(out.messages[1]).toEqual({ role: 'assistant', content: [{ type: 'text', text: 'ok' }] });
    expect(out.messages[0]).toBe(history[0]);
    const plain = messagesForFallback({ ...budget, output_config: { effort: 'low' } }, 'claude-3-haiku-20240307');
    expect(plain).not.toHaveProperty('output_config');
    // The client's body is not changed: the requested model's next attempt still thinks.
    expect(history[1].content).toHaveLength(3);
    // A turn that was only thinking goes: Anthropic refuses an empty one, and joins the turns either side.
    const onlyThinking = {
      ...budget,
      messages: [history[0], { role: 'assistant', content: [{ type: 'thinking', thinking: 'hmm', signature: 'sig' }] }, history[2]],
    };
    expect(messagesForFallback(onlyThinking, 'claude-3-5-sonnet-20241022').messages).toEqual([history[0], history[2]]);
  });

  it('passes a budget to Claude 3.7 to 4.6 and adaptive thinking to 4.6 and later as they are', () => {
    expect(messagesForFallback(budget, 'claude-3-7-sonnet-20250219')).toBe(budget);
    expect(messagesForFallback(budget, 'claude-opus-4-6')).toBe(budget);
    expect(messagesForFallback(adaptive, 'claude-opus-4-6')).toBe(adaptive);
    expect(messagesForFallback(adaptive, 'claude-opus-4-8')).toBe(adaptive);
  });

  it('skips (refuses) a fallback that thinks in another form: a budget on 4.7 and later, adaptive thinking before 4.6', () => {
    expect(refusalOf(() => messagesForFallback(budget, 'claude-opus-4-7')).code).toBe('unsupported_parameter');
    expect(refusalOf(() => messagesForFallback(adaptive, 'claude-sonnet-4-5')).code).toBe('unsupported_parameter');
  });

  it('passes a request without thinking, or with it disabled, as it is', () => {
    const off = { ...budget, thinking: { type: 'disabled' } };
    expect(messagesForFallback(off, 'claude-3-5-sonnet-20241022')).toBe(off);
    const none = { model: 'claude-sonnet-4-5', messages: history };
    expect(messagesForFallback(none, 'claude-3-5-sonnet-20241022')).toBe(none);
  });
});
