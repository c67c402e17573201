import { claudeModel } from './anthropic.thinking';
import type {
  AnthropicContentBlock,
  AnthropicErrorBody,
  AnthropicMessage,
  AnthropicStreamEvent,
  AnthropicThinkingBlock,
  ContentBlockDeltaEvent,
} from './anthropic.types';
import { ANTHROPIC_AUTH, parseSse, postJson, readJson, startMock, type RunningMock } from './mock.testing';

const TOOLS = [{ name: 'get_weather', description: 'w', input_schema: { type: 'object', properties: {} } }];
const user = (content: unknown): Record<string, unknown> => ({ role: 'user', content });
const BUDGET = { type: 'enabled', budget_tokens: 1024 };
const ADAPTIVE = { type: 'adaptive' };
const ADAPTIVE_ONLY =
  '"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive" and "output_config.effort" to control thinking behavior.';

describe('claudeModel', () => {
  it.each([
    ['claude-3-7-sonnet-20250219', 307],
    ['claude-3-5-haiku-20241022', 305],
    ['claude-3-5-sonnet-latest', 305],
    ['claude-3-opus-20240229', 300],
    ['claude-2.1', 201],
    ['claude-instant-1.2', 102],
    ['claude-sonnet-4-20250514', 400],
    ['claude-opus-4-1-20250805', 401],
    ['claude-opus-4-1@20250805', 401],
    ['claude-sonnet-4-5', 405],
    ['claude-haiku-4-5-20251001', 405],
    ['claude-opus-4-6', 406],
    ['claude-opus-4-7', 407],
    ['claude-sonnet-5', 500],
    ['anthropic.claude-3-7-sonnet-20250219-v1:0', 307],
  ])('%s is generation %d', (id, version) => {
    expect(claudeModel(id).version).toBe(version);
  });

  it.each(['claude-fable-5-1', 'claude-mythos-preview', 'claude-mythos-1', 'claude', 'claude-next'])('%s counts as the newest', (id) => {
    expect(claudeModel(id).version).toBe(Number.POSITIVE_INFINITY);
  });

  it('tells Opus apart', () => {
    expect(claudeModel('claude-opus-4-5-20251101')).toEqual({ version: 405, opus: true });
    expect(claudeModel('claude-sonnet-4-5').opus).toBe(false);
  });
});

