import { parseUpstreamObject } from './upstream-body.util';
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
