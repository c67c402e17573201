/**
 * `POST /v1/responses`, black box: the built gateway and mock upstream run as real processes and the
 * official OpenAI SDK's `responses.create` talks to an OpenAI model through the gateway. Every case
 * checks the outcome, what reached the upstream, and the request's single audit line.
 */
import OpenAI, { APIError } from 'openai';
import type { Response, ResponseStreamEvent } from 'openai/resources/responses/responses';
import {
  ANTHROPIC_MODEL,
  expectOneAuditOn,
  mockReply,
  OPENAI_MODEL,
  providerPolicyYaml,
  providerProducts,
  rid,
  TINY_CAP,
  useProviderStack,
  type FlakyUpstream,
} from './provider-fixtures';
import { apiError, mintToken, startGateway, writeTempFile, type Gateway } from './harness';
import { SHARED_REDIS_URL } from './limits-fixtures';

const MAX_RETRIES = 2;
/** The product policy's default completion-token cap (SPEC §4). */
const DEFAULT_CAP = 4096;

const suite = useProviderStack(MAX_RETRIES);
const { counting, expectOneAudit } = suite;

let flaky: FlakyUpstream;
let gw: Gateway;
let token: string;

beforeAll(() => {
  ({ flaky, gw } = suite.stack());
  token = mintToken({ product: 'prov', sub: 'responses-user' });
});

/** Reads a Responses stream to its end: the events' types, the text of its deltas, and the last Response. */
async function readStream(events: AsyncIterable<ResponseStreamEvent>): Promise<{ types: string[]; text: string; final?: Response }> {
  const types: string[] = [];
  let text = '';
  let final: Response | undefined;
  for await (const event of events) {
    types.push(event.type);
    if (event.type === 'response.output_text.delta') text += event.delta;
    if (event.type === 'response.completed' || event.type === 'response.incomplete') final = event.response;
  }
  return { types, text, final };
}

describe('POST /v1/responses with the OpenAI SDK', () => {
  it('answers an OpenAI model with its own Response, capped by the policy, billed from its usage and audited', async () => {
    const { id, headers } = rid('resp-plain');
    const {
      result: response,
      moved,
      after,
    } = await counting(() => gw.openai(token).responses.create({ model: OPENAI_MODEL, input: 'Say hi' }, { headers }));
    expect(response).toMatchObject({ object: 'response', status: 'completed', model: OPENAI_MODEL });
    expect(response.output_text).toBe(mockReply('openai', 'Say hi'));
    expect(moved).toEqual({ 'openai.responses': 1 });
    const upstream = after.last['openai.responses'];
    // The product's key went upstream, with the policy's cap where the client sent none.
    expect(upstream?.headers.authorization).toBe('Bearer sk-mock-prov');
    expect(upstream?.body).toMatchObject({ model: OPENAI_MODEL, input: 'Say hi', max_output_tokens: DEFAULT_CAP });
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      product: 'prov',
      user: 'responses-user',
      provider: 'openai',
      model: OPENAI_MODEL,
      stream: false,
      tokens_in: response.usage?.input_tokens,
      tokens_out: response.usage?.output_tokens,
    });
  });

  it('passes a request without input on (a stored prompt template carries it), reserved and billed like any', async () => {
    const { id, headers } = rid('resp-prompt');
    const prompt = { id: 'pmpt_abc123', version: '2', variables: { city: 'Paris' } };
    const {
      result: response,
      moved,
      after,
    } = await counting(() => gw.openai(token).responses.create({ model: OPENAI_MODEL, prompt }, { headers }));
    expect(response.status).toBe('completed');
    expect(moved).toEqual({ 'openai.responses': 1 });
    expect(after.last['openai.responses']?.body).toEqual({ model: OPENAI_MODEL, prompt, max_output_tokens: DEFAULT_CAP });
    await expectOneAudit(id, { status: 200, failure: null, tokens_in: response.usage?.input_tokens });
  });

  it('passes input items, instructions and the client’s other fields through unchanged', async () => {
    const { id, headers } = rid('resp-items');
    const input = [
      { role: 'user' as const, content: [{ type: 'input_text' as const, text: 'First question' }] },
      { role: 'assistant' as const, content: 'First answer' },
      { role: 'user' as const, content: 'Second question' },
    ];
    const { result: response, after } = await counting(() =>
      gw
        .openai(token)
        .responses.create(
          { model: OPENAI_MODEL, input, instructions: 'Be brief.', max_output_tokens: 64, store: false, metadata: { team: 'qa' } },
          { headers },
        ),
    );
    expect(response.output_text).toBe(mockReply('openai', 'Second question'));
    expect(after.last['openai.responses']?.body).toEqual({
      model: OPENAI_MODEL,
      input,
      instructions: 'Be brief.',
      max_output_tokens: 64,
      store: false,
      metadata: { team: 'qa' },
    });
    await expectOneAudit(id, { status: 200, tokens_in: response.usage?.input_tokens });
  });

  it('streams OpenAI’s events as they come, named, ending with response.completed and no [DONE]; billed from its usage', async () => {
    const { id, headers } = rid('resp-stream');
    const { result, moved } = await counting(async () =>
      readStream(
        await gw.openai(token).responses.create({ model: OPENAI_MODEL, input: 'Stream [mock chunks=4]', stream: true }, { headers }),
      ),
    );
    expect(result.text).toBe(mockReply('openai', 'Stream'));
    expect(result.types[0]).toBe('response.created');
    expect(result.types.filter((t) => t === 'response.output_text.delta').length).toBeGreaterThanOrEqual(2);
    expect(result.types.at(-1)).toBe('response.completed');
    expect(moved).toEqual({ 'openai.responses': 1 });
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      stream: true,
      provider: 'openai',
      tokens_in: result.final?.usage?.input_tokens,
      tokens_out: result.final?.usage?.output_tokens,
    });
  });
});

