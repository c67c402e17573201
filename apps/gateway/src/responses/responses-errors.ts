import { SSE_KEEP_ALIVE, type RelayDialect } from '../chat/sse-relay';

/**
 * The Responses API's stream: its events pass with their names; it ends with its own
 * `response.completed` (no `[DONE]`). A failure after the first byte is its `error` event (its
 * `sequence_number` next after the events sent), with
 * the contract's error object beside the event's own fields, so the OpenAI SDKs raise it as an APIError.
 */
export const RESPONSES_STREAM: RelayDialect = {
  done: '',
  // Numbered next after the events before it, as every event of the stream is.
  errorEvent: (error, { nextSequence }) => {
    const body = error.toBody();
    const event = {
      type: 'error',
      sequence_number: nextSequence,
      code: body.error.code,
      message: body.error.message,
      param: body.error.param,
      ...body,
    };
    return `event: error\ndata: ${JSON.stringify(event)}\n\n`;
  },
  keepAlive: SSE_KEEP_ALIVE,
};
