/**
 * What each streaming route's `text/event-stream` answer looks like, for the OpenAPI document
 * (Swagger UI shows it beside the JSON example). Shortened to one short text answer, byte for byte
 * in each API's own event format; `stream-examples.spec.ts` parses them as the SDKs do.
 */

/** Server-sent events, one `data:` line per event (and `event:` before it when named), blank line after each. */
function sse(events: ReadonlyArray<{ event?: string; data: unknown }>): string {
  return events
    .map(({ event, data }) => `${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`)
    .join('');
}

// With include_usage every chunk carries `usage: null`, and a last one with no choices the counts.
const chunk = (delta: Record<string, unknown>, finish: string | null): Record<string, unknown> => ({
  id: 'chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG',
  object: 'chat.completion.chunk',
  created: 1733500000,
  model: 'gpt-4o-mini-2024-07-18',
  choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  usage: null,
});

/** `POST /v1/chat/completions` with `stream: true` (and `stream_options.include_usage`: the last chunk before `[DONE]`). */
export const CHAT_STREAM_EXAMPLE = sse([
  { data: chunk({ role: 'assistant', content: '' }, null) },
  { data: chunk({ content: 'Hello! How can I help?' }, null) },
  { data: chunk({}, 'stop') },
  {
    data: {
      id: 'chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG',
      object: 'chat.completion.chunk',
      created: 1733500000,
      model: 'gpt-4o-mini-2024-07-18',
      choices: [],
      usage: { prompt_tokens: 9, completion_tokens: 7, total_tokens: 16 },
    },
  },
  { data: '[DONE]' },
]);

const MESSAGE_ID = 'msg_01XFDUDYJgAACzvnptvVoYEL';

/** `POST /v1/messages` with `stream: true`: Anthropic's events, as Anthropic sends them. */
export const MESSAGES_STREAM_EXAMPLE = sse([
  {
    event: 'message_start',
    data: {
      type: 'message_start',
      message: {
        id: MESSAGE_ID,
        type: 'message',
        role: 'assistant',
        model: 'claude-sonnet-4-5-20250929',
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 12, output_tokens: 1 },
      },
    },
  },
  { event: 'content_block_start', data: { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } } },
  { event: 'ping', data: { type: 'ping' } },
  {
    event: 'content_block_delta',
    data: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hello! How can I help?' } },
  },
  { event: 'content_block_stop', data: { type: 'content_block_stop', index: 0 } },
  {
    event: 'message_delta',
    data: { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 9 } },
  },
  { event: 'message_stop', data: { type: 'message_stop' } },
]);

const RESPONSE_ID = 'resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b';
const ITEM_ID = 'msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b';
const response = (status: string, output: unknown[], usage: unknown): Record<string, unknown> => ({
  id: RESPONSE_ID,
  object: 'response',
  created_at: 1741476542,
  status,
  model: 'gpt-4o-mini-2024-07-18',
  output,
  usage,
});
const message = (status: string, content: unknown[]): Record<string, unknown> => ({
  id: ITEM_ID,
  type: 'message',
  status,
  role: 'assistant',
  content,
});
const TEXT = 'Hello! How can I help?';
const part = (text: string): Record<string, unknown> => ({ type: 'output_text', text, annotations: [] });

/** `POST /v1/responses` with `stream: true`: the Responses API's events, numbered by `sequence_number`. */
export const RESPONSES_STREAM_EXAMPLE = sse(
  (
    [
      ['response.created', { response: response('in_progress', [], null) }],
      ['response.in_progress', { response: response('in_progress', [], null) }],
      ['response.output_item.added', { output_index: 0, item: message('in_progress', []) }],
      ['response.content_part.added', { item_id: ITEM_ID, output_index: 0, content_index: 0, part: part('') }],
      ['response.output_text.delta', { item_id: ITEM_ID, output_index: 0, content_index: 0, delta: TEXT }],
      ['response.output_text.done', { item_id: ITEM_ID, output_index: 0, content_index: 0, text: TEXT }],
      ['response.content_part.done', { item_id: ITEM_ID, output_index: 0, content_index: 0, part: part(TEXT) }],
      ['response.output_item.done', { output_index: 0, item: message('completed', [part(TEXT)]) }],
      [
        'response.completed',
        {
          response: response('completed', [message('completed', [part(TEXT)])], {
            input_tokens: 9,
            input_tokens_details: { cached_tokens: 0 },
            output_tokens: 7,
            output_tokens_details: { reasoning_tokens: 0 },
            total_tokens: 16,
          }),
        },
      ],
    ] as const
  ).map(([type, fields], sequence) => ({ event: type, data: { type, sequence_number: sequence, ...fields } })),
);

/** `:streamGenerateContent?alt=sse`: Google's GenerateContentResponse events; the last carries the finish reason and usage. */
export const GEMINI_STREAM_EXAMPLE = sse([
  {
    data: {
      candidates: [{ content: { parts: [{ text: 'Hello!' }], role: 'model' }, index: 0 }],
      usageMetadata: { promptTokenCount: 5, totalTokenCount: 5 },
      modelVersion: 'gemini-2.5-flash',
      responseId: 'mSRVaMOTL4ymz7IPq5nQ2A8',
    },
  },
  {
    data: {
      candidates: [{ content: { parts: [{ text: ' How can I help?' }], role: 'model' }, finishReason: 'STOP', index: 0 }],
      usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 7, totalTokenCount: 12 },
      modelVersion: 'gemini-2.5-flash',
      responseId: 'mSRVaMOTL4ymz7IPq5nQ2A8',
    },
  },
]);