describe('POST /v1/responses answers beyond text', () => {
  it('passes a response cut at max_output_tokens on as incomplete, billed what it used', async () => {
    const { id, headers } = rid('resp-incomplete');
    const response = await gw
      .openai(token)
      .responses.create({ model: OPENAI_MODEL, input: 'long [mock finish=length]', max_output_tokens: 16 }, { headers });
    expect(response).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } });
    await expectOneAudit(id, { status: 200, failure: null, tokens_out: response.usage?.output_tokens });
  });

  it('passes function tools and the model’s function calls through, streamed, the arguments primed as content', async () => {
    const { id, headers } = rid('resp-tools');
    const tools = [{ type: 'function' as const, name: 'get_weather', parameters: { type: 'object', properties: {} }, strict: false }];
    const { result, after } = await counting(async () => {
      const stream = await gw
        .openai(token)
        .responses.create({ model: OPENAI_MODEL, input: 'Weather in Paris?', tools, tool_choice: 'required', stream: true }, { headers });
      const items: unknown[] = [];
      let final: Response | undefined;
      for await (const event of stream) {
        if (event.type === 'response.output_item.done') items.push(event.item);
        if (event.type === 'response.completed') final = event.response;
      }
      return { items, final };
    });
    expect(after.last['openai.responses']?.body).toMatchObject({ tools, tool_choice: 'required' });
    expect(result.items).toEqual([expect.objectContaining({ type: 'function_call', name: 'get_weather' })]);
    await expectOneAudit(id, { status: 200, stream: true, tokens_out: result.final?.usage?.output_tokens });
  });
});

describe('POST /v1/responses refusals, before any upstream call', () => {
  const guarded = (): string => mintToken({ product: 'guarded', sub: 'guarded-user' });

  it.each([
    ['a model Anthropic serves', () => token, { model: ANTHROPIC_MODEL, input: 'x' }, 400, 'unsupported_parameter', 'model'],
    ['a model the product does not have', () => token, { model: 'gpt-nope', input: 'x' }, 404, 'model_not_found', 'model'],
    ['Chat’s max_tokens', () => token, { model: OPENAI_MODEL, input: 'x', max_tokens: 10 }, 400, 'unsupported_parameter', 'max_tokens'],
    [
      'a background response',
      () => token,
      { model: OPENAI_MODEL, input: 'x', background: true },
      400,
      'unsupported_parameter',
      'background',
    ],
    [
      'max_output_tokens over the cap',
      () => token,
      { model: OPENAI_MODEL, input: 'x', max_output_tokens: 1_000_000 },
      400,
      'policy_violation',
      'max_output_tokens',
    ],
    ['an input that is neither text nor items', () => token, { model: OPENAI_MODEL, input: 42 }, 400, 'invalid_request', 'input'],
    [
      'a previous response nobody made through keygate',
      () => token,
      { model: OPENAI_MODEL, input: 'x', previous_response_id: 'resp_nobody' },
      404,
      'response_not_found',
      'previous_response_id',
    ],
    [
      'a conversation (kept at OpenAI, owner unknown)',
      () => token,
      { model: OPENAI_MODEL, input: 'x', conversation: 'conv_abc' },
      400,
      'unsupported_parameter',
      'conversation',
    ],
    [
      'an item reference to an item no response of this user made through keygate',
      () => token,
      {
        model: OPENAI_MODEL,
        input: [
          { role: 'user', content: 'x' },
          { type: 'item_reference', id: 'msg_abc' },
        ],
      },
      404,
      'response_not_found',
      'input[1].id',
    ],
    [
      'a previous_response_id that is no id',
      () => token,
      { model: OPENAI_MODEL, input: 'x', previous_response_id: 'resp/../x' },
      400,
      'invalid_request',
      'previous_response_id',
    ],
    ['an empty input list', () => token, { model: OPENAI_MODEL, input: [] }, 400, 'invalid_request', 'input'],
    [
      'a content part that is not an object',
      () => token,
      { model: OPENAI_MODEL, input: [{ role: 'user', content: [1] }] },
      400,
      'invalid_request',
      'input[0].content[0]',
    ],
    [
      'a function name no provider takes',
      () => token,
      { model: OPENAI_MODEL, input: 'x', tools: [{ type: 'function', name: 'bad name!', parameters: {} }] },
      400,
      'invalid_request',
      'tools[0].name',
    ],
    [
      'a function tool in chat’s nested shape',
      () => token,
      { model: OPENAI_MODEL, input: 'x', tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] },
      400,
      'invalid_request',
      'tools[0]',
    ],
    [
      'a function declared twice',
      () => token,
      {
        model: OPENAI_MODEL,
        input: 'x',
        tools: [
          { type: 'function', name: 'f', parameters: {} },
          { type: 'function', name: 'f', parameters: {} },
        ],
      },
      400,
      'invalid_request',
      'tools[1].name',
    ],
    [
      'a tool_choice naming an undeclared function',
      () => token,
      { model: OPENAI_MODEL, input: 'x', tools: [{ type: 'function', name: 'f' }], tool_choice: { type: 'function', name: 'g' } },
      400,
      'invalid_request',
      'tool_choice',
    ],
    [
      'stream_options without stream: true',
      () => token,
      { model: OPENAI_MODEL, input: 'x', stream_options: { include_obfuscation: false } },
      400,
      'invalid_request',
      'stream_options',
    ],
    [
      'a tool type the product refuses',
      guarded,
      { model: OPENAI_MODEL, input: 'x', tools: [{ type: 'web_search_preview' }] },
      400,
      'policy_violation',
      'tools[0].type',
    ],
    [
      'OpenAI’s web_search tool (matched by web_search*)',
      guarded,
      { model: OPENAI_MODEL, input: 'x', tools: [{ type: 'function', name: 'f', parameters: {} }, { type: 'web_search' }] },
      400,
      'policy_violation',
      'tools[1].type',
    ],
    [
      // Codex (0.171, catalog models) declares its tools in an input item rather than in `tools`.
      'a refused tool declared in an additional_tools input item, as Codex sends its tools',
      guarded,
      {
        model: OPENAI_MODEL,
        stream: true,
        store: false,
        input: [
          {
            type: 'additional_tools',
            role: 'developer',
            tools: [
              { type: 'namespace', name: 'functions', description: '', tools: [{ type: 'function', name: 'wait', parameters: {} }] },
              { type: 'web_search', external_web_access: false },
            ],
          },
          { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'x' }] },
        ],
      },
      400,
      'policy_violation',
      'input[0].tools[1].type',
    ],
    [
      'a refused tool inside a namespace',
      guarded,
      { model: OPENAI_MODEL, input: 'x', tools: [{ type: 'namespace', name: 'ns', description: '', tools: [{ type: 'web_search' }] }] },
      400,
      'policy_violation',
      'tools[0].tools[0].type',
    ],
  ])('refuses %s (%#)', async (_what, who, body, status, code, param) => {
    const { id, headers } = rid('resp-refused');
    const { result: error, moved } = await counting(() =>
      apiError(
        gw
          .openai(who())
          .responses.create(body as unknown as Parameters<ReturnType<Gateway['openai']>['responses']['create']>[0], { headers }),
      ),
    );
    expect(error.status).toBe(status);
    expect(error.code).toBe(code);
    if (param !== undefined) expect(error.param).toBe(param);
    expect(moved).toEqual({});
    await expectOneAudit(id, { status, failure: status === 404 ? 'not_found' : code === 'policy_violation' ? 'policy' : 'bad_request' });
  });
});

