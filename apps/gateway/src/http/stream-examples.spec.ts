import { Stream as AnthropicStream } from '@anthropic-ai/sdk/core/streaming';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { Stream as OpenAiStream } from 'openai/core/streaming';
import { CHAT_STREAM_EXAMPLE, GEMINI_STREAM_EXAMPLE, MESSAGES_STREAM_EXAMPLE, RESPONSES_STREAM_EXAMPLE } from './stream-examples';

/** The events of an example as an SSE parser reads them, each name and data. */
function events(text: string): EventSourceMessage[] {
  const found: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (event) => found.push(event) });
  parser.feed(text);
  return found;
}

/** What an SDK's own stream reader yields for the example, as it would read the gateway's answer. */
async function read<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of stream) items.push(item);
  return items;
}

/** The fields the checks read; the SDKs' own types are unions of every event. */
interface Event {
  type: string;
  object?: string;
  sequence_number?: number;
  choices?: Array<{ delta?: { content?: string } }>;
  [field: string]: unknown;
}

const answer = (text: string): Response => new Response(text, { headers: { 'content-type': 'text/event-stream' } });

describe('the OpenAPI stream examples', () => {
  it('chat: chunks the openai SDK reads to the end, text and usage included, then [DONE]', async () => {
    const chunks = await read(OpenAiStream.fromSSEResponse<Event>(answer(CHAT_STREAM_EXAMPLE), new AbortController()));
    expect(chunks.map((c) => c.object)).toEqual(Array(4).fill('chat.completion.chunk'));
    expect(chunks.map((c) => c.choices?.[0]?.delta?.content ?? '').join('')).toBe('Hello! How can I help?');
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 9, completion_tokens: 7, total_tokens: 16 } });
    expect(events(CHAT_STREAM_EXAMPLE).at(-1)?.data).toBe('[DONE]');
  });

  it("messages: Anthropic's events, each named by its type, that the Anthropic SDK reads", async () => {
    const read_ = await read(AnthropicStream.fromSSEResponse<Event>(answer(MESSAGES_STREAM_EXAMPLE), new AbortController()));
    expect(read_.map((e) => e.type)).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    for (const event of events(MESSAGES_STREAM_EXAMPLE)) expect((JSON.parse(event.data) as { type: string }).type).toBe(event.event);
  });

  it('responses: events named by their type and numbered from 0, ending in response.completed with the usage', async () => {
    const read_ = await read(OpenAiStream.fromSSEResponse<Event>(answer(RESPONSES_STREAM_EXAMPLE), new AbortController()));
    expect(read_.map((e) => e.sequence_number)).toEqual(read_.map((_, i) => i));
    expect(read_.at(-1)).toMatchObject({ type: 'response.completed', response: { status: 'completed', usage: { total_tokens: 16 } } });
    for (const event of events(RESPONSES_STREAM_EXAMPLE)) expect((JSON.parse(event.data) as { type: string }).type).toBe(event.event);
  });

  it('gemini: unnamed events, each a GenerateContentResponse; the last carries the finish reason and the usage', () => {
    const found = events(GEMINI_STREAM_EXAMPLE).map((e) => ({ name: e.event, data: JSON.parse(e.data) as Event }));
    expect(found.map((e) => e.name)).toEqual([undefined, undefined]);
    expect(found.at(-1)?.data).toMatchObject({
      candidates: [{ finishReason: 'STOP' }],
      usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 7, totalTokenCount: 12 },
    });
  });
});
