import { GatewayError } from '@keygate/errors';
import { RESPONSES_STREAM } from './responses-errors';

describe('RESPONSES_STREAM', () => {
  it('ends nothing after the upstream’s last event (the Responses API sends no [DONE])', () => {
    expect(RESPONSES_STREAM.done).toBe('');
  });

  it('writes a failure as the API’s named error event, with the contract’s error object beside its fields', () => {
    const text = RESPONSES_STREAM.errorEvent(new GatewayError('upstream_error', 'upstream openai failed mid-stream'), {
      requestId: 'req-1',
      eventsSent: 7,
      // The upstream's numbering (it need not start at 0 or count by one): the next after its last.
      nextSequence: 12,
    });
    expect(text.startsWith('event: error\ndata: ')).toBe(true);
    expect(text.endsWith('\n\n')).toBe(true);
    const data = JSON.parse(text.slice('event: error\ndata: '.length)) as Record<string, unknown>;
    expect(data).toEqual({
      type: 'error',
      sequence_number: 12,
      code: 'upstream_error',
      message: 'upstream openai failed mid-stream',
      param: null,
      error: { code: 'upstream_error', message: 'upstream openai failed mid-stream', param: null, type: expect.any(String) as unknown },
    });
  });
});