describe('max_output_tokens below the Responses API’s minimum (16), refused before any upstream call', () => {
  it.each([1, 15])(
    'refuses a client’s max_output_tokens of %i 400 invalid_request, naming the parameter and the minimum',
    async (value) => {
      const { id, headers } = rid('resp-below-min');
      const { result: error, moved } = await counting(() =>
        apiError(gw.openai(token).responses.create({ model: OPENAI_MODEL, input: 'x', max_output_tokens: value }, { headers })),
      );
      expect(error.status).toBe(400);
      expect(error.code).toBe('invalid_request');
      expect(error.param).toBe('max_output_tokens');
      expect(error.message).toMatch(/max_output_tokens must be at least 16/);
      expect(moved).toEqual({});
      await expectOneAudit(id, { status: 400, failure: 'bad_request', product: 'prov', user: 'responses-user' });
    },
  );

  it('refuses a request without one for a product whose cap is below it (400 policy_violation), where chat is served that cap', async () => {
    const small = mintToken({ product: 'tinycap', sub: 'tiny-user' });
    const refused = rid('resp-tiny-cap');
    const { result: error, moved } = await counting(() =>
      apiError(gw.openai(small).responses.create({ model: OPENAI_MODEL, input: 'x' }, { headers: refused.headers })),
    );
    expect(error.status).toBe(400);
    expect(error.code).toBe('policy_violation');
    expect(error.param).toBe('max_output_tokens');
    expect(error.message).toMatch(new RegExp(`cap of ${TINY_CAP} tokens is below the Responses API's minimum max_output_tokens of 16`));
    expect(moved).toEqual({});
    await expectOneAudit(refused.id, { status: 400, failure: 'policy', product: 'tinycap', user: 'tiny-user' });
    // The same product's chat completions take the cap.
    const chat = rid('resp-tiny-cap-chat');
    const { moved: chatMoved, after } = await counting(() =>
      gw
        .openai(small)
        .chat.completions.create({ model: OPENAI_MODEL, messages: [{ role: 'user', content: 'x' }] }, { headers: chat.headers }),
    );
    expect(chatMoved).toEqual({ 'openai.chat': 1 });
    expect(after.last['openai.chat']?.body).toMatchObject({ max_tokens: TINY_CAP });
    await expectOneAudit(chat.id, { status: 200, failure: null, product: 'tinycap' });
  });
});

