import { getStats, OPENAI_AUTH, postJson, readJson, responsesCalls, startMock, type RunningMock } from './mock.testing';
import type { CompactionItem, ResponseCompaction, ResponseInputTokens, ResponseObject } from './openai.responses.types';
import type { OpenAIErrorBody } from './openai.types';

const INPUT_TOKENS = '/v1/responses/input_tokens';
const COMPACT = '/v1/responses/compact';

describe('OpenAI Responses input_tokens and compact', () => {
  let mock: RunningMock;
  beforeAll(async () => {
    mock = await startMock();
  });
  afterAll(() => mock.close());

  const { plain } = responsesCalls(() => mock.base);
  const post = (path: string, body: unknown, headers: Record<string, string> = OPENAI_AUTH): Promise<Response> =>
    postJson(mock.base, path, body, headers);

  const count = async (body: Record<string, unknown>): Promise<ResponseInputTokens> => {
    const res = await post(INPUT_TOKENS, body);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-request-id')).toMatch(/^req_/);
    return readJson<ResponseInputTokens>(res);
  };

  const compact = async (body: Record<string, unknown>): Promise<ResponseCompaction> => {
    const res = await post(COMPACT, { model: 'gpt-4o-mini', ...body });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    return readJson<ResponseCompaction>(res);
  };

  const error = async (res: Response): Promise<OpenAIErrorBody['error'] & { status: number }> => ({
    status: res.status,
    ...(await readJson<OpenAIErrorBody>(res)).error,
  });

  describe('POST /v1/responses/input_tokens', () => {
    it('answers the input tokens a create with the same fields is billed', async () => {
      const fields = {
        model: 'gpt-4o-mini',
        instructions: 'Be brief.',
        input: [
          { role: 'user', content: 'First question, rather long' },
          { role: 'assistant', content: 'First answer' },
          { role: 'user', content: [{ type: 'input_text', text: 'Second' }] },
        ],
      };
      const counted = await count(fields);
      expect(Object.keys(counted)).toEqual(['object', 'input_tokens']);
      expect(counted.object).toBe('response.input_tokens');
      expect(counted.input_tokens).toBe((await plain(fields)).usage?.input_tokens);
    });

    it('counts a previous response’s input and output as context, as create bills it', async () => {
      const previous = await plain({ input: 'Remember this' });
      const fields = { model: 'gpt-4o-mini', input: 'And now?', previous_response_id: previous.id };
      const counted = await count(fields);
      expect(counted.input_tokens).toBe((await count({ input: 'And now?' })).input_tokens + previous.usage!.total_tokens);
      expect(counted.input_tokens).toBe((await plain(fields)).usage?.input_tokens);
    });

    it('takes a body without model, and the fields of a create request that shape the input', async () => {
      const counted = await count({
        input: 'x',
        tools: [{ type: 'function', name: 'f', parameters: {} }],
        tool_choice: 'auto',
        text: { format: { type: 'text' } },
        reasoning: { effort: 'low' },
        truncation: 'auto',
        parallel_tool_calls: true,
      });
      expect(counted.input_tokens).toBeGreaterThan(0);
    });

    it.each([
      ['a create-only argument', { model: 'm', input: 'x', max_output_tokens: 32 }, 400, 'unknown_parameter', 'max_output_tokens'],
      ['stream', { model: 'm', input: 'x', stream: true }, 400, 'unknown_parameter', 'stream'],
      ['a missing input', { model: 'm' }, 400, 'missing_required_parameter', 'input'],
      ['an empty input list', { model: 'm', input: [] }, 400, 'empty_array', 'input'],
      [
        'an unknown previous response',
        { model: 'm', input: 'x', previous_response_id: 'resp_lost' },
        400,
        'previous_response_not_found',
        'previous_response_id',
      ],
      ['a reference to an item nobody stored', { model: 'm', input: [{ type: 'item_reference', id: 'msg_lost' }] }, 404, null, 'input'],
    ])('refuses %s as create does', async (_what, body, status, code, param) => {
      expect(await error(await post(INPUT_TOKENS, body))).toMatchObject({ status, code, param, type: 'invalid_request_error' });
    });
  });

  describe('POST /v1/responses/compact', () => {
    it('answers a response.compaction: every user message, then one compaction item, billed its usage', async () => {
      const input = [
        { role: 'user', content: 'Create a landing page' },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Here it is: <html>…</html>', annotations: [] }] },
        { role: 'user', content: [{ type: 'input_text', text: 'Make it blue' }] },
      ];
      const answer = await compact({ input, instructions: 'Be brief.' });
      expect(Object.keys(answer)).toEqual(['id', 'object', 'created_at', 'output', 'usage']);
      expect(answer).toMatchObject({ object: 'response.compaction', id: expect.stringMatching(/^resp_/) as unknown });
      expect(answer.output.map((item) => item.type)).toEqual(['message', 'message', 'compaction']);
      expect(answer.output.slice(0, 2)).toEqual([
        {
          id: expect.stringMatching(/^msg_/),
          type: 'message',
          status: 'completed',
          content: [{ type: 'input_text', text: 'Create a landing page' }],
          role: 'user',
        },
        {
          id: expect.stringMatching(/^msg_/),
          type: 'message',
          status: 'completed',
          content: [{ type: 'input_text', text: 'Make it blue' }],
          role: 'user',
        },
      ]);
      const item = answer.output[2] as CompactionItem;
      expect(item.id).toMatch(/^cmp_/);
      expect(item.encrypted_content).toMatch(/^gAAAAA[A-Za-z0-9_-]+$/);
      const { usage } = answer;
      // The input as create bills it; the compaction as output.
      expect(usage?.input_tokens).toBe((await count({ input, instructions: 'Be brief.' })).input_tokens);
      expect(usage?.output_tokens).toBeGreaterThan(0);
      expect(usage?.total_tokens).toBe(usage!.input_tokens + usage!.output_tokens);
    });

    it('compacts from a previous response: its user messages first, its tokens counted as context', async () => {
      const previous = await plain({ input: 'First turn' });
      const answer = await compact({ input: 'Second turn', previous_response_id: previous.id });
      expect(answer.output.flatMap((item) => (item.type === 'message' ? [item.content[0].text] : []))).toEqual([
        'First turn',
        'Second turn',
      ]);
      expect(answer.usage?.input_tokens).toBe((await count({ input: 'Second turn' })).input_tokens + previous.usage!.total_tokens);
    });

    it('stores nothing: the compaction is no response to retrieve or continue', async () => {
      const answer = await compact({ input: 'x' });
      expect((await fetch(`${mock.base}/v1/responses/${answer.id}`, { headers: OPENAI_AUTH })).status).toBe(404);
      expect(await error(await post('/v1/responses', { model: 'm', input: 'y', previous_response_id: answer.id }))).toMatchObject({
        status: 400,
        code: 'previous_response_not_found',
      });
    });

    it('reports no usage with the no_usage directive', async () => {
      const answer = await compact({ input: 'x [mock no_usage=1]' });
      expect(answer.usage).toBeUndefined();
    });

    it.each([
      ['a missing model', { input: 'x', model: undefined }, 400, 'missing_required_parameter', 'model'],
      ['a create-only argument', { input: 'x', tools: [] }, 400, 'unknown_parameter', 'tools'],
      ['stream', { input: 'x', stream: true }, 400, 'unknown_parameter', 'stream'],
      ['a missing input', {}, 400, 'missing_required_parameter', 'input'],
      [
        'an unknown previous response',
        { input: 'x', previous_response_id: 'resp_lost' },
        400,
        'previous_response_not_found',
        'previous_response_id',
      ],
    ])('refuses %s', async (_what, body, status, code, param) => {
      expect(await error(await post(COMPACT, { model: 'gpt-4o-mini', ...body }))).toMatchObject({ status, code, param });
    });
  });

  it('rejects a missing key on both routes, and counts each under its own name', async () => {
    const other = await startMock();
    try {
      expect((await postJson(other.base, INPUT_TOKENS, { input: 'x' })).status).toBe(401);
      expect((await postJson(other.base, COMPACT, { model: 'm', input: 'x' })).status).toBe(401);
      await (await postJson(other.base, INPUT_TOKENS, { input: 'x' }, OPENAI_AUTH)).text();
      await (await postJson(other.base, COMPACT, { model: 'm', input: 'y' }, OPENAI_AUTH)).text();
      const stats = await getStats(other.base);
      expect(stats.byRoute).toMatchObject({ 'openai.responses.inputTokens': 2, 'openai.responses.compact': 2, 'openai.responses': 0 });
      expect(stats.last['openai.responses.compact']?.body).toEqual({ model: 'm', input: 'y' });
    } finally {
      await other.close();
    }
  });

  it('keeps a created response untouched by either route', async () => {
    const created: ResponseObject = await plain({ input: 'keep' });
    await count({ input: 'x', previous_response_id: created.id });
    await compact({ input: 'x', previous_response_id: created.id });
    const res = await fetch(`${mock.base}/v1/responses/${created.id}`, { headers: OPENAI_AUTH });
    expect(await readJson<ResponseObject>(res)).toEqual(created);
  });
});
