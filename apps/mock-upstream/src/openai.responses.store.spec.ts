import OpenAI, { BadRequestError, NotFoundError } from 'openai';
import {
  getStats,
  OPENAI_AUTH,
  parseSse,
  postJson,
  readJson,
  readUntilIdle,
  responsesCalls,
  startMock,
  type RunningMock,
} from './mock.testing';
import type {
  ResponseDeleted,
  ResponseInputItem,
  ResponseInputItemList,
  ResponseObject,
  ResponseStreamEvent,
  ResponseStreamEventOf,
} from './openai.responses.types';
import type { OpenAIErrorBody } from './openai.types';

const RESPONSES = '/v1/responses';

const notFound = (id: string): OpenAIErrorBody => ({
  error: { message: `Response with id '${id}' not found.`, type: 'invalid_request_error', param: null, code: null },
});

describe('OpenAI stored responses', () => {
  let mock: RunningMock;
  beforeAll(async () => {
    mock = await startMock();
  });
  afterAll(() => mock.close());

  const { create, plain } = responsesCalls(() => mock.base);

  /** The terminal event's Response of a stream that ran to its end. */
  const streamed = async (body: Record<string, unknown>): Promise<ResponseObject> => {
    const res = await create({ ...body, stream: true });
    expect(res.status).toBe(200);
    const events = parseSse(await res.text()).map((e) => JSON.parse(e.data) as ResponseStreamEvent);
    const last = events[events.length - 1] as ResponseStreamEventOf<'response.completed'>;
    return last.response;
  };

  const get = (path: string, headers: Record<string, string> = OPENAI_AUTH): Promise<Response> => fetch(`${mock.base}${path}`, { headers });
  const del = (path: string, headers: Record<string, string> = OPENAI_AUTH): Promise<Response> =>
    fetch(`${mock.base}${path}`, { method: 'DELETE', headers });

  const retrieve = async (id: string): Promise<ResponseObject> => {
    const res = await get(`${RESPONSES}/${id}`);
    expect(res.status).toBe(200);
    return readJson<ResponseObject>(res);
  };

  const list = async (id: string, query = ''): Promise<ResponseInputItemList> => {
    const res = await get(`${RESPONSES}/${id}/input_items${query}`);
    expect(res.status).toBe(200);
    return readJson<ResponseInputItemList>(res);
  };

  describe('GET /v1/responses/{id}', () => {
    it('gives back the plain answer as it was sent, ignoring include and include[]', async () => {
      const created = await plain({ input: 'keep me', instructions: 'be brief', metadata: { k: 'v' } });
      const res = await get(`${RESPONSES}/${created.id}?include[]=message.output_text.logprobs&include=reasoning.encrypted_content`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
      expect(res.headers.get('x-request-id')).toMatch(/^req_/);
      expect(await readJson<ResponseObject>(res)).toEqual(created);
    });

    it('keeps a streamed response with its final status, output and usage', async () => {
      const final = await streamed({ input: 'stream and keep' });
      expect(final.status).toBe('completed');
      const stored = await retrieve(final.id);
      expect(stored).toEqual(final);
      expect(stored.usage?.output_tokens).toBeGreaterThan(0);
      expect(stored.output).toHaveLength(1);
    });

    it('keeps the incomplete response of finish=length, and a streamed tool call', async () => {
      const incomplete = await streamed({ input: 'x [mock finish=length]' });
      expect(await retrieve(incomplete.id)).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } });

      const tools = [{ type: 'function', name: 'get_weather', parameters: { type: 'object', properties: {} } }];
      const call = await streamed({ tools, input: 'w [mock tool=get_weather]' });
      expect((await retrieve(call.id)).output).toEqual(call.output);
    });

    it('keeps the failed response of a stream that ended in response.failed', async () => {
      const res = await create({ stream: true, input: 'x [mock chunks=5 error_event_after=1 failed=1]' });
      const sse = parseSse((await readUntilIdle(res, 2_000)).text);
      const failed = JSON.parse(sse[sse.length - 1].data) as ResponseStreamEventOf<'response.completed'>;
      expect(failed.response.status).toBe('failed');
      const stored = await retrieve(failed.response.id);
      expect(stored).toEqual(failed.response);
      expect(stored).toMatchObject({ status: 'failed', output: [], error: { code: 'server_error' }, usage: { output_tokens: 0 } });
    });

    it('keeps a stream that ended in an error event as failed', async () => {
      const res = await create({ stream: true, input: 'x [mock chunks=5 error_event_after=2]' });
      const sse = parseSse((await readUntilIdle(res, 2_000)).text);
      expect(sse[sse.length - 1].event).toBe('error');
      const created = JSON.parse(sse[0].data) as ResponseStreamEventOf<'response.created'>;
      expect(await retrieve(created.response.id)).toMatchObject({ status: 'failed', error: { code: 'server_error' } });
    });

    it('does not keep a response made with store: false', async () => {
      const created = await plain({ input: 'forget me', store: false });
      expect(created.store).toBe(false);
      const res = await get(`${RESPONSES}/${created.id}`);
      expect(res.status).toBe(404);
      expect(await readJson<OpenAIErrorBody>(res)).toEqual(notFound(created.id));
      const fromStream = await streamed({ input: 'forget me too', store: false });
      expect((await get(`${RESPONSES}/${fromStream.id}`)).status).toBe(404);
    });

    it('answers 404 in OpenAI’s envelope for an unknown id', async () => {
      const res = await get(`${RESPONSES}/resp_nope`);
      expect(res.status).toBe(404);
      expect(res.headers.get('x-request-id')).toMatch(/^req_/);
      expect(await readJson<OpenAIErrorBody>(res)).toEqual(notFound('resp_nope'));
    });

    it('answers 400 to stream=true: only a background response can be streamed back', async () => {
      const created = await plain({ input: 'x' });
      const res = await get(`${RESPONSES}/${created.id}?stream=true`);
      expect(res.status).toBe(400);
      expect(await readJson<OpenAIErrorBody>(res)).toEqual({
        error: {
          message: 'This response cannot be streamed because it was not created with background=true.',
          type: 'invalid_request_error',
          param: 'stream',
          code: null,
        },
      });
      expect((await get(`${RESPONSES}/${created.id}?stream=false`)).status).toBe(200);
    });
  });

  describe('DELETE /v1/responses/{id}', () => {
    it('answers the deletion object, after which the response and its items are gone', async () => {
      const created = await plain({ input: 'delete me' });
      const res = await del(`${RESPONSES}/${created.id}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('x-request-id')).toMatch(/^req_/);
      const expected: ResponseDeleted = { id: created.id, object: 'response', deleted: true };
      expect(await readJson<ResponseDeleted>(res)).toEqual(expected);

      const again = await get(`${RESPONSES}/${created.id}`);
      expect(again.status).toBe(404);
      expect(await readJson<OpenAIErrorBody>(again)).toEqual(notFound(created.id));
      expect((await get(`${RESPONSES}/${created.id}/input_items`)).status).toBe(404);
      const twice = await del(`${RESPONSES}/${created.id}`);
      expect(twice.status).toBe(404);
      expect(await readJson<OpenAIErrorBody>(twice)).toEqual(notFound(created.id));
    });

    it('answers 404 for an unknown id', async () => {
      const res = await del(`${RESPONSES}/resp_never`);
      expect(res.status).toBe(404);
      expect(await readJson<OpenAIErrorBody>(res)).toEqual(notFound('resp_never'));
    });
  });

  describe('GET /v1/responses/{id}/input_items', () => {
    const items = [
      { role: 'developer', content: 'rules' },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'first' }] },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'ok' }] },
      { type: 'function_call', call_id: 'call_1', name: 'f', arguments: '{}' },
      { type: 'function_call_output', call_id: 'call_1', output: 'done' },
      { id: 'msg_client_given', type: 'message', role: 'user', content: [{ type: 'input_text', text: 'last' }] },
    ];

    it('stores a string input as one user message item', async () => {
      const created = await plain({ input: 'just text' });
      const page = await list(created.id);
      expect(page).toEqual({
        object: 'list',
        data: [
          {
            id: expect.stringMatching(/^msg_/),
            type: 'message',
            role: 'user',
            status: 'completed',
            content: [{ type: 'input_text', text: 'just text' }],
          },
        ],
        first_id: page.data[0].id,
        last_id: page.data[0].id,
        has_more: false,
      });
    });

    it('keeps array items as sent, each with an id (its own when it had one), newest first by default', async () => {
      const created = await plain({ input: items });
      const page = await list(created.id, '?include[]=message.input_image.image_url&include=file_search_call.results');
      expect(page.has_more).toBe(false);
      const asc = [...page.data].reverse();
      // Messages are listed in full (`type`, `status`, content parts), the short form included; other items as sent.
      const full = (item: Record<string, unknown>): Record<string, unknown> =>
        item.role === undefined ? item : { type: 'message', status: 'completed', ...item };
      expect(asc.map(({ id: _id, ...rest }) => rest)).toEqual([
        { type: 'message', status: 'completed', role: 'developer', content: [{ type: 'input_text', text: 'rules' }] },
        ...items.slice(1).map(({ id: _id, ...rest }: Record<string, unknown>) => full(rest)),
      ]);
      expect(asc.map((item) => item.id)).toEqual([
        expect.stringMatching(/^msg_/),
        expect.stringMatching(/^msg_/),
        expect.stringMatching(/^msg_/),
        expect.stringMatching(/^fc_/),
        expect.stringMatching(/^item_/),
        'msg_client_given',
      ]);
      expect(Object.keys(asc[0])[0]).toBe('id');
      expect(new Set(asc.map((item) => item.id)).size).toBe(items.length);
      expect(page.first_id).toBe('msg_client_given');
      expect(page.last_id).toBe(asc[0].id);
      expect((await list(created.id, '?order=asc')).data).toEqual(asc);
    });

    it('pages with limit and after in either order, with has_more', async () => {
      const created = await plain({ input: items });
      const all = (await list(created.id, '?order=asc')).data;
      const ids = all.map((item) => item.id);

      const first = await list(created.id, '?order=asc&limit=2');
      expect(first.data.map((item) => item.id)).toEqual(ids.slice(0, 2));
      expect(first).toMatchObject({ first_id: ids[0], last_id: ids[1], has_more: true });
      const second = await list(created.id, `?order=asc&limit=2&after=${first.last_id}`);
      expect(second.data.map((item) => item.id)).toEqual(ids.slice(2, 4));
      expect(second.has_more).toBe(true);
      const third = await list(created.id, `?order=asc&limit=2&after=${second.last_id}`);
      expect(third.data.map((item) => item.id)).toEqual(ids.slice(4, 6));
      expect(third.has_more).toBe(false);

      const desc = await list(created.id, `?limit=3&after=${ids[4]}`);
      expect(desc.data.map((item) => item.id)).toEqual([ids[3], ids[2], ids[1]]);
      expect(desc.has_more).toBe(true);
      const exact = await list(created.id, `?order=desc&limit=1&after=${ids[1]}`);
      expect(exact).toMatchObject({ first_id: ids[0], last_id: ids[0], has_more: false });

      const pastTheEnd = await list(created.id, `?order=asc&after=${ids[5]}`);
      expect(pastTheEnd).toEqual({ object: 'list', data: [], first_id: null, last_id: null, has_more: false });
      expect((await list(created.id, '?after=msg_not_in_this_list')).data).toEqual([]);
    });

    it('lists 20 by default and at most 100', async () => {
      const many = Array.from({ length: 101 }, (_, i) => ({ role: 'user', content: `m${i}` }));
      const created = await plain({ input: many });
      const page = await list(created.id);
      expect(page.data).toHaveLength(20);
      expect(page.data[0]).toMatchObject({ type: 'message', content: [{ type: 'input_text', text: 'm100' }] });
      expect(page.has_more).toBe(true);
      const max = await list(created.id, '?limit=100&order=asc');
      expect(max.data).toHaveLength(100);
      expect(max.has_more).toBe(true);
      expect((await list(created.id, `?limit=100&order=asc&after=${max.last_id}`)).data.map((i: ResponseInputItem) => i.content)).toEqual([
        [{ type: 'input_text', text: 'm100' }],
      ]);
    });

    it.each([
      [
        'limit=0',
        'limit',
        'integer_below_min_value',
        "Invalid 'limit': integer below minimum value. Expected a value >= 1, but got 0 instead.",
      ],
      [
        'limit=101',
        'limit',
        'integer_above_max_value',
        "Invalid 'limit': integer above maximum value. Expected a value <= 100, but got 101 instead.",
      ],
      ['limit=ten', 'limit', 'invalid_type', "Invalid type for 'limit': expected an integer, but got a string instead."],
      ['order=sideways', 'order', 'invalid_value', "Invalid value: 'sideways'. Supported values are: 'asc' and 'desc'."],
    ])('answers 400 to %s in OpenAI’s envelope', async (query, param, code, message) => {
      const created = await plain({ input: 'x' });
      for (const id of [created.id, 'resp_unknown']) {
        const res = await get(`${RESPONSES}/${id}/input_items?${query}`);
        expect(res.status).toBe(400);
        expect(await readJson<OpenAIErrorBody>(res)).toEqual({ error: { message, type: 'invalid_request_error', param, code } });
      }
    });

    it('answers 404 for an unknown response', async () => {
      const res = await get(`${RESPONSES}/resp_missing/input_items`);
      expect(res.status).toBe(404);
      expect(await readJson<OpenAIErrorBody>(res)).toEqual(notFound('resp_missing'));
    });
  });

  describe('previous_response_id', () => {
    it('answers 400 previous_response_not_found for an id the mock does not hold', async () => {
      const res = await create({ input: 'next', previous_response_id: 'resp_gone' });
      expect(res.status).toBe(400);
      expect(await readJson<OpenAIErrorBody>(res)).toEqual({
        error: {
          message: "Previous response with id 'resp_gone' not found.",
          type: 'invalid_request_error',
          param: 'previous_response_id',
          code: 'previous_response_not_found',
        },
      });
      const streamedRes = await create({ input: 'next', stream: true, previous_response_id: 'resp_gone' });
      expect(streamedRes.status).toBe(400);
      expect((await readJson<OpenAIErrorBody>(streamedRes)).error.code).toBe('previous_response_not_found');
    });

    it('refuses a deleted response or one made with store: false as the previous one', async () => {
      const unstored = await plain({ input: 'x', store: false });
      const deleted = await plain({ input: 'y' });
      await (await del(`${RESPONSES}/${deleted.id}`)).text();
      for (const id of [unstored.id, deleted.id]) {
        const res = await create({ input: 'next', previous_response_id: id });
        expect(res.status).toBe(400);
        expect((await readJson<OpenAIErrorBody>(res)).error.message).toBe(`Previous response with id '${id}' not found.`);
      }
    });

    it('answers 400 invalid_type for a previous_response_id that is not a string', async () => {
      const res = await create({ input: 'next', previous_response_id: 42 });
      expect(res.status).toBe(400);
      expect((await readJson<OpenAIErrorBody>(res)).error).toMatchObject({ param: 'previous_response_id', code: 'invalid_type' });
    });

    it('continues from a stored response: echoes its id and counts its input and output as context', async () => {
      const first = await plain({ input: 'hello' });
      const alone = await plain({ input: 'and then?' });
      const second = await plain({ input: 'and then?', previous_response_id: first.id });
      expect(second.previous_response_id).toBe(first.id);
      const context = (first.usage?.input_tokens ?? 0) + (first.usage?.output_tokens ?? 0);
      expect(second.usage?.input_tokens).toBe(context + (alone.usage?.input_tokens ?? 0));
      expect(second.usage?.total_tokens).toBe((second.usage?.input_tokens ?? 0) + (second.usage?.output_tokens ?? 0));
      // The chain grows: the third turn carries the second's usage, which already holds the first.
      const third = await streamed({ input: 'more', previous_response_id: second.id });
      expect(third.usage?.input_tokens).toBeGreaterThan(second.usage?.input_tokens ?? 0);
      expect((await retrieve(third.id)).previous_response_id).toBe(second.id);
      // The continuation's own input items are the ones it sent.
      expect((await list(second.id)).data.map((item) => item.content)).toEqual([[{ type: 'input_text', text: 'and then?' }]]);
    });
  });

  describe('POST /v1/responses/{id}/cancel', () => {
    const cancel = (id: string, headers: Record<string, string> = OPENAI_AUTH): Promise<Response> =>
      fetch(`${mock.base}${RESPONSES}/${id}/cancel`, { method: 'POST', headers });

    it('refuses a response that was not created in the background with a 400, and keeps it', async () => {
      const created = await plain({ input: 'cancel me' });
      expect(created.background).toBe(false);
      const res = await cancel(created.id);
      expect(res.status).toBe(400);
      expect(await readJson<OpenAIErrorBody>(res)).toEqual({
        error: { message: 'Cannot cancel a synchronous response.', type: 'invalid_request_error', param: null, code: null },
      });
      expect(await retrieve(created.id)).toEqual(created);
    });

    it('answers 404 for an unknown or deleted id', async () => {
      const created = await plain({ input: 'x' });
      await (await del(`${RESPONSES}/${created.id}`)).text();
      for (const id of ['resp_unknown', created.id]) {
        const res = await cancel(id);
        expect(res.status).toBe(404);
        expect(await readJson<OpenAIErrorBody>(res)).toEqual(notFound(id));
      }
    });

    it('rejects a missing key with 401, and takes the header directives', async () => {
      const created = await plain({ input: 'x' });
      expect((await cancel(created.id, {})).status).toBe(401);
      const forced = await cancel(created.id, { ...OPENAI_AUTH, 'x-mock-status': '503' });
      expect(forced.status).toBe(503);
    });
  });

  describe('keys, directives, stats and paths', () => {
    it('rejects a missing or wrong key with 401 on every stored-response route', async () => {
      const created = await plain({ input: 'x' });
      for (const send of [
        (h: Record<string, string>) => get(`${RESPONSES}/${created.id}`, h),
        (h: Record<string, string>) => get(`${RESPONSES}/${created.id}/input_items`, h),
        (h: Record<string, string>) => del(`${RESPONSES}/${created.id}`, h),
      ]) {
        const none = await send({});
        expect(none.status).toBe(401);
        expect((await readJson<OpenAIErrorBody>(none)).error.message).toContain("You didn't provide an API key");
        const wrong = await send({ authorization: 'Bearer sk-real-123456789' });
        expect(wrong.status).toBe(401);
        expect((await readJson<OpenAIErrorBody>(wrong)).error.code).toBe('invalid_api_key');
      }
      expect(await retrieve(created.id)).toEqual(created);
    });

    it('honours header directives: a forced status with Retry-After, and delay_ms', async () => {
      const created = await plain({ input: 'x' });
      const forced = await get(`${RESPONSES}/${created.id}`, { ...OPENAI_AUTH, 'x-mock-status': '503', 'x-mock-retry-after': '4' });
      expect(forced.status).toBe(503);
      expect(forced.headers.get('retry-after')).toBe('4');
      expect((await readJson<OpenAIErrorBody>(forced)).error.type).toBe('server_error');
      const notDeleted = await del(`${RESPONSES}/${created.id}`, { ...OPENAI_AUTH, 'x-mock-status': '500' });
      expect(notDeleted.status).toBe(500);
      await notDeleted.text();
      const t0 = Date.now();
      expect(await retrieve(created.id)).toEqual(created);
      const delayed = await get(`${RESPONSES}/${created.id}/input_items`, { ...OPENAI_AUTH, 'x-mock-delay-ms': '120' });
      expect(delayed.status).toBe(200);
      await delayed.text();
      expect(Date.now() - t0).toBeGreaterThanOrEqual(110);
    });

    it('counts each route under its own name and remembers its last request', async () => {
      const other = await startMock();
      try {
        const created = await readJson<ResponseObject>(await postJson(other.base, RESPONSES, { model: 'm', input: 'x' }, OPENAI_AUTH));
        await (await fetch(`${other.base}${RESPONSES}/${created.id}?include[]=x`, { headers: OPENAI_AUTH })).text();
        await (await fetch(`${other.base}${RESPONSES}/${created.id}/input_items?limit=1`, { headers: OPENAI_AUTH })).text();
        await (await fetch(`${other.base}${RESPONSES}/${created.id}/input_items`, { headers: {} })).text();
        await (await fetch(`${other.base}${RESPONSES}/${created.id}/cancel`, { method: 'POST', headers: OPENAI_AUTH })).text();
        await (await fetch(`${other.base}${RESPONSES}/${created.id}`, { method: 'DELETE', headers: OPENAI_AUTH })).text();
        const stats = await getStats(other.base);
        expect(stats.total).toBe(6);
        expect(stats.byRoute).toMatchObject({
          'openai.responses': 1,
          'openai.responses.retrieve': 1,
          'openai.responses.inputItems': 2,
          'openai.responses.delete': 1,
          'openai.responses.cancel': 1,
        });
        expect(stats.last['openai.responses.cancel']).toMatchObject({ url: `${RESPONSES}/${created.id}/cancel`, body: null });
        expect(stats.last['openai.responses.retrieve']).toMatchObject({ url: `${RESPONSES}/${created.id}?include[]=x`, body: null });
        expect(stats.last['openai.responses.inputItems']?.url).toBe(`${RESPONSES}/${created.id}/input_items`);
        expect(stats.last['openai.responses.delete']?.headers.authorization).toBe(OPENAI_AUTH.authorization);
      } finally {
        await other.close();
      }
    });

    it('matches the id strictly: other paths and methods stay unknown (404, not counted)', async () => {
      const created = await plain({ input: 'x' });
      const before = (await getStats(mock.base)).total;
      for (const [method, path] of [
        ['GET', `${RESPONSES}/`],
        ['GET', `${RESPONSES}/bad.id`],
        ['GET', `${RESPONSES}/resp%20x`],
        ['GET', `${RESPONSES}/${created.id}/input_items/extra`],
        ['GET', `${RESPONSES}/${created.id}/other`],
        ['DELETE', `${RESPONSES}/${created.id}/input_items`],
        ['PUT', `${RESPONSES}/${created.id}`],
        ['POST', `${RESPONSES}/${created.id}`],
        ['GET', `${RESPONSES}/${created.id}/cancel`],
        ['POST', `${RESPONSES}/${created.id}/cancel/extra`],
        ['GET', RESPONSES],
      ]) {
        const res = await fetch(`${mock.base}${path}`, { method, headers: OPENAI_AUTH });
        expect([method, path, res.status]).toEqual([method, path, 404]);
        expect((await readJson<OpenAIErrorBody>(res)).error.message).toBe(`Invalid URL (${method} ${path})`);
      }
      expect((await getStats(mock.base)).total).toBe(before);
      expect(await retrieve(created.id)).toEqual(created);
    });
  });

  describe('the store', () => {
    it('belongs to one mock server', async () => {
      const other = await startMock();
      try {
        const created = await plain({ input: 'mine' });
        const res = await fetch(`${other.base}${RESPONSES}/${created.id}`, { headers: OPENAI_AUTH });
        expect(res.status).toBe(404);
        await res.text();
        const continued = await postJson(other.base, RESPONSES, { model: 'm', input: 'x', previous_response_id: created.id }, OPENAI_AUTH);
        expect(continued.status).toBe(400);
        await continued.text();
      } finally {
        await other.close();
      }
    });

    it('keeps only the newest maxStoredResponses, evicting the oldest first', async () => {
      const small = await startMock({ maxStoredResponses: 3 });
      try {
        const createOn = async (body: Record<string, unknown>): Promise<ResponseObject> =>
          readJson<ResponseObject>(await postJson(small.base, RESPONSES, { model: 'm', ...body }, OPENAI_AUTH));
        const status = async (id: string): Promise<number> => {
          const res = await fetch(`${small.base}${RESPONSES}/${id}`, { headers: OPENAI_AUTH });
          await res.text();
          return res.status;
        };
        const ids: string[] = [];
        for (let i = 0; i < 5; i++) {
          ids.push((await createOn({ input: `n${i}` })).id);
          // Not stored, so it takes no place.
          await createOn({ input: 'unstored', store: false });
        }
        // Reading does not refresh a response: eviction goes by age.
        expect(await status(ids[2])).toBe(200);
        ids.push((await createOn({ input: 'n5' })).id);
        const statuses = await Promise.all(ids.map(status));
        expect(statuses).toEqual([404, 404, 404, 200, 200, 200]);
      } finally {
        await small.close();
      }
    });

    it('refuses a bound that is not a whole number', async () => {
      await expect(startMock({ maxStoredResponses: -1 })).rejects.toThrow(RangeError);
      await expect(startMock({ maxStoredResponses: 1.5 })).rejects.toThrow(RangeError);
    });
  });

  describe('through the official openai SDK', () => {
    const sdk = (): OpenAI => new OpenAI({ baseURL: `${mock.base}/v1`, apiKey: 'sk-mock-sdk', maxRetries: 0 });

    it('creates, retrieves, lists input items (across pages) and deletes', async () => {
      const client = sdk();
      const input = [
        { role: 'user' as const, content: 'one' },
        { role: 'assistant' as const, content: 'two' },
        { role: 'user' as const, content: 'three' },
      ];
      const created = await client.responses.create({ model: 'gpt-4o-mini', input, metadata: { run: 'sdk' } });
      expect(created.status).toBe('completed');
      expect(created.output_text).toBe('Hello from mock openai! You said: three');

      const retrieved = await client.responses.retrieve(created.id, { include: ['reasoning.encrypted_content'] });
      expect(retrieved.id).toBe(created.id);
      expect(retrieved.output_text).toBe(created.output_text);
      expect(retrieved.usage).toEqual(created.usage);
      expect(retrieved.metadata).toEqual({ run: 'sdk' });

      // limit 1: the SDK follows has_more with `after` = the last id, page by page.
      const texts: unknown[] = [];
      for await (const item of client.responses.inputItems.list(created.id, { limit: 1, order: 'asc' })) {
        expect(item.id).toMatch(/^msg_/);
        // The SDK's ResponseItem: a full message item, text in content parts.
        expect(item.type).toBe('message');
        if (item.type === 'message') texts.push(item.content.map((part) => ('text' in part ? part.text : '')).join(''));
      }
      expect(texts).toEqual(['one', 'two', 'three']);
      const page = await client.responses.inputItems.list(created.id);
      expect(page.data).toHaveLength(3);
      expect(page.has_more).toBe(false);

      // Typed `void` by the SDK, which still hands back the parsed deletion object.
      expect((await client.responses.delete(created.id)) as unknown).toEqual({ id: created.id, object: 'response', deleted: true });
      const gone = await client.responses.retrieve(created.id).catch((e: unknown) => e);
      expect(gone).toBeInstanceOf(NotFoundError);
      expect(gone).toMatchObject({ status: 404, type: 'invalid_request_error', param: null, code: null });
      expect((gone as NotFoundError).message).toContain(`Response with id '${created.id}' not found.`);
    });

    it('refuses to cancel a response made without background, as OpenAI does (400), and an unknown one (404)', async () => {
      const client = sdk();
      const created = await client.responses.create({ model: 'gpt-4o-mini', input: 'cancel via sdk' });
      const refused = await client.responses.cancel(created.id).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(BadRequestError);
      expect(refused).toMatchObject({ status: 400, type: 'invalid_request_error', param: null, code: null });
      expect(await client.responses.cancel('resp_lost').catch((e: unknown) => e)).toBeInstanceOf(NotFoundError);
    });

    it('streams, then retrieves the completed response; continues it; reports an unknown previous id', async () => {
      const client = sdk();
      const stream = await client.responses.create({ model: 'gpt-4o-mini', input: 'stream via sdk', stream: true });
      let completed: OpenAI.Responses.Response | undefined;
      for await (const event of stream) if (event.type === 'response.completed') completed = event.response;
      expect(completed?.status).toBe('completed');
      const retrieved = await client.responses.retrieve(completed!.id);
      expect(retrieved.status).toBe('completed');
      expect(retrieved.usage).toEqual(completed!.usage);

      const next = await client.responses.create({ model: 'gpt-4o-mini', input: 'go on', previous_response_id: retrieved.id });
      expect(next.previous_response_id).toBe(retrieved.id);

      const refused = await client.responses
        .create({ model: 'gpt-4o-mini', input: 'x', previous_response_id: 'resp_lost' })
        .catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(BadRequestError);
      expect(refused).toMatchObject({ status: 400, code: 'previous_response_not_found', param: 'previous_response_id' });
    });
  });
});