describe('stored responses: retrieve, delete, input items, continue (the creator only)', () => {
  /** A response made through keygate by this suite's user, and its id. */
  async function created(input = 'Remember me', store?: boolean): Promise<Response> {
    return gw.openai(token).responses.create({ model: OPENAI_MODEL, input, ...(store === undefined ? {} : { store }) });
  }

  it('retrieves a response its user made, passed through with the product’s key, audited with its model and no tokens', async () => {
    const made = await created();
    const { id, headers } = rid('stored-get');
    const { result: got, moved, after } = await counting(() => gw.openai(token).responses.retrieve(made.id, {}, { headers }));
    expect(got).toMatchObject({ id: made.id, status: 'completed', model: OPENAI_MODEL, usage: made.usage });
    expect(got.output_text).toBe(made.output_text);
    expect(moved).toEqual({ 'openai.responses.retrieve': 1 });
    expect(after.last['openai.responses.retrieve']?.headers.authorization).toBe('Bearer sk-mock-prov');
    expect(after.last['openai.responses.retrieve']?.url).toBe(`/v1/responses/${made.id}`);
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      user: 'responses-user',
      provider: 'openai',
      model: OPENAI_MODEL,
      tokens_in: null,
      tokens_out: null,
    });
  });

  it('retrieves a streamed response once it ended, and passes include[] on', async () => {
    const stream = await gw.openai(token).responses.create({ model: OPENAI_MODEL, input: 'Streamed [mock chunks=3]', stream: true });
    const { final } = await readStream(stream);
    expect(final).toBeDefined();
    const { result: got, after } = await counting(() =>
      gw.openai(token).responses.retrieve(final!.id, { include: ['reasoning.encrypted_content'] }),
    );
    expect(got).toMatchObject({ id: final!.id, status: 'completed', usage: final!.usage });
    expect(after.last['openai.responses.retrieve']?.url).toBe(`/v1/responses/${final!.id}?include%5B%5D=reasoning.encrypted_content`);
  });

  it('lists its input items, paged as the client asks', async () => {
    const made = await gw.openai(token).responses.create({
      model: OPENAI_MODEL,
      input: [
        { role: 'user', content: 'one' },
        { role: 'assistant', content: 'two' },
        { role: 'user', content: 'three' },
      ],
    });
    const { id, headers } = rid('stored-items');
    const {
      result: page,
      moved,
      after,
    } = await counting(() => gw.openai(token).responses.inputItems.list(made.id, { limit: 2, order: 'asc' }, { headers }));
    expect(page.data).toHaveLength(2);
    expect(page.has_more).toBe(true);
    expect(page.data.map((item) => item.type)).toEqual(['message', 'message']);
    expect(moved).toEqual({ 'openai.responses.inputItems': 1 });
    expect(after.last['openai.responses.inputItems']?.url).toBe(`/v1/responses/${made.id}/input_items?limit=2&order=asc`);
    await expectOneAudit(id, { status: 200, failure: null, model: OPENAI_MODEL, tokens_in: null });
    // The SDK's own paging follows `after` through keygate to the last item.
    const all = [];
    for await (const item of gw.openai(token).responses.inputItems.list(made.id, { limit: 2, order: 'asc' })) all.push(item);
    expect(all).toHaveLength(3);
  });

  it('deletes it, and forgets it: the next retrieve is refused without asking OpenAI', async () => {
    const made = await created();
    const { id, headers } = rid('stored-delete');
    const { moved } = await counting(() => gw.openai(token).responses.delete(made.id, { headers }));
    expect(moved).toEqual({ 'openai.responses.delete': 1 });
    await expectOneAudit(id, { status: 200, failure: null, model: OPENAI_MODEL });
    const gone = rid('stored-deleted-get');
    const { result: error, moved: none } = await counting(() =>
      apiError(gw.openai(token).responses.retrieve(made.id, {}, { headers: gone.headers })),
    );
    expect(error.status).toBe(404);
    expect(error.code).toBe('response_not_found');
    expect(none).toEqual({});
    await expectOneAudit(gone.id, { status: 404, failure: 'not_found', model: null });
  });

  it('forgets a response OpenAI no longer has (deleted there), answering 404 like any other', async () => {
    const made = await created();
    const base = suite.stack().mock.url;
    const direct = await fetch(`${base}/v1/responses/${made.id}`, { method: 'DELETE', headers: { authorization: 'Bearer sk-mock-prov' } });
    expect(direct.status).toBe(200);
    const first = await counting(() => apiError(gw.openai(token).responses.retrieve(made.id)));
    expect(first.result.status).toBe(404);
    expect(first.result.code).toBe('response_not_found');
    expect(first.moved).toEqual({ 'openai.responses.retrieve': 1 });
    const second = await counting(() => apiError(gw.openai(token).responses.retrieve(made.id)));
    expect(second.result.code).toBe('response_not_found');
    expect(second.moved).toEqual({});
  });

  it.each([
    ['another user of the product', () => mintToken({ product: 'prov', sub: 'someone-else' })],
    // `guarded` reaches the same host with the same key as `prov`: only the record tells them apart.
    ['another product on the same OpenAI host and key', () => mintToken({ product: 'guarded', sub: 'responses-user' })],
  ])('refuses %s on every route, 404 as for an unknown id, before any upstream call', async (_who, tokenOf) => {
    const made = await created();
    const client = gw.openai(tokenOf());
    for (const [label, call] of [
      ['retrieve', (h: Record<string, string>) => client.responses.retrieve(made.id, {}, { headers: h })],
      ['delete', (h: Record<string, string>) => client.responses.delete(made.id, { headers: h })],
      ['items', (h: Record<string, string>) => client.responses.inputItems.list(made.id, {}, { headers: h })],
      [
        'continue',
        (h: Record<string, string>) =>
          client.responses.create({ model: OPENAI_MODEL, input: 'and?', previous_response_id: made.id }, { headers: h }),
      ],
    ] as const) {
      const { id, headers } = rid(`stored-foreign-${label}`);
      const { result: error, moved } = await counting(() => apiError(call(headers)));
      expect([label, error.status, error.code]).toEqual([label, 404, 'response_not_found']);
      expect(error.message).toContain(made.id);
      expect(moved).toEqual({});
      await expectOneAudit(id, { status: 404, failure: 'not_found' });
    }
    // Still there for its user.
    expect((await gw.openai(token).responses.retrieve(made.id)).id).toBe(made.id);
  });

  it('takes an item_reference to an output item of its own stored response (as the Vercel AI SDK sends history), plain and streamed', async () => {
    const made = await created('Remember this');
    const itemId = made.output[0].id!;
    expect(itemId).toMatch(/^msg_/);
    for (const stream of [false, true]) {
      const { id, headers } = rid(`item-ref-${stream}`);
      const input = [
        { role: 'user' as const, content: 'Remember this' },
        { type: 'item_reference' as const, id: itemId },
        { role: 'user' as const, content: 'And now?' },
      ];
      const { result: text, after } = await counting(async () => {
        if (!stream) return (await gw.openai(token).responses.create({ model: OPENAI_MODEL, input }, { headers })).output_text;
        let streamed = '';
        for await (const event of await gw.openai(token).responses.create({ model: OPENAI_MODEL, input, stream: true }, { headers }))
          if (event.type === 'response.output_text.delta') streamed += event.delta;
        return streamed;
      });
      expect(text).toBe(mockReply('openai', 'And now?'));
      expect(after.last['openai.responses']?.body).toMatchObject({ input });
      await expectOneAudit(id, { status: 200, failure: null, stream });
    }
    // The items of a response made by a stream are recorded too (at its terminal event).
    const { id: streamedId, headers: streamedHeaders } = rid('item-ref-source-stream');
    let source: string | undefined;
    for await (const event of await gw
      .openai(token)
      .responses.create({ model: OPENAI_MODEL, input: 'streamed source', stream: true }, { headers: streamedHeaders }))
      if (event.type === 'response.completed') source = event.response.output[0].id;
    await expectOneAudit(streamedId, { status: 200 });
    const next = await gw.openai(token).responses.create({
      model: OPENAI_MODEL,
      input: [
        { type: 'item_reference', id: source! },
        { role: 'user', content: 'go on' },
      ],
    });
    expect(next.output_text).toBe(mockReply('openai', 'go on'));
  });

  it('refuses an item_reference to another user’s item, or to an item of a deleted response, 404 before any upstream call', async () => {
    const made = await created('Mine');
    const itemId = made.output[0].id!;
    const reference = {
      model: OPENAI_MODEL,
      input: [
        { type: 'item_reference' as const, id: itemId },
        { role: 'user' as const, content: 'x' },
      ],
    };
    const other = rid('item-ref-foreign');
    const { result: foreign, moved } = await counting(() =>
      apiError(gw.openai(mintToken({ product: 'prov', sub: 'someone-else' })).responses.create(reference, { headers: other.headers })),
    );
    expect([foreign.status, foreign.code, foreign.param]).toEqual([404, 'response_not_found', 'input[0].id']);
    expect(foreign.message).toContain(itemId);
    expect(moved).toEqual({});
    await expectOneAudit(other.id, { status: 404, failure: 'not_found' });
    // OpenAI reads an item with an id and no type (or a null one) as an item_reference: checked alike.
    for (const item of [{ id: itemId }, { type: null, id: itemId }]) {
      const untyped = rid('item-ref-untyped');
      const refused = await counting(() =>
        apiError(
          gw
            .openai(mintToken({ product: 'prov', sub: 'someone-else' }))
            .responses.create({ model: OPENAI_MODEL, input: [item] } as never, { headers: untyped.headers }),
        ),
      );
      expect([refused.result.status, refused.result.code, refused.result.param]).toEqual([404, 'response_not_found', 'input[0].id']);
      expect(refused.moved).toEqual({});
      await expectOneAudit(untyped.id, { status: 404, failure: 'not_found' });
    }
    // OpenAI also looks up a reasoning item without its encrypted content by its id, and an MCP
    // approval's request id: each checked alike.
    for (const [item, param] of [
      [{ type: 'reasoning', id: itemId, summary: [] }, 'input[0].id'],
      [{ type: 'mcp_approval_response', approval_request_id: itemId, approve: true }, 'input[0].approval_request_id'],
    ] as const) {
      const typed = rid('item-ref-typed');
      const refused = await counting(() =>
        apiError(
          gw
            .openai(mintToken({ product: 'prov', sub: 'someone-else' }))
            .responses.create({ model: OPENAI_MODEL, input: [item] } as never, { headers: typed.headers }),
        ),
      );
      expect({ type: item.type, answer: [refused.result.status, refused.result.code, refused.result.param] }).toEqual({
        type: item.type,
        answer: [404, 'response_not_found', param],
      });
      expect(refused.moved).toEqual({});
      await expectOneAudit(typed.id, { status: 404, failure: 'not_found' });
    }
    // A typed item that carries its own content goes on without another user's id: nothing for
    // OpenAI to look up by it.
    const carried = await counting(() =>
      gw.openai(mintToken({ product: 'prov', sub: 'someone-else' })).responses.create({
        model: OPENAI_MODEL,
        input: [
          { type: 'message', id: itemId, role: 'assistant', content: [{ type: 'output_text', text: 'x', annotations: [] }] },
          { role: 'user', content: 'go on' },
        ],
      } as never),
    );
    expect(carried.moved).toEqual({ 'openai.responses': 1 });
    expect((carried.after.last['openai.responses']?.body as { input: Array<Record<string, unknown>> }).input[0]).toEqual({
      type: 'message',
      role: 'assistant',
      content: [{ type: 'output_text', text: 'x', annotations: [] }],
    });
    // Its owner sends it back as history, typed: taken, id and all.
    const replay = await counting(() =>
      gw.openai(token).responses.create({
        model: OPENAI_MODEL,
        input: [
          { type: 'message', id: itemId, role: 'assistant', content: [{ type: 'output_text', text: 'Mine', annotations: [] }] },
          { role: 'user', content: 'And then?' },
        ],
      } as never),
    );
    expect(replay.moved).toEqual({ 'openai.responses': 1 });
    expect((replay.after.last['openai.responses']?.body as { input: Array<Record<string, unknown>> }).input[0]).toMatchObject({
      id: itemId,
    });
    // A response item is no response: the stored-response routes do not take its id.
    const asResponse = await counting(() => apiError(gw.openai(token).responses.retrieve(itemId)));
    expect([asResponse.result.status, asResponse.result.code]).toEqual([404, 'response_not_found']);
    expect(asResponse.moved).toEqual({});
    // Deleted through keygate: OpenAI answers 404 for its items, keygate says so and forgets the record.
    await gw.openai(token).responses.delete(made.id);
    const gone = rid('item-ref-gone');
    const first = await counting(() => apiError(gw.openai(token).responses.create(reference, { headers: gone.headers })));
    expect([first.result.status, first.result.code, first.result.param]).toEqual([404, 'response_not_found', 'input[0].id']);
    expect(first.moved).toEqual({ 'openai.responses': 1 });
    await expectOneAudit(gone.id, { status: 404, failure: 'not_found' });
    const second = await counting(() => apiError(gw.openai(token).responses.create(reference)));
    expect(second.result.code).toBe('response_not_found');
    expect(second.moved).toEqual({});
  });

  it.each([false, true])(
    'serves a stateless chain (store: false) that sends its output items back with their ids, as the Agents SDK does (streamed: %s)',
    async (stream) => {
      const tools = [{ type: 'function' as const, name: 'get_weather', parameters: { type: 'object', properties: {} }, strict: false }];
      const client = gw.openai(mintToken({ product: 'prov', sub: 'stateless-user' }));
      const ask = { model: OPENAI_MODEL, tools, store: false, include: ['reasoning.encrypted_content' as const] };
      const first = await client.responses.create({ ...ask, input: 'Weather in Paris? [mock tool=get_weather]', tool_choice: 'required' });
      const call = first.output.find((item) => item.type === 'function_call');
      expect(call).toMatchObject({ type: 'function_call', id: expect.stringMatching(/^fc_/) });
      // The output items as the SDK gives them back (the Agents SDK sends them so).
      const input = [
        { role: 'user' as const, content: 'Weather in Paris? [mock tool=get_weather]' },
        ...first.output,
        { type: 'function_call_output' as const, call_id: call!.call_id, output: '21C' },
      ] as OpenAI.Responses.ResponseInput;
      const { id, headers } = rid('stateless-chain');
      const next = await counting(async () => {
        if (!stream) return (await client.responses.create({ ...ask, input }, { headers })).status;
        let status: string | undefined;
        for await (const event of await client.responses.create({ ...ask, input, stream: true }, { headers }))
          if (event.type === 'response.completed') status = event.response.status;
        return status;
      });
      expect(next.result).toBe('completed');
      expect(next.moved).toEqual({ 'openai.responses': 1 });
      // The call went on without its id (recorded nowhere: OpenAI stored nothing), its content whole.
      const sent = (next.after.last['openai.responses']?.body as { input: Array<Record<string, unknown>> }).input[1];
      expect(sent).toEqual({
        type: 'function_call',
        call_id: call!.call_id,
        name: 'get_weather',
        arguments: call!.arguments,
        status: call!.status,
      });
      await expectOneAudit(id, { status: 200, failure: null, user: 'stateless-user' });
    },
  );

  it('serves no response made with store: false', async () => {
    const made = await created('Forget me', false);
    const { result: error, moved } = await counting(() => apiError(gw.openai(token).responses.retrieve(made.id)));
    expect(error.code).toBe('response_not_found');
    expect(moved).toEqual({});
  });

  it('continues from its own response: the id goes on, the context is billed as OpenAI reports it', async () => {
    const made = await created('First turn');
    const { id, headers } = rid('stored-continue');
    const { result: next, after } = await counting(() =>
      gw.openai(token).responses.create({ model: OPENAI_MODEL, input: 'Second turn', previous_response_id: made.id }, { headers }),
    );
    expect(next.previous_response_id).toBe(made.id);
    expect(after.last['openai.responses']?.body).toMatchObject({ previous_response_id: made.id, input: 'Second turn' });
    await expectOneAudit(id, { status: 200, failure: null, tokens_in: next.usage?.input_tokens });
    // The continuation is stored too, and chains.
    expect((await gw.openai(token).responses.retrieve(next.id)).previous_response_id).toBe(made.id);
  });

  it('takes previous_response_id: null as no continuation', async () => {
    const { id, headers } = rid('stored-null-previous');
    const { result: response, after } = await counting(() =>
      gw.openai(token).responses.create({ model: OPENAI_MODEL, input: 'fresh', previous_response_id: null }, { headers }),
    );
    expect(response.status).toBe('completed');
    expect(after.last['openai.responses']?.body).toMatchObject({ previous_response_id: null });
    await expectOneAudit(id, { status: 200, failure: null });
  });

  it('answers a continuation from a response OpenAI no longer has 404, and forgets it', async () => {
    const made = await created();
    const base = suite.stack().mock.url;
    await fetch(`${base}/v1/responses/${made.id}`, { method: 'DELETE', headers: { authorization: 'Bearer sk-mock-prov' } });
    const { id, headers } = rid('stored-previous-gone');
    const continueFrom = (h?: Record<string, string>) =>
      apiError(gw.openai(token).responses.create({ model: OPENAI_MODEL, input: 'and?', previous_response_id: made.id }, { headers: h }));
    const first = await counting(() => continueFrom(headers));
    expect([first.result.status, first.result.code, first.result.param]).toEqual([404, 'response_not_found', 'previous_response_id']);
    expect(first.moved).toEqual({ 'openai.responses': 1 });
    await expectOneAudit(id, { status: 404, failure: 'not_found', attempts: 1 });
    const again = await counting(() => continueFrom());
    expect(again.result.code).toBe('response_not_found');
    expect(again.moved).toEqual({});
  });

  it('gives its owner a response whose stream was cut short right after it was announced', async () => {
    const controller = new AbortController();
    const stream = await gw
      .openai(token)
      .responses.create(
        { model: OPENAI_MODEL, input: 'cut [mock chunk_delay_ms=200 chunks=20]', stream: true },
        { signal: controller.signal },
      );
    let announced: string | undefined;
    await (async () => {
      for await (const event of stream) {
        if (event.type === 'response.created') {
          announced = event.response.id;
          controller.abort();
        }
      }
    })().catch(() => undefined);
    expect(announced).toBeDefined();
    expect((await gw.openai(token).responses.retrieve(announced!)).id).toBe(announced);
    expect((await apiError(gw.openai(mintToken({ product: 'prov', sub: 'someone-else' })).responses.retrieve(announced!))).code).toBe(
      'response_not_found',
    );
    await gw.openai(token).responses.delete(announced!);
  });

  it('bills a continuation whose client leaves mid-stream the previous response’s tokens as context, beyond its own body', async () => {
    const made = await created('A long first turn '.repeat(40));
    const context = (made.usage?.input_tokens ?? 0) + (made.usage?.output_tokens ?? 0);
    expect(context).toBeGreaterThan(100);
    const { id, headers } = rid('stored-continue-abort');
    const controller = new AbortController();
    const stream = await gw
      .openai(token)
      .responses.create(
        { model: OPENAI_MODEL, input: 'go on [mock chunk_delay_ms=200 chunks=20]', previous_response_id: made.id, stream: true },
        { headers, signal: controller.signal },
      );
    let deltas = 0;
    await (async () => {
      for await (const event of stream) if (event.type === 'response.output_text.delta' && ++deltas === 2) controller.abort();
    })().catch(() => undefined);
    const audit = await expectOneAudit(id, { status: 499, failure: 'client_abort', stream: true });
    expect(audit.tokens_in).toBeGreaterThan(context);
  });

  it.each([
    ['an unknown query parameter', (id: string) => `/v1/responses/${id}?limit=5`, 'GET', 400, 'invalid_request', 'limit'],
    [
      'a stream back (background responses only)',
      (id: string) => `/v1/responses/${id}?stream=true`,
      'GET',
      400,
      'unsupported_parameter',
      'stream',
    ],
    ['a limit over 100', (id: string) => `/v1/responses/${id}/input_items?limit=101`, 'GET', 400, 'invalid_request', 'limit'],
    ['an order that is not one', (id: string) => `/v1/responses/${id}/input_items?order=up`, 'GET', 400, 'invalid_request', 'order'],
    ['an id that is not one', () => '/v1/responses/resp_x%2F..%2Fmodels', 'GET', 404, 'response_not_found', null],
    ['a delete with a query', (id: string) => `/v1/responses/${id}?include=x`, 'DELETE', 400, 'invalid_request', 'include'],
  ])('refuses %s before any upstream call', async (_label, path, method, status, code, param) => {
    const made = await created();
    const { id, headers } = rid('stored-bad');
    const { result: res, moved } = await counting(() =>
      fetch(`${gw.baseURL.replace(/\/v1$/, '')}${path(made.id)}`, { method, headers: { ...headers, authorization: `Bearer ${token}` } }),
    );
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: { code: string; param: string | null } }).error).toMatchObject({ code, param });
    expect(moved).toEqual({});
    await expectOneAudit(id, { status, failure: status === 404 ? 'not_found' : 'bad_request' });
  });
});