describe('Anthropic thinking', () => {
  let mock: RunningMock;
  beforeAll(async () => {
    mock = await startMock();
  });
  afterAll(() => mock.close());

  const messages = (body: Record<string, unknown>): Promise<Response> =>
    postJson(mock.base, '/v1/messages', { model: 'claude-sonnet-4-5', max_tokens: 2048, messages: [user('hi')], ...body }, ANTHROPIC_AUTH);

  const ok = async (body: Record<string, unknown>): Promise<AnthropicMessage> => {
    const res = await messages(body);
    const text = await res.text();
    if (res.status !== 200) throw new Error(`POST /v1/messages answered ${res.status}: ${text}`);
    return JSON.parse(text) as AnthropicMessage;
  };

  /** The 400's message, after checking Anthropic's error shape. */
  const refused = async (body: Record<string, unknown>): Promise<string> => {
    const res = await messages(body);
    expect(res.status).toBe(400);
    const error = await readJson<AnthropicErrorBody>(res);
    expect(error).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    expect(error.request_id).toMatch(/^req_/);
    return error.error.message;
  };

  const events = async (res: Response): Promise<AnthropicStreamEvent[]> =>
    parseSse(await res.text()).map((e) => {
      const data = JSON.parse(e.data) as AnthropicStreamEvent;
      expect(data.type).toBe(e.event);
      return data;
    });

  const deltas = (evs: AnthropicStreamEvent[], index: number): ContentBlockDeltaEvent['delta'][] =>
    evs.filter((e): e is ContentBlockDeltaEvent => e.type === 'content_block_delta' && e.index === index).map((e) => e.delta);

  /** A conversation mid tool loop whose assistant turn is `turn`. */
  const loop = (turn: AnthropicContentBlock[]): Record<string, unknown>[] => [
    user('w'),
    { role: 'assistant', content: turn },
    user([{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'sunny' }]),
  ];
  const toolUse: AnthropicContentBlock = { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: {} };

  describe('forms per model generation', () => {
    it.each(['claude-3-5-haiku-20241022', 'claude-3-5-sonnet-20241022', 'claude-3-opus-20240229', 'claude-2.1', 'claude-instant-1.2'])(
      '%s does not think: enabled and adaptive are refused, disabled is fine',
      async (model) => {
        expect(await refused({ model, thinking: BUDGET })).toBe(`'${model}' does not support thinking.`);
        expect(await refused({ model, thinking: ADAPTIVE })).toBe(`'${model}' does not support thinking.`);
        expect((await ok({ model, thinking: { type: 'disabled' } })).content.map((b) => b.type)).toEqual(['text']);
      },
    );

    it.each([
      'claude-3-7-sonnet-20250219',
      'claude-sonnet-4-20250514',
      'claude-opus-4-1-20250805',
      'claude-opus-4-1@20250805',
      'claude-sonnet-4-5',
      'claude-haiku-4-5-20251001',
    ])('%s takes the budget form only', async (model) => {
      expect((await ok({ model, thinking: BUDGET })).content.map((b) => b.type)).toEqual(['thinking', 'text']);
      expect(await refused({ model, thinking: ADAPTIVE })).toBe('adaptive thinking is not supported on this model');
      expect((await ok({ model, thinking: { type: 'disabled' } })).content.map((b) => b.type)).toEqual(['text']);
    });

    it.each(['claude-opus-4-6', 'claude-sonnet-4-6'])('%s takes both forms', async (model) => {
      expect((await ok({ model, thinking: BUDGET })).content.map((b) => b.type)).toEqual(['thinking', 'text']);
      expect((await ok({ model, thinking: ADAPTIVE })).content.map((b) => b.type)).toEqual(['thinking', 'text']);
      expect((await ok({ model, thinking: { type: 'disabled' } })).content.map((b) => b.type)).toEqual(['text']);
    });

    it.each(['claude-opus-4-7', 'claude-sonnet-5', 'claude-fable-5-1', 'claude-mythos-preview', 'claude'])(
      '%s thinks adaptively only: enabled and disabled are refused',
      async (model) => {
        expect((await ok({ model, thinking: ADAPTIVE })).content.map((b) => b.type)).toEqual(['thinking', 'text']);
        expect(await refused({ model, thinking: BUDGET })).toBe(ADAPTIVE_ONLY);
        expect(await refused({ model, thinking: { type: 'disabled' } })).toBe(ADAPTIVE_ONLY.replace('enabled', 'disabled'));
      },
    );

    it('does not think without a thinking field, whatever the model', async () => {
      for (const model of ['claude-3-5-haiku-20241022', 'claude-sonnet-4-5', 'claude-opus-4-7'])
        expect((await ok({ model })).content.map((b) => b.type)).toEqual(['text']);
    });
  });

  describe('output_config.effort', () => {
    it.each([
      ['claude-opus-4-5-20251101', 'low'],
      ['claude-opus-4-5-20251101', 'high'],
      ['claude-sonnet-4-6', 'medium'],
      ['claude-opus-4-6', 'max'],
      ['claude-opus-4-7', 'xhigh'],
      ['claude-sonnet-5', 'max'],
      ['claude-mythos-preview', 'low'],
    ])('%s takes %s, with or without thinking', async (model, effort) => {
      await ok({ model, output_config: { effort } });
      const thinking = model === 'claude-opus-4-5-20251101' ? BUDGET : ADAPTIVE;
      expect((await ok({ model, thinking, output_config: { effort } })).content[0].type).toBe('thinking');
    });

    it.each([
      ['claude-sonnet-4-5', 'high', 'This model does not support the effort parameter.'],
      ['claude-haiku-4-5-20251001', 'low', 'This model does not support the effort parameter.'],
      ['claude-opus-4-1-20250805', 'medium', 'This model does not support the effort parameter.'],
      ['claude-3-7-sonnet-20250219', 'high', 'This model does not support the effort parameter.'],
      ['claude-opus-4-5-20251101', 'max', "This model does not support effort level 'max'. Supported levels: high, low, medium."],
      ['claude-sonnet-4-6', 'xhigh', "This model does not support effort level 'xhigh'. Supported levels: high, low, max, medium."],
      ['claude-opus-4-7', 'extreme', "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"],
      ['claude-opus-4-7', 3, "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"],
    ])('%s refuses effort %s', async (model, effort, message) => {
      expect(await refused({ model, output_config: { effort } })).toBe(message);
    });

    it('goes with a structured-outputs format, whose checks still apply', async () => {
      const schema = { type: 'object', properties: { a: { type: 'string' } }, required: ['a'], additionalProperties: false };
      const body = await ok({
        model: 'claude-opus-4-7',
        thinking: ADAPTIVE,
        output_config: { effort: 'low', format: { type: 'json_schema', schema } },
      });
      expect(body.content.map((b) => b.type)).toEqual(['thinking', 'text']);
      expect(body.content[1].type === 'text' && JSON.parse(body.content[1].text)).toEqual({ a: 'mock' });
      const open = { type: 'object', properties: {} };
      expect(
        await refused({ model: 'claude-opus-4-7', output_config: { effort: 'low', format: { type: 'json_schema', schema: open } } }),
      ).toMatch(/'additionalProperties' must be explicitly set to false/);
    });
  });

  describe('what thinking requires of the request', () => {
    it.each([
      ['a non-object', 'on', 'thinking: Input should be a valid dictionary or object to extract fields from'],
      ['no type', { budget_tokens: 2000 }, 'thinking.type: Field required'],
      [
        'an unknown type',
        { type: 'auto' },
        "thinking: Input tag 'auto' found using 'type' does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'",
      ],
      [
        'an inherited name as type',
        { type: 'toString' },
        "thinking: Input tag 'toString' found using 'type' does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'",
      ],
      ['a type that is not a string', { type: 1 }, 'thinking.type: Input should be a valid string'],
      ['no budget', { type: 'enabled' }, 'thinking.enabled.budget_tokens: Field required'],
      [
        'a fractional budget',
        { type: 'enabled', budget_tokens: 1500.5 },
        'thinking.enabled.budget_tokens: Input should be a valid integer',
      ],
      [
        'a budget below 1024',
        { type: 'enabled', budget_tokens: 1023 },
        'thinking.enabled.budget_tokens: Input should be greater than or equal to 1024',
      ],
      [
        'a budget on the adaptive form',
        { type: 'adaptive', budget_tokens: 2000 },
        'thinking.adaptive.budget_tokens: Extra inputs are not permitted',
      ],
      [
        'an effort inside thinking',
        { type: 'enabled', budget_tokens: 1024, effort: 'high' },
        'thinking.enabled.effort: Extra inputs are not permitted',
      ],
    ])('refuses %s', async (_case, thinking, message) => {
      expect(await refused({ thinking })).toBe(message);
    });

    it('wants max_tokens above the budget', async () => {
      expect(await refused({ max_tokens: 1024, thinking: BUDGET })).toMatch(
        /^`max_tokens` must be greater than `thinking.budget_tokens`\./,
      );
      await ok({ max_tokens: 1025, thinking: BUDGET });
    });

    it.each([
      ['temperature', { temperature: 0.7 }, { temperature: 1 }, /^`temperature` may only be set to 1 when thinking is enabled\./],
      ['top_p', { top_p: 0.9 }, { top_p: 0.95 }, /^`top_p` must be greater than or equal to 0\.95 or unset when thinking is enabled\./],
      ['top_k', { top_k: 40 }, {}, /^`top_k` must be unset when thinking is enabled\./],
    ])('limits %s, adaptive or budgeted, and not without thinking', async (_field, bad, fine, message) => {
      expect(await refused({ thinking: BUDGET, ...bad })).toMatch(message);
      expect(await refused({ model: 'claude-opus-4-7', thinking: ADAPTIVE, ...bad })).toMatch(message);
      await ok({ thinking: BUDGET, ...fine });
      await ok({ ...bad });
      await ok({ thinking: { type: 'disabled' }, ...bad });
    });

    it('refuses a tool choice that forces tool use, and takes auto and none', async () => {
      for (const tool_choice of [{ type: 'any' }, { type: 'tool', name: 'get_weather' }])
        expect(await refused({ tools: TOOLS, tool_choice, thinking: BUDGET })).toBe(
          'Thinking may not be enabled when tool_choice forces tool use.',
        );
      for (const tool_choice of [{ type: 'auto' }, { type: 'none' }]) await ok({ tools: TOOLS, tool_choice, thinking: BUDGET });
      await ok({ tools: TOOLS, tool_choice: { type: 'any' } });
    });
  });

  describe('the tool loop', () => {
    it('refuses an assistant tool turn that does not open with its thinking', async () => {
      const message = await refused({ tools: TOOLS, thinking: BUDGET, messages: loop([toolUse]) });
      expect(message).toBe(
        'messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final ' +
          '`assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We ' +
          'recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult our ' +
          'documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking',
      );
      const worded = await refused({
        tools: TOOLS,
        thinking: ADAPTIVE,
        model: 'claude-opus-4-7',
        messages: loop([{ type: 'text', text: 'let me look' }, toolUse]),
      });
      expect(worded).toMatch(/^messages\.1\.content\.0\.type: Expected `thinking` or `redacted_thinking`, but found `text`\./);
    });

    it('checks the turn’s first assistant message at every step of the loop: later ones carry no thinking of their own', async () => {
      const first = await ok({ tools: TOOLS, thinking: BUDGET, messages: [user('w [mock tool=get_weather]')] });
      const second: AnthropicContentBlock = { type: 'tool_use', id: 'toolu_2', name: 'get_weather', input: { more: true } };
      const later = [
        ...loop(first.content),
        { role: 'assistant', content: [second] },
        user([{ type: 'tool_result', tool_use_id: 'toolu_2', content: 'windy' }]),
      ];
      await ok({ tools: TOOLS, thinking: BUDGET, messages: later });
      const unthought = [...loop([toolUse]), { role: 'assistant', content: first.content }, later[4]];
      expect(await refused({ tools: TOOLS, thinking: BUDGET, messages: unthought })).toMatch(
        /^messages\.1\.content\.0\.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`\./,
      );
    });

    it('refuses a final assistant message (a prefill) while thinking, and thinking in one when not thinking', async () => {
      const issued = (await ok({ thinking: BUDGET, messages: [user('w')] })).content;
      expect(await refused({ thinking: BUDGET, messages: [user('w'), { role: 'assistant', content: 'Sure,' }] })).toMatch(
        /^messages\.1\.content\.0\.type: Expected `thinking` or `redacted_thinking`, but found `text`\./,
      );
      expect(await refused({ messages: [user('w'), { role: 'assistant', content: issued }] })).toBe(
        'When thinking is disabled, an `assistant` message in the final position cannot contain `thinking`. To use thinking blocks, enable `thinking` in your request.',
      );
      await ok({ messages: [user('w'), { role: 'assistant', content: issued }, user('and?')] });
    });

    it('refuses an assistant message that ends in thinking, thinking or not', async () => {
      const [thought] = (await ok({ thinking: BUDGET, messages: [user('w')] })).content;
      for (const thinking of [BUDGET, undefined])
        expect(await refused({ thinking, messages: [user('w'), { role: 'assistant', content: [thought] }, user('go on')] })).toBe(
          'messages.1: The final block in an assistant message cannot be `thinking`.',
        );
    });

    it('takes the turn without its thinking when thinking is off, or once the loop is over', async () => {
      await ok({ tools: TOOLS, messages: loop([toolUse]) });
      await ok({ tools: TOOLS, thinking: { type: 'disabled' }, messages: loop([toolUse]) });
      const over = [...loop([toolUse]), { role: 'assistant', content: 'sunny it is' }, user('thanks')];
      expect((await ok({ tools: TOOLS, thinking: BUDGET, messages: over })).content.map((b) => b.type)).toEqual(['thinking', 'text']);
    });

    it('takes back the thinking it issued with its tool calls, plain and streamed, and answers the result in text', async () => {
      const first = await ok({ tools: TOOLS, thinking: BUDGET, messages: [user('w [mock tool=get_weather redacted_thinking=1]')] });
      expect(first.content.map((b) => b.type)).toEqual(['thinking', 'redacted_thinking', 'tool_use']);
      const next = await ok({ tools: TOOLS, thinking: BUDGET, messages: loop(first.content) });
      expect(next.content.map((b) => b.type)).toEqual(['thinking', 'text']);
      expect(next.stop_reason).toBe('end_turn');

      const evs = await events(
        await messages({ stream: true, tools: TOOLS, thinking: BUDGET, messages: [user('w [mock tool=get_weather]')] }),
      );
      const streamed: AnthropicThinkingBlock = { type: 'thinking', thinking: '', signature: '' };
      for (const delta of deltas(evs, 0)) {
        if (delta.type === 'thinking_delta') streamed.thinking += delta.thinking;
        if (delta.type === 'signature_delta') streamed.signature += delta.signature;
      }
      await ok({ tools: TOOLS, thinking: BUDGET, messages: loop([streamed, toolUse]) });
    });
  });

  describe('signatures', () => {
    const issued = async (): Promise<AnthropicContentBlock[]> =>
      (await ok({ thinking: BUDGET, messages: [user('think [mock redacted_thinking=1]')] })).content;
    const history = (turn: AnthropicContentBlock[]): Record<string, unknown>[] => [
      user('think'),
      { role: 'assistant', content: turn },
      user('more'),
    ];

    it('verify for the blocks the mock issued, in any assistant turn', async () => {
      const turn = await issued();
      await ok({ thinking: BUDGET, messages: history(turn) });
      await ok({
        model: 'claude-opus-4-6',
        thinking: ADAPTIVE,
        messages: [...history(turn), { role: 'assistant', content: turn }, user('again')],
      });
    });

    it('do not verify for altered text, signature or data', async () => {
      const [thinking, redacted, text] = await issued();
      if (thinking.type !== 'thinking' || redacted.type !== 'redacted_thinking') throw new Error('expected thinking blocks');
      const altered = (block: AnthropicContentBlock): Promise<string> => refused({ thinking: BUDGET, messages: history([block, text]) });
      const badSignature = 'messages.1.content.0: Invalid `signature` in `thinking` block';
      expect(await altered({ ...thinking, thinking: `${thinking.thinking}!` })).toBe(badSignature);
      expect(
        await altered({ ...thinking, signature: `${thinking.signature.startsWith('A') ? 'B' : 'A'}${thinking.signature.slice(1)}` }),
      ).toBe(badSignature);
      expect(await altered({ ...thinking, signature: '' })).toBe(badSignature);
      expect(await altered({ ...thinking, signature: `${thinking.signature}!` })).toBe(badSignature);
      expect(await altered({ type: 'thinking', thinking: 'made up', signature: thinking.signature })).toBe(badSignature);
      const badData = 'messages.1.content.0: Invalid `data` in `redacted_thinking` block';
      expect(await altered({ ...redacted, data: `${redacted.data.slice(0, -4)}AAAA` })).toBe(badData);
      expect(await altered({ ...redacted, data: Buffer.from('opaque').toString('base64') })).toBe(badData);
      // A signature is not redacted data, nor the other way round.
      expect(await altered({ type: 'redacted_thinking', data: thinking.signature })).toBe(badData);
      expect(await altered({ ...thinking, signature: redacted.data })).toBe(badSignature);
    });

    it('refuse a thinking block without its fields', async () => {
      expect(
        await refused({ thinking: BUDGET, messages: history([{ type: 'thinking', thinking: 'x' } as unknown as AnthropicContentBlock]) }),
      ).toBe('messages.1.content.0.thinking.signature: Field required');
      expect(
        await refused({ thinking: BUDGET, messages: history([{ type: 'redacted_thinking' } as unknown as AnthropicContentBlock]) }),
      ).toBe('messages.1.content.0.redacted_thinking.data: Field required');
    });

    it('are not checked when thinking is off, as Anthropic ignores those blocks then', async () => {
      const forged: AnthropicContentBlock = { type: 'thinking', thinking: 'made up', signature: 'forged' };
      await ok({ messages: history([forged, { type: 'text', text: 'ok' }]) });
      await ok({ thinking: { type: 'disabled' }, messages: history([forged, { type: 'text', text: 'ok' }]) });
    });
  });

  describe('answers', () => {
    it('open with a signed thinking block derived from the prompt, counted in output_tokens', async () => {
      const body = await ok({ thinking: BUDGET, messages: [user('why is the sky blue?')] });
      const text = 'Hello from mock anthropic! You said: why is the sky blue?';
      const thinking = 'Mock thinking about: why is the sky blue?';
      expect(body.content).toEqual([
        { type: 'thinking', thinking, signature: expect.stringMatching(/^[A-Za-z0-9+/]+=*$/) as string },
        { type: 'text', text },
      ]);
      expect(body.usage.output_tokens).toBe(Math.ceil(text.length / 4) + Math.ceil(thinking.length / 4));
      const again = await ok({
        thinking: { ...ADAPTIVE, display: 'summarized' },
        model: 'claude-opus-4-7',
        messages: [user('why is the sky blue?')],
      });
      expect(again.content[0]).toEqual(body.content[0]);
    });

    it('leave the thinking’s text out by default from Claude 4.7 (display omitted), plain and streamed; the block still goes back', async () => {
      const plain = await ok({ tools: TOOLS, thinking: ADAPTIVE, model: 'claude-opus-4-7', messages: [user('w [mock tool=get_weather]')] });
      const [thought] = plain.content as AnthropicThinkingBlock[];
      expect(thought).toEqual({ type: 'thinking', thinking: '', signature: expect.any(String) as string });
      await ok({ tools: TOOLS, thinking: ADAPTIVE, model: 'claude-opus-4-7', messages: loop(plain.content) });
      // A signature of omitted thinking does not vouch for text put in its place.
      expect(
        await refused({
          tools: TOOLS,
          thinking: ADAPTIVE,
          model: 'claude-opus-4-7',
          messages: loop([{ ...thought, thinking: 'made up' }, ...plain.content.slice(1)]),
        }),
      ).toBe('messages.1.content.0: Invalid `signature` in `thinking` block');
      const evs = await events(await messages({ stream: true, thinking: ADAPTIVE, model: 'claude-opus-4-7', messages: [user('w')] }));
      expect(deltas(evs, 0).map((d) => d.type)).toEqual(['signature_delta']);
      // Earlier models show a summary unless told to omit it.
      expect(
        ((await ok({ thinking: ADAPTIVE, model: 'claude-opus-4-6', messages: [user('w')] })).content[0] as AnthropicThinkingBlock).thinking,
      ).not.toBe('');
      const hidden = await ok({ thinking: { ...BUDGET, display: 'omitted' }, messages: [user('w')] });
      expect((hidden.content[0] as AnthropicThinkingBlock).thinking).toBe('');
      expect(await refused({ thinking: { ...ADAPTIVE, display: 'full' }, model: 'claude-opus-4-7' })).toBe(
        "thinking.adaptive.display: Input should be 'summarized' or 'omitted'",
      );
    });

    it('add a redacted_thinking block on request, counted too', async () => {
      const plain = await ok({ thinking: BUDGET, messages: [user('x')] });
      const body = await ok({ thinking: BUDGET, messages: [user('x [mock redacted_thinking=1]')] });
      expect(body.content.map((b) => b.type)).toEqual(['thinking', 'redacted_thinking', 'text']);
      expect(body.content[1]).toEqual({ type: 'redacted_thinking', data: expect.stringMatching(/^[A-Za-z0-9+/]+=*$/) as string });
      expect(body.usage.output_tokens).toBeGreaterThan(plain.usage.output_tokens);
      // Without thinking the directive changes nothing.
      expect((await ok({ messages: [user('x [mock redacted_thinking=1]')] })).content.map((b) => b.type)).toEqual(['text']);
    });

    it('put the thinking before parallel tool calls', async () => {
      const body = await ok({ tools: TOOLS, thinking: BUDGET, messages: [user('w [mock tool=get_weather tools=2]')] });
      expect(body.content.map((b) => b.type)).toEqual(['thinking', 'tool_use', 'tool_use']);
      expect(body.stop_reason).toBe('tool_use');
    });

    it('stream the thinking block first: thinking deltas, one signature delta, then the text at index 1', async () => {
      const evs = await events(await messages({ stream: true, thinking: BUDGET, messages: [user('hi [mock chunks=2]')] }));
      expect(evs.map((e) => (e.type === 'content_block_delta' ? `${e.type}:${e.index}:${e.delta.type}` : e.type))).toEqual([
        'message_start',
        'content_block_start',
        'ping',
        'content_block_delta:0:thinking_delta',
        'content_block_delta:0:thinking_delta',
        'content_block_delta:0:signature_delta',
        'content_block_stop',
        'content_block_start',
        'content_block_delta:1:text_delta',
        'content_block_delta:1:text_delta',
        'content_block_stop',
        'message_delta',
        'message_stop',
      ]);
      expect(evs[1]).toEqual({ type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } });
      expect(evs[6]).toEqual({ type: 'content_block_stop', index: 0 });
      expect(evs[7]).toEqual({ type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } });
      expect(evs[10]).toEqual({ type: 'content_block_stop', index: 1 });

      const plain = await ok({ thinking: BUDGET, messages: [user('hi')] });
      const [thinking, text] = [deltas(evs, 0), deltas(evs, 1)];
      expect(thinking.map((d) => (d.type === 'thinking_delta' ? d.thinking : '')).join('')).toBe('Mock thinking about: hi');
      expect(thinking[2]).toEqual({ type: 'signature_delta', signature: (plain.content[0] as AnthropicThinkingBlock).signature });
      expect(text.map((d) => (d.type === 'text_delta' ? d.text : '')).join('')).toBe('Hello from mock anthropic! You said: hi');
      expect(evs[11]).toMatchObject({ type: 'message_delta', usage: { output_tokens: plain.usage.output_tokens } });
    });

    it('stream a redacted block whole, and shift the tool blocks after it', async () => {
      const evs = await events(
        await messages({
          stream: true,
          tools: TOOLS,
          thinking: BUDGET,
          messages: [user('w [mock tool=get_weather tools=2 chunks=1 redacted_thinking=1]')],
        }),
      );
      expect(
        evs.map((e) => (e.type === 'content_block_start' || e.type === 'content_block_stop' ? `${e.type}:${e.index}` : e.type)),
      ).toEqual([
        'message_start',
        'content_block_start:0',
        'ping',
        'content_block_delta',
        'content_block_delta',
        'content_block_stop:0',
        'content_block_start:1',
        'content_block_stop:1',
        'content_block_start:2',
        'content_block_delta',
        'content_block_stop:2',
        'content_block_start:3',
        'content_block_delta',
        'content_block_stop:3',
        'message_delta',
        'message_stop',
      ]);
      expect(evs[6]).toMatchObject({ content_block: { type: 'redacted_thinking', data: expect.any(String) as string } });
      for (const index of [2, 3]) {
        expect(evs.find((e) => e.type === 'content_block_start' && e.index === index)).toMatchObject({
          content_block: { type: 'tool_use', name: 'get_weather', input: {} },
        });
        expect(deltas(evs, index)).toEqual([{ type: 'input_json_delta', partial_json: '{"echo":"w"}' }]);
      }
    });

    it('stream structured outputs after the thinking', async () => {
      const schema = { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'], additionalProperties: false };
      const evs = await events(
        await messages({
          stream: true,
          model: 'claude-opus-4-7',
          thinking: ADAPTIVE,
          output_config: { effort: 'high', format: { type: 'json_schema', schema } },
        }),
      );
      expect(
        JSON.parse(
          deltas(evs, 1)
            .map((d) => (d.type === 'text_delta' ? d.text : ''))
            .join(''),
        ),
      ).toEqual({ n: 0 });
    });

    it('count thinking deltas as content chunks for the fault directives', async () => {
      const res = await messages({ stream: true, thinking: BUDGET, messages: [user('hi [mock chunks=2 error_event_after=2]')] });
      const evs = await events(res);
      expect(evs.map((e) => e.type)).toEqual([
        'message_start',
        'content_block_start',
        'ping',
        'content_block_delta',
        'content_block_delta',
        'error',
      ]);
      expect(deltas(evs, 0).map((d) => d.type)).toEqual(['thinking_delta', 'thinking_delta']);
    });
  });
});
