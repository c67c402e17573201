/**
 * `POST /v1/responses`, black box: the built gateway and mock upstream run as real processes and the
 * official OpenAI SDK's `responses.create` talks to an OpenAI model through the gateway. Every case
 * checks the outcome, what reached the upstream, and the request's single audit line.
 */
import { APIError } from 'openai';
import type { Response, ResponseStreamEvent } from 'openai/resources/responses/responses';
import { ANTHROPIC_MODEL, mockReply, OPENAI_MODEL, rid, useProviderStack, type FlakyUpstream } from './provider-fixtures';
import { apiError, mintToken, type Gateway } from './harness';

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
    ['an empty input list', () => token, { model: OPENAI_MODEL, input: [] }, 400, 'invalid_request', 'input'],
    [
      'a content part that is not an object',
      () => token,
      { model: OPENAI_MODEL, input: [{ role: 'user', content: [1] }] },
      400,
      'invalid_request',
      'input',
    ],
    [
      'a function name no provider takes',
      () => token,
      { model: OPENAI_MODEL, input: 'x', tools: [{ type: 'function', name: 'bad name!', parameters: {} }] },
      400,
      'invalid_request',
      'tools',
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
      'tools',
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

describe('POST /v1/responses upstream failures', () => {
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
    // The client saw OpenAI's own response.failed, then keygate's error event (the SDK raises it).
    expect(types.at(-1)).toBe('response.failed');
    expect(error).toBeInstanceOf(APIError);
    expect(moved).toEqual({ 'openai.responses': 1 });
    await expectOneAudit(late.id, { status: 502, failure: 'upstream', stream: true, attempts: 1 });
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