describe('code interpreter containers (reused by id), the user whose answer ran in one only', () => {
  type Tools = OpenAI.Responses.ResponseCreateParams['tools'];
  const containerOf = (response: Response): string =>
    (response.output.find((item) => item.type === 'code_interpreter_call') as { container_id: string }).container_id;

  it('refuses another user’s container, named by a code interpreter or a shell tool (404, nothing sent upstream), and takes its owner’s', async () => {
    const alice = gw.openai(mintToken({ product: 'prov', sub: 'ci-alice' }));
    const bob = gw.openai(mintToken({ product: 'prov', sub: 'ci-bob' }));
    // Not stored: the container is the caller's all the same.
    const made = await alice.responses.create({
      model: OPENAI_MODEL,
      input: 'Run some code',
      store: false,
      tools: [{ type: 'code_interpreter', container: { type: 'auto' } }],
    });
    const container = containerOf(made);
    expect(container).toMatch(/^cntr_mock/);

    const interpreter = { type: 'code_interpreter', container };
    for (const [tools, input, param] of [
      [[interpreter], 'Read their files', 'tools[0].container'],
      [
        [{ type: 'shell', environment: { type: 'container_reference', container_id: container } }],
        'Read them',
        'tools[0].environment.container_id',
      ],
      // A tool a client's tool search loaded (an input item's own tools), and one in a namespace.
      [
        undefined,
        [
          { type: 'message', role: 'user', content: 'Read their files' },
          { type: 'tool_search_output', execution: 'client', call_id: 'call_1', tools: [interpreter] },
        ],
        'input[1].tools[0].container',
      ],
      [[{ type: 'namespace', name: 'ops', description: 'ops', tools: [interpreter] }], 'Read them', 'tools[0].tools[0].container'],
    ] as Array<[Tools, OpenAI.Responses.ResponseCreateParams['input'], string]>) {
      const stolen = rid('container-foreign');
      const refused = await counting(() =>
        apiError(bob.responses.create({ model: OPENAI_MODEL, input, tools }, { headers: stolen.headers })),
      );
      expect([refused.result.status, refused.result.code, refused.result.param]).toEqual([404, 'container_not_found', param]);
      expect(refused.moved).toEqual({});
      await expectOneAudit(stolen.id, { status: 404, failure: 'not_found', user: 'ci-bob' });
    }

    const reused = await counting(() =>
      alice.responses.create({ model: OPENAI_MODEL, input: 'Again', tools: [{ type: 'code_interpreter', container }] }),
    );
    expect(reused.moved).toEqual({ 'openai.responses': 1 });
    expect(reused.after.last['openai.responses']?.body).toMatchObject({ tools: [{ type: 'code_interpreter', container }] });
    expect(containerOf(reused.result)).toBe(container);
  });

  it.each([
    [[{ type: 'shell', environment: { type: 'container_reference', container_id: '' } }], 'tools[0].environment.container_id'],
    [[{ type: 'code_interpreter', container: '' }], 'tools[0].container'],
  ])('refuses a container named by an empty id (400 naming it), nothing sent upstream', async (tools, param) => {
    const bad = rid('container-empty');
    const refused = await counting(() =>
      apiError(
        gw
          .openai(mintToken({ product: 'prov', sub: 'ci-dan' }))
          .responses.create({ model: OPENAI_MODEL, input: 'Run it', tools: tools as Tools }, { headers: bad.headers }),
      ),
    );
    expect([refused.result.status, refused.result.code, refused.result.param]).toEqual([400, 'invalid_request', param]);
    expect(refused.moved).toEqual({});
    await expectOneAudit(bad.id, { status: 400, failure: 'bad_request' });
  });

  it('records the container a stream names (in its items’ events) before the client has it', async () => {
    const carol = gw.openai(mintToken({ product: 'prov', sub: 'ci-carol' }));
    const { final } = await readStream(
      await carol.responses.create({
        model: OPENAI_MODEL,
        input: 'Stream some code',
        stream: true,
        tools: [{ type: 'code_interpreter', container: { type: 'auto' } }],
      }),
    );
    const container = containerOf(final!);
    const reused = await counting(() =>
      carol.responses.create({ model: OPENAI_MODEL, input: 'Again', tools: [{ type: 'code_interpreter', container }] }),
    );
    expect(reused.moved).toEqual({ 'openai.responses': 1 });
  });
});

