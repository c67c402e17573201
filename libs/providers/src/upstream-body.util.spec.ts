import { Readable } from 'node:stream';
import type { UpstreamResponse } from './upstream.client';
import { parseUpstreamObject, sseEvents } from './upstream-body.util';
import { UpstreamError } from './upstream.error';

function failure(text: string): unknown {
  try {
    parseUpstreamObject(text, 'anthropic', 'response');
  } catch (error) {
    return error;
  }
  throw new Error(`expected ${JSON.stringify(text)} to be refused`);
}

describe('parseUpstreamObject', () => {
  it('returns a JSON object', () => {
    expect(parseUpstreamObject<{ id: string }>('{"id":"msg_1"}', 'anthropic', 'response')).toEqual({ id: 'msg_1' });
  });

  it.each(['null', '42', '"text"', 'true', '[]', '[{"id":1}]'])('refuses %s as a protocol error (502), not a TypeError later', (text) => {
    const error = failure(text);
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ kind: 'protocol', provider: 'anthropic', message: 'response is not a JSON object' });
    expect((error as UpstreamError).toGatewayError().status).toBe(502);
  });

  it('refuses a body that is not JSON', () => {
    expect(failure('<html>bad gateway</html>')).toMatchObject({ kind: 'protocol', message: 'response is not JSON' });
  });
});

describe('sseEvents', () => {
  const response = (chunks: string[]): UpstreamResponse =>
    ({
      statusCode: 200,
      headers: {},
      body: Readable.from(chunks.map((c) => Buffer.from(c))),
      signal: { signal: new AbortController().signal, clientAborted: () => false, timedOut: () => false, dispose: () => undefined },
    }) as unknown as UpstreamResponse;

  async function read(res: UpstreamResponse, max: number): Promise<{ data: string[]; error?: unknown }> {
    const data: string[] = [];
    try {
      for await (const event of sseEvents(res, 'openai', max)) data.push(event.data);
      return { data };
    } catch (error) {
      return { data, error };
    }
  }

  it('reads events split across chunks', async () => {
    const { data, error } = await read(response(['data: {"a"', ':1}\n', '\ndata: [DONE]\n\n']), 64);
    expect(error).toBeUndefined();
    expect(data).toEqual(['{"a":1}', '[DONE]']);
  });

  it('ends the stream with a protocol error when an event grows past the limit without completing (no endless buffer)', async () => {
    const endless = Array.from({ length: 10 }, () => 'x'.repeat(20));
    const { data, error } = await read(response(['data: {"a":1}\n\n', 'data: ', ...endless]), 64);
    expect(data).toEqual(['{"a":1}']);
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ kind: 'protocol', provider: 'openai' });
  });
});
