import type {
  BatchEmbedContentsResponse,
  EmbedContentResponse,
  GeminiErrorBody,
  GeminiPart,
  GenerateContentResponse,
} from './gemini.types';
import { GEMINI_AUTH, parseSse, postJson, readJson, startMock, type RunningMock } from './mock.testing';
import { MOCK_THOUGHT_TOKENS } from './gemini.handler';

const MODEL = 'gemini-2.5-flash';
const TOOLS = [
  { functionDeclarations: [{ name: 'get_weather', parameters: { type: 'OBJECT', properties: { city: { type: 'STRING' } } } }] },
];
const user = (text: string): Record<string, unknown> => ({ role: 'user', parts: [{ text }] });

/** Text of the first candidate (concatenated text parts; '' for function calls or blocks). */
function textOf(r: GenerateContentResponse): string {
  return (r.candidates[0].content?.parts ?? []).map((p: GeminiPart) => ('text' in p ? p.text : '')).join('');
}

describe('Gemini wire format', () => {
  let mock: RunningMock;
  beforeAll(async () => {
    mock = await startMock();
  });
  afterAll(() => mock.close());

  const generate = (body: Record<string, unknown>, headers: Record<string, string> = GEMINI_AUTH, query = ''): Promise<Response> =>
    postJson(mock.base, `/v1beta/models/${MODEL}:generateContent${query}`, body, headers);
  const stream = (body: Record<string, unknown>, query = '?alt=sse', headers: Record<string, string> = GEMINI_AUTH): Promise<Response> =>
    postJson(mock.base, `/v1beta/models/${MODEL}:streamGenerateContent${query}`, body, headers);

  const sseChunks = async (res: Response): Promise<GenerateContentResponse[]> => {
    const raw = await res.text();
    // Google frames SSE events with CRLF.
    expect(raw.endsWith('\r\n\r\n')).toBe(true);
    expect(
      raw
        .split('\r\n\r\n')
        .filter((s) => s !== '')
        .every((s) => s.startsWith('data: ')),
    ).toBe(true);
    return parseSse(raw).map((e) => JSON.parse(e.data) as GenerateContentResponse);
  };

  it('answers generateContent with candidates, usageMetadata and modelVersion', async () => {
    const res = await generate({
      systemInstruction: { parts: [{ text: 'sys' }] },
      contents: [user('old'), { role: 'model', parts: [{ text: 'ok' }] }, user('hello')],
    });
    expect(res.status).toBe(200);
    const body = await readJson<GenerateContentResponse>(res);
    const text = 'Hello from mock gemini! You said: hello';
    expect(body).toMatchObject({
      candidates: [{ content: { parts: [{ text }], role: 'model' }, finishReason: 'STOP', index: 0 }],
      usageMetadata: { promptTokenCount: Math.ceil(13 / 4) + 9, candidatesTokenCount: Math.ceil(text.length / 4) },
      modelVersion: MODEL,
    });
    const u = body.usageMetadata;
    expect(u.totalTokenCount).toBe(u.promptTokenCount + (u.candidatesTokenCount ?? 0));
  });

  it('counts a prompt’s tokens as generateContent reports them, for contents or a whole generateContentRequest', async () => {
    const contents = [user('count these words')];
    const generated = await readJson<GenerateContentResponse>(await generate({ contents }));
    const count = (body: Record<string, unknown>): Promise<Response> =>
      postJson(mock.base, `/v1beta/models/${MODEL}:countTokens`, body, GEMINI_AUTH);
    const counted = await count({ contents });
    expect(counted.status).toBe(200);
    const total = generated.usageMetadata?.promptTokenCount;
    expect(await counted.json()).toEqual({ totalTokens: total, promptTokensDetails: [{ modality: 'TEXT', tokenCount: total }] });
    expect(await (await count({ generateContentRequest: { model: `models/${MODEL}`, contents } })).json()).toMatchObject({
      totalTokens: total,
    });
    const empty = await count({});
    expect(empty.status).toBe(400);
    expect(((await empty.json()) as GeminiErrorBody).error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT' });
  });

  it('accepts the key as ?key= and a role-less single turn', async () => {
    const res = await generate({ contents: [{ parts: [{ text: 'hi' }] }] }, {}, '?key=AIza-mock-q');
    expect(res.status).toBe(200);
    expect(textOf(await readJson<GenerateContentResponse>(res))).toBe('Hello from mock gemini! You said: hi');
  });

  it('streams SSE chunks; the last carries finishReason and the full usage', async () => {
    const res = await stream({ contents: [user('hi [mock chunks=3]')] });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const chunks = await sseChunks(res);
    expect(chunks).toHaveLength(3);
    const text = chunks.map(textOf).join('');
    expect(text).toBe('Hello from mock gemini! You said: hi');
    for (const c of chunks) {
      expect(c.modelVersion).toBe(MODEL);
      expect(c.candidates[0].content?.role).toBe('model');
    }
    expect(chunks[0].candidates[0].finishReason).toBeUndefined();
    expect(chunks[0].usageMetadata.candidatesTokenCount).toBeUndefined();
    const last = chunks[2];
    expect(last.candidates[0].finishReason).toBe('STOP');
    expect(last.usageMetadata.candidatesTokenCount).toBe(Math.ceil(text.length / 4));
    expect(last.usageMetadata.totalTokenCount).toBe(last.usageMetadata.promptTokenCount + Math.ceil(text.length / 4));
  });

  it('streams the thought tokens in every running usage, as Gemini reports them once the model has thought', async () => {
    const chunks = await sseChunks(await stream({ contents: [user('hi [mock chunks=3 reasoning_tokens=40]')] }));
    expect(chunks).toHaveLength(3);
    for (const c of chunks) expect(c.usageMetadata.thoughtsTokenCount).toBe(40);
    expect(chunks[0].usageMetadata.totalTokenCount).toBe(chunks[0].usageMetadata.promptTokenCount + 40);
    expect(chunks[0].usageMetadata.candidatesTokenCount).toBeUndefined();
  });

  it('bad_usage=1 writes every usage count as a string, plain and streamed', async () => {
    const plain = await readJson<GenerateContentResponse>(await generate({ contents: [user('hi [mock bad_usage=1]')] }));
    const counts = plain.usageMetadata as unknown as Record<string, unknown>;
    expect(typeof counts.promptTokenCount).toBe('string');
    expect(typeof counts.candidatesTokenCount).toBe('string');
    expect(counts.totalTokenCount).toBe(String(Number(counts.promptTokenCount) + Number(counts.candidatesTokenCount)));
    const chunks = await sseChunks(await stream({ contents: [user('hi [mock bad_usage=1 chunks=2]')] }));
    for (const c of chunks) expect(typeof (c.usageMetadata as unknown as Record<string, unknown>).promptTokenCount).toBe('string');
    expect(typeof (chunks[1].usageMetadata as unknown as Record<string, unknown>).candidatesTokenCount).toBe('string');
  });

  it('answers JSON of a response schema (Gemini’s Schema or JSON Schema), plain and streamed, and of application/json alone', async () => {
    const responseSchema = {
      type: 'OBJECT',
      properties: { name: { type: 'STRING' }, age: { type: 'INTEGER' }, tags: { type: 'ARRAY', items: { type: 'STRING' }, minItems: 1 } },
      required: ['name', 'age', 'tags'],
    };
    const expected = { name: 'mock', age: 0, tags: ['mock'] };
    const generationConfig = { responseMimeType: 'application/json', responseSchema };
    expect(
      JSON.parse(textOf(await readJson<GenerateContentResponse>(await generate({ contents: [user('Bob')], generationConfig })))),
    ).toEqual(expected);
    const chunks = await sseChunks(await stream({ contents: [user('Bob [mock chunks=3]')], generationConfig }));
    expect(JSON.parse(chunks.map(textOf).join(''))).toEqual(expected);
    const responseJsonSchema = {
      type: 'object',
      $defs: { Kind: { enum: ['a', 'b'] } },
      properties: { kind: { $ref: '#/$defs/Kind' }, n: { type: 'integer', exclusiveMinimum: 0 } },
      required: ['kind', 'n'],
    };
    const json = await generate({ contents: [user('x')], generationConfig: { responseMimeType: 'application/json', responseJsonSchema } });
    expect(JSON.parse(textOf(await readJson<GenerateContentResponse>(json)))).toEqual({ kind: 'a', n: 1 });
    const bare = await generate({ contents: [user('as JSON')], generationConfig: { responseMimeType: 'application/json' } });
    expect(JSON.parse(textOf(await readJson<GenerateContentResponse>(bare)))).toEqual({
      reply: 'Hello from mock gemini! You said: as JSON',
    });
  });

  it('answers the bare first value of an enum schema under text/x.enum, and the usual reply without a JSON type', async () => {
    const generationConfig = {
      responseMimeType: 'text/x.enum',
      responseSchema: { type: 'STRING', format: 'enum', enum: ['positive', 'negative'] },
    };
    expect(textOf(await readJson<GenerateContentResponse>(await generate({ contents: [user('great!')], generationConfig })))).toBe(
      'positive',
    );
    const plainText = await generate({ contents: [user('hi')], generationConfig: { responseMimeType: 'text/plain' } });
    expect(textOf(await readJson<GenerateContentResponse>(plainText))).toBe('Hello from mock gemini! You said: hi');
  });

  it('streams a JSON array without alt=sse', async () => {
    const res = await stream({ contents: [user('hi [mock chunks=2]')] }, '');
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const arr = await readJson<GenerateContentResponse[]>(res);
    expect(arr).toHaveLength(2);
    expect(arr[1].candidates[0].finishReason).toBe('STOP');
  });

  it('finish=length reports MAX_TOKENS', async () => {
    const body = await readJson<GenerateContentResponse>(await generate({ contents: [user('x [mock finish=length]')] }));
    expect(body.candidates[0].finishReason).toBe('MAX_TOKENS');
    const chunks = await sseChunks(await stream({ contents: [user('x [mock finish=length]')] }));
    expect(chunks[chunks.length - 1].candidates[0].finishReason).toBe('MAX_TOKENS');
  });

  it('safety=1 blocks with finishReason SAFETY, no text and safetyRatings', async () => {
    const body = await readJson<GenerateContentResponse>(await generate({ contents: [user('x [mock safety=1]')] }));
    const c = body.candidates[0];
    expect(c.finishReason).toBe('SAFETY');
    expect(c.content).toBeUndefined();
    expect(c.safetyRatings?.some((r) => r.probability === 'HIGH' && r.blocked === true)).toBe(true);
    expect(body.usageMetadata.promptTokenCount).toBeGreaterThan(0);

    const chunks = await sseChunks(await stream({ contents: [user('x [mock safety=1]')] }));
    expect(chunks).toHaveLength(1);
    expect(chunks[0].candidates[0].finishReason).toBe('SAFETY');
    expect(chunks[0].candidates[0].content).toBeUndefined();
  });

  it('answers functionCall parts (parallel with tools=2), in text after a functionResponse', async () => {
    const body = await readJson<GenerateContentResponse>(
      await generate({ tools: TOOLS, contents: [user('w [mock tool=get_weather tools=2]')] }),
    );
    expect(body.candidates[0].finishReason).toBe('STOP');
    expect(body.candidates[0].content?.parts).toEqual([
      { functionCall: { name: 'get_weather', args: { city: 'w' } } },
      { functionCall: { name: 'get_weather', args: { city: 'w' } } },
    ]);

    const forced = await readJson<GenerateContentResponse>(
      await generate({
        tools: TOOLS,
        toolConfig: { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['get_weather'] } },
        contents: [user('w')],
      }),
    );
    expect(forced.candidates[0].content?.parts[0]).toEqual({ functionCall: { name: 'get_weather', args: { city: 'w' } } });

    const after = await readJson<GenerateContentResponse>(
      await generate({
        tools: TOOLS,
        contents: [
          user('w [mock tool=get_weather]'),
          { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: {} } }] },
          { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { sky: 'sunny' } } }] },
        ],
      }),
    );
    expect(textOf(after)).toBe('Hello from mock gemini! You said: w');
  });

  it('gives Gemini 3 function calls ids, and refuses a functionResponse whose id matches no call of the turn before', async () => {
    const gemini3 = (body: Record<string, unknown>): Promise<Response> =>
      postJson(mock.base, '/v1beta/models/gemini-3-pro-preview:generateContent', body, GEMINI_AUTH);
    const calls = (
      await readJson<GenerateContentResponse>(await gemini3({ tools: TOOLS, contents: [user('w [mock tool=get_weather tools=2]')] }))
    ).candidates[0].content?.parts as Array<{ functionCall: { id?: string } }>;
    const ids = calls.map((p) => p.functionCall.id);
    expect(ids.every((id) => typeof id === 'string' && id.length > 0)).toBe(true);
    expect(new Set(ids).size).toBe(2);
    const model = { role: 'model', parts: calls };
    const answer = (id: string): Record<string, unknown> => ({ functionResponse: { id, name: 'get_weather', response: { sky: 'sunny' } } });
    const matched = await gemini3({
      tools: TOOLS,
      contents: [user('w'), model, { role: 'user', parts: [answer(ids[1]!), answer(ids[0]!)] }],
    });
    expect(matched.status).toBe(200);
    const wrong = await gemini3({
      tools: TOOLS,
      contents: [user('w'), model, { role: 'user', parts: [answer(ids[0]!), answer('call_other')] }],
    });
    expect(wrong.status).toBe(400);
    expect((await readJson<GeminiErrorBody>(wrong)).error.message).toBe(
      '* GenerateContentRequest.contents[2].parts[1].function_response.id: functionResponse.id does not match functionCall.id',
    );
  });

  it('streams a function call in one chunk', async () => {
    const chunks = await sseChunks(await stream({ tools: TOOLS, contents: [user('w [mock tool=get_weather]')] }));
    expect(chunks).toHaveLength(1);
    expect(chunks[0].candidates[0]).toMatchObject({
      content: { parts: [{ functionCall: { name: 'get_weather', args: { city: 'w' } } }] },
      finishReason: 'STOP',
    });
  });

  it('embedContent and batchEmbedContents', async () => {
    const one = await readJson<EmbedContentResponse>(
      await postJson(mock.base, '/v1beta/models/text-embedding-004:embedContent', { content: { parts: [{ text: 'a' }] } }, GEMINI_AUTH),
    );
    expect(one.embedding.values).toHaveLength(768);

    const batch = await readJson<BatchEmbedContentsResponse>(
      await postJson(
        mock.base,
        '/v1beta/models/gemini-embedding-001:batchEmbedContents',
        {
          requests: [
            { model: 'models/gemini-embedding-001', content: { parts: [{ text: 'a' }] }, outputDimensionality: 4 },
            { model: 'models/gemini-embedding-001', content: { parts: [{ text: 'b' }] } },
          ],
        },
        GEMINI_AUTH,
      ),
    );
    expect(batch.embeddings).toHaveLength(2);
    expect(batch.embeddings[0].values).toHaveLength(4);
    expect(batch.embeddings[1].values).toHaveLength(3072);
  });

  it('serves the v1 path too', async () => {
    const res = await postJson(mock.base, `/v1/models/${MODEL}:generateContent`, { contents: [user('x')] }, GEMINI_AUTH);
    expect(res.status).toBe(200);
    await res.text();
  });

  describe('thinkingConfig', () => {
    const on = (model: string, thinkingConfig: Record<string, unknown>): Promise<Response> =>
      postJson(
        mock.base,
        `/v1beta/models/${model}:generateContent`,
        { contents: [user('think')], generationConfig: { thinkingConfig } },
        GEMINI_AUTH,
      );

    it.each([
      ['gemini-2.5-flash', { thinkingBudget: 1024 }, MOCK_THOUGHT_TOKENS],
      ['gemini-2.5-flash', { thinkingBudget: 0 }, undefined],
      ['gemini-3-pro-preview', { thinkingLevel: 'low' }, MOCK_THOUGHT_TOKENS],
    ])('%s takes %j and reports %s thought tokens', async (model, config, thoughts) => {
      const res = await on(model, config);
      expect(res.status).toBe(200);
      const usage = (await readJson<GenerateContentResponse>(res)).usageMetadata;
      expect(usage.thoughtsTokenCount).toBe(thoughts);
      expect(usage.totalTokenCount).toBe(usage.promptTokenCount + (usage.candidatesTokenCount ?? 0) + (thoughts ?? 0));
    });

    it.each([
      ['gemini-2.5-flash', { thinkingBudget: 1024, thinkingLevel: 'low' }, /cannot set both/],
      ['gemini-2.5-flash', { thinkingLevel: 'low' }, /Thinking level is not supported/],
      ['gemini-1.5-pro', { thinkingBudget: 1024 }, /Thinking is not supported/],
      ['gemini-3-pro-preview', { thinkingLevel: 'extreme' }, /thinking_level/],
    ])('%s refuses %j', async (model, config, message) => {
      const res = await on(model, config);
      expect(res.status).toBe(400);
      expect((await readJson<GeminiErrorBody>(res)).error).toMatchObject({
        status: 'INVALID_ARGUMENT',
        message: expect.stringMatching(message),
      });
    });
  });

  describe('what a model generation refuses, as the real API does', () => {
    const on = (model: string, generationConfig: Record<string, unknown>, tools?: unknown): Promise<Response> =>
      postJson(mock.base, `/v1beta/models/${model}:generateContent`, { contents: [user('x')], generationConfig, tools }, GEMINI_AUTH);

    it.each([
      [
        'gemini-2.5-flash',
        { responseMimeType: 'application/json' },
        TOOLS,
        /Function calling with a response mime type: 'application\/json' is unsupported/,
      ],
      ['gemini-1.5-pro', { responseMimeType: 'application/json' }, TOOLS, /Function calling with a response mime type/],
      ['gemini-2.5-flash', { presencePenalty: 0.5 }, undefined, /Penalty is not enabled for models\/gemini-2\.5-flash/],
      ['gemini-3-pro-preview', { frequencyPenalty: -1 }, undefined, /Penalty is not enabled/],
      ['gemini-3-pro-preview', { candidateCount: 2 }, undefined, /Multiple candidates is not enabled for this model/],
      ['gemini-1.5-pro', { seed: 12345678901 }, undefined, /Invalid value at 'generation_config\.seed' \(TYPE_INT32\), 12345678901/],
    ])('%s refuses %j (tools: %j)', async (model, config, tools, message) => {
      const res = await on(model, config, tools);
      expect(res.status).toBe(400);
      expect((await readJson<GeminiErrorBody>(res)).error).toMatchObject({
        status: 'INVALID_ARGUMENT',
        message: expect.stringMatching(message),
      });
    });

    it.each([
      ['gemini-3-pro-preview', { responseMimeType: 'application/json' }, TOOLS],
      ['gemini-2.5-flash', { responseMimeType: 'application/json' }, undefined],
      ['gemini-2.5-flash', {}, TOOLS],
      ['gemini-2.5-flash', { presencePenalty: 0, frequencyPenalty: 0 }, undefined],
      ['gemini-2.0-flash', { presencePenalty: 0.5, frequencyPenalty: -1 }, undefined],
      ['gemini-1.5-pro', { presencePenalty: 0.5 }, undefined],
      ['gemini-2.5-flash', { seed: 2147483647 }, undefined],
      ['gemini-2.5-flash', { candidateCount: 2 }, undefined],
      ['gemini-3-pro-preview', { candidateCount: 1 }, undefined],
    ])('%s takes %j (tools: %j)', async (model, config, tools) => {
      expect((await on(model, config, tools)).status).toBe(200);
    });
  });

  describe('errors', () => {
    it('missing key: 403 PERMISSION_DENIED, as Google answers unregistered callers', async () => {
      const res = await generate({ contents: [user('x')] }, {});
      expect(res.status).toBe(403);
      const body = await readJson<GeminiErrorBody>(res);
      expect(body.error).toMatchObject({ code: 403, status: 'PERMISSION_DENIED' });
      expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'status']);
    });

    it('wrong key: 400 INVALID_ARGUMENT with reason API_KEY_INVALID', async () => {
      const res = await generate({ contents: [user('x')] }, { 'x-goog-api-key': 'AIzaReal' });
      expect(res.status).toBe(400);
      const body = await readJson<GeminiErrorBody>(res);
      expect(body.error).toMatchObject({
        code: 400,
        message: 'API key not valid. Please pass a valid API key.',
        status: 'INVALID_ARGUMENT',
      });
      expect(body.error.details?.[0]).toMatchObject({ reason: 'API_KEY_INVALID' });
    });

    it('400 INVALID_ARGUMENT when contents is missing', async () => {
      const res = await generate({});
      expect(res.status).toBe(400);
      expect((await readJson<GeminiErrorBody>(res)).error.status).toBe('INVALID_ARGUMENT');
    });

    it("400 INVALID_ARGUMENT for a tool or response schema outside Gemini's Schema, as the real API refuses it", async () => {
      const tools = [
        {
          functionDeclarations: [
            {
              name: 'a',
              parameters: { type: 'OBJECT', properties: { n: { type: 'INTEGER', exclusiveMinimum: 0 } }, additionalProperties: false },
            },
            { name: 'b', parameters: { type: 'OBJECT', properties: {} } },
          ],
        },
      ];
      const res = await generate({ contents: [user('x')], tools });
      expect(res.status).toBe(400);
      const error = (await readJson<GeminiErrorBody>(res)).error;
      expect(error.status).toBe('INVALID_ARGUMENT');
      expect(error.message.split('\n')).toEqual([
        `Invalid JSON payload received. Unknown name "additionalProperties" at 'tools[0].function_declarations[0].parameters': Cannot find field.`,
        `Invalid JSON payload received. Unknown name "exclusiveMinimum" at 'tools[0].function_declarations[0].parameters.properties["n"].value': Cannot find field.`,
        '* GenerateContentRequest.tools[0].function_declarations[1].parameters.properties: should be non-empty for OBJECT type',
      ]);
      const schema = await generate({ contents: [user('x')], generationConfig: { responseSchema: { type: 'dict' } } });
      expect(schema.status).toBe(400);
      expect((await readJson<GeminiErrorBody>(schema)).error.message).toMatch(/generation_config\.response_schema\.type/);
    });
  });
});