describe('stored responses across replicas (Redis)', () => {
  let a: Gateway | undefined;
  let b: Gateway | undefined;

  beforeAll(async () => {
    const { mock, flaky } = suite.stack();
    const products = providerProducts({ mock: mock.url, flaky: flaky.url, closedPort: 9 });
    const env = {
      API_KEY_SERVER_POLICY_FILE: writeTempFile('policy.yaml', providerPolicyYaml()),
      API_KEY_SERVER_REDIS_URL: SHARED_REDIS_URL,
    };
    [a, b] = await Promise.all([startGateway({ products, env }), startGateway({ products, env })]);
  }, 45_000);

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  }, 30_000);

  it('finds a response on another replica as soon as the answer carrying its id has arrived', async () => {
    const user = mintToken({ product: 'prov', sub: 'replica-race' });
    for (let i = 0; i < 20; i++) {
      const made = await a!.openai(user).responses.create({ model: OPENAI_MODEL, input: `race ${i}` });
      expect((await b!.openai(user).responses.retrieve(made.id)).id).toBe(made.id);
    }
    for (let i = 0; i < 5; i++) {
      const stream = await a!.openai(user).responses.create({ model: OPENAI_MODEL, input: `race stream ${i}`, stream: true });
      const { final } = await readStream(stream);
      const next = await b!.openai(user).responses.create({ model: OPENAI_MODEL, input: 'next', previous_response_id: final!.id });
      expect(next.previous_response_id).toBe(final!.id);
    }
  });

  it('refuses, on the replica that made it, a response deleted through another, without asking OpenAI', async () => {
    const user = mintToken({ product: 'prov', sub: 'replica-delete' });
    const made = await a!.openai(user).responses.create({ model: OPENAI_MODEL, input: 'delete me elsewhere' });
    await b!.openai(user).responses.delete(made.id);
    const { id, headers } = rid('stored-replica-deleted');
    const { result: error, moved } = await counting(() => apiError(a!.openai(user).responses.retrieve(made.id, {}, { headers })));
    expect(error.code).toBe('response_not_found');
    expect(moved).toEqual({});
    await expectOneAuditOn(a!, id, { status: 404, failure: 'not_found' });
  });

  it('serves a response made on one replica from another, to its user alone, and a delete on one is seen by the other', async () => {
    const user = mintToken({ product: 'prov', sub: 'replica-user' });
    const made = await a!.openai(user).responses.create({ model: OPENAI_MODEL, input: 'on replica a' });
    const { id, headers } = rid('stored-replica');
    expect((await b!.openai(user).responses.retrieve(made.id, {}, { headers })).id).toBe(made.id);
    await expectOneAuditOn(b!, id, { status: 200, model: OPENAI_MODEL });
    const next = await b!.openai(user).responses.create({ model: OPENAI_MODEL, input: 'on b', previous_response_id: made.id });
    expect(next.previous_response_id).toBe(made.id);
    expect((await apiError(b!.openai(mintToken({ product: 'prov', sub: 'other' })).responses.retrieve(made.id))).code).toBe(
      'response_not_found',
    );
    await b!.openai(user).responses.delete(next.id);
    // Replica a made `made`, not `next`: it reads next's record from Redis, where b deleted it.
    expect((await apiError(a!.openai(user).responses.retrieve(next.id))).code).toBe('response_not_found');
  });
});

