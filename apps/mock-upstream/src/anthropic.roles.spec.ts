import { messageRolesProblem } from './anthropic.roles';
import type { AnthropicErrorBody, AnthropicMessage } from './anthropic.types';
import { ANTHROPIC_AUTH, postJson, readJson, startMock, type RunningMock } from './mock.testing';

const user = (content: unknown): Record<string, unknown> => ({ role: 'user', content });
const assistant = (content: unknown): Record<string, unknown> => ({ role: 'assistant', content });
const system = (content: unknown): Record<string, unknown> => ({ role: 'system', content });
const OPUS_48 = 'claude-opus-4-8';

describe('messageRolesProblem', () => {
  it.each([
    ['after the last user message', [user('hi'), system('be brief')]],
    ['followed by an assistant turn', [user('hi'), system([{ type: 'text', text: 'be brief' }]), assistant('ok'), user('go on')]],
    [
      'after a server tool use',
      [user('hi'), assistant([{ type: 'server_tool_use', id: 's', name: 'web_search', input: {} }]), system('x')],
    ],
  ])('takes a system message %s on Opus 4.8', (_where, messages) => {
    expect(messageRolesProblem(OPUS_48, messages)).toBeUndefined();
    expect(messageRolesProblem('claude-sonnet-5', messages)).toBeUndefined();
  });

  it.each([
    ['on a model before Opus 4.8', 'claude-sonnet-4-5', [user('hi'), system('x')], /not supported on claude-sonnet-4-5/],
    ['first', OPUS_48, [system('x'), user('hi')], /cannot be the first/],
    ['beside another', OPUS_48, [user('hi'), system('x'), system('y')], /consecutive/],
    ['after an assistant turn', OPUS_48, [user('hi'), assistant('ok'), system('x')], /must follow a user message/],
    ['followed by a user turn', OPUS_48, [user('hi'), system('x'), user('again')], /must be the last message/],
    ['with an image', OPUS_48, [user('hi'), system([{ type: 'image', source: {} }])], /text blocks only/],
  ])('refuses a system message %s', (_what, model, messages, problem) => {
    expect(messageRolesProblem(model, messages)).toMatch(problem);
  });

  it('refuses a role Anthropic does not have', () => {
    expect(messageRolesProblem(OPUS_48, [{ role: 'tool', content: 'x' }])).toMatch(/messages\.0\.role/);
  });
});

describe('Anthropic mid-conversation system messages', () => {
  let mock: RunningMock;
  beforeAll(async () => {
    mock = await startMock();
  });
  afterAll(() => mock.close());

  it('answers the user turn a trailing system message follows, tool directive included', async () => {
    const res = await postJson(
      mock.base,
      '/v1/messages',
      {
        model: OPUS_48,
        max_tokens: 256,
        tools: [{ name: 'Bash', input_schema: { type: 'object', properties: {} } }],
        messages: [user('list files [mock tool=Bash]'), system('Agents available: none')],
      },
      ANTHROPIC_AUTH,
    );
    expect(res.status).toBe(200);
    const message = await readJson<AnthropicMessage>(res);
    expect(message.stop_reason).toBe('tool_use');
    expect(message.content[0]).toMatchObject({ type: 'tool_use', name: 'Bash' });
  });

  it('refuses one on an older model, in Anthropic’s error shape, on count_tokens too', async () => {
    for (const path of ['/v1/messages', '/v1/messages/count_tokens']) {
      const res = await postJson(
        mock.base,
        path,
        { model: 'claude-sonnet-4-5', max_tokens: 16, messages: [user('hi'), system('x')] },
        ANTHROPIC_AUTH,
      );
      expect(res.status).toBe(400);
      const body = await readJson<AnthropicErrorBody>(res);
      expect(body.error).toMatchObject({ type: 'invalid_request_error' });
      expect(body.error.message).toMatch(/not supported on claude-sonnet-4-5/);
    }
  });
});