describe('POST /v1/responses upstream failures', () => {
  it("passes a field keygate does not know as sent; OpenAI's refusal comes back 400 naming it, not retried", async () => {
    const { id, headers } = rid('resp-unknown-field');
    const body = { model: OPENAI_MODEL, input: 'hi', seed: 7 };
    const {
      result: error,
      moved,
      after,
    } = await counting(() =>
      apiError(gw.openai(token).responses.create(body as Parameters<OpenAI['responses']['create']>[0], { headers })),
    );
    expect(error).toMatchObject({ status: 400, code: 'upstream_bad_request', param: 'seed' });
    expect(error.message).toContain("Unknown parameter: 'seed'.");
    expect(moved).toEqual({ 'openai.responses': 1 });
    expect(after.last['openai.responses']?.body).toMatchObject({ seed: 7 });
    await expectOneAudit(id, { status: 400, failure: 'upstream', provider: 'openai', attempts: 1 });
  });

  it('retries a failing OpenAI like chat, and does not fall back to a model of another provider', async () => {
    flaky.script({ status: 503 });
    const { id, headers } = rid('resp-503');
    const { result: error, moved } = await counting(() =>
      apiError(gw.openai(mintToken({ product: 'flaky' })).responses.create({ model: OPENAI_MODEL, input: 'busy?' }, { headers })),
    );
    expect(error.status).toBe(502);
    expect(flaky.count('/v1/responses')).toBe(1 + MAX_RETRIES);
    // flaky falls gpt-4o back to Claude for chat; a Responses body cannot go there.
    expect(moved).toEqual({});
    await expectOneAudit(id, { status: 502, failure: 'upstream', provider: 'openai', attempts: 1 + MAX_RETRIES });
  });

  it('retries an error event before any content, and ends a stream whose error comes after content with an error event', async () => {
    const first = rid('resp-first-error');
    const early = await counting(async () =>
      apiError(
        gw
          .openai(token)
          .responses.create(
            { model: OPENAI_MODEL, input: 'fail first [mock error_event_after=0]', stream: true },
            { headers: first.headers },
          ),
      ),
    );
    expect(early.result.status).toBe(502);
    expect(early.moved).toEqual({ 'openai.responses': 1 + MAX_RETRIES });
    await expectOneAudit(first.id, { status: 502, failure: 'upstream', stream: true, attempts: 1 + MAX_RETRIES });

    const late = rid('resp-late-error');
    const { result: error, moved } = await counting(async () => {
      const stream = await gw
        .openai(token)
        .responses.create(
          { model: OPENAI_MODEL, input: 'fail late [mock error_event_after=2 chunks=6]', stream: true },
          { headers: late.headers },
        );
      return readStream(stream).then(
        () => undefined,
        (e: unknown) => e,
      );
    });
    expect(error).toBeInstanceOf(APIError);
    expect(String((error as Error).message)).toMatch(/upstream/i);
    // Content had gone out: no retry.
    expect(moved).toEqual({ 'openai.responses': 1 });
    await expectOneAudit(late.id, { status: 502, failure: 'upstream', stream: true, attempts: 1 });
  });

  it('numbers its own error event after the events sent, as every event of the stream is numbered', async () => {
    const { id, headers } = rid('resp-error-sequence');
    const res = await gw.fetch('/v1/responses', {
      method: 'POST',
      headers: { ...headers, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: OPENAI_MODEL, input: 'fail late [mock error_event_after=2 chunks=6]', stream: true }),
    });
    expect(res.status).toBe(200);
    const events = (await res.text())
      .split('\n\n')
      .filter((frame) => frame.includes('data: '))
      .map((frame) => JSON.parse(frame.slice(frame.indexOf('data: ') + 6)) as { type: string; sequence_number?: number });
    expect(events.at(-1)?.type).toBe('error');
    expect(events.length).toBeGreaterThan(1);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_e, i) => i));
    await expectOneAudit(id, { status: 502, failure: 'upstream', stream: true });
  });

  it('retries a response.failed that names a server error before any content; after content passes it on and audits the failure', async () => {
    const first = rid('resp-failed-first');
    const early = await counting(async () =>
      apiError(
        gw
          .openai(token)
          .responses.create(
            { model: OPENAI_MODEL, input: 'fail first [mock error_event_after=0 failed=1]', stream: true },
            { headers: first.headers },
          ),
      ),
    );
    expect(early.result.status).toBe(502);
    expect(early.moved).toEqual({ 'openai.responses': 1 + MAX_RETRIES });
    await expectOneAudit(first.id, { status: 502, failure: 'upstream', stream: true, attempts: 1 + MAX_RETRIES });

    const late = rid('resp-failed-late');
    const types: string[] = [];
    const { result: error, moved } = await counting(async () => {
      const stream = await gw
        .openai(token)
        .responses.create(
          { model: OPENAI_MODEL, input: 'fail late [mock error_event_after=2 chunks=6 failed=1]', stream: true },
          { headers: late.headers },
        );
      try {
        for await (const event of stream) types.push(event.type);
      } catch (e) {
        return e;
      }
      return undefined;
    });
    // The client saw OpenAI's own response.failed as the stream's end, nothing after it, as from OpenAI.
    expect(types.at(-1)).toBe('response.failed');
    expect(error).toBeUndefined();
    expect(moved).toEqual({ 'openai.responses': 1 });
    await expectOneAudit(late.id, { status: 502, failure: 'upstream', stream: true, attempts: 1 });
    // The SDK's stream helper then resolves with the failed Response (another error event made it throw).
    const helper = rid('resp-failed-helper');
    const failed = await gw
      .openai(token)
      .responses.stream(
        { model: OPENAI_MODEL, input: 'fail late again [mock error_event_after=2 chunks=6 failed=1]' },
        { headers: helper.headers },
      )
      .finalResponse();
    expect(failed.status).toBe('failed');
    await expectOneAudit(helper.id, { status: 502, failure: 'upstream', stream: true });
  });

  it('bills a client that leaves mid-stream keygate’s estimate, and audits it 499', async () => {
    const { id, headers } = rid('resp-abort');
    const controller = new AbortController();
    const stream = await gw
      .openai(token)
      .responses.create(
        { model: OPENAI_MODEL, input: 'slow [mock chunk_delay_ms=200 chunks=20]', stream: true },
        { headers, signal: controller.signal },
      );
    let deltas = 0;
    await (async () => {
      for await (const event of stream) {
        if (event.type === 'response.output_text.delta' && ++deltas === 2) controller.abort();
      }
    })().catch(() => undefined);
    const audit = await expectOneAudit(id, { status: 499, failure: 'client_abort', stream: true });
    expect(audit.tokens_in).toBeGreaterThan(0);
    expect(audit.tokens_out).toBeGreaterThan(0);
  });
});
