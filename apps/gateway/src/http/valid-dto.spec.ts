import { validateSync } from 'class-validator';
import { CreateBlockDto } from '../admin/admin.dto';
import { ChatCompletionRequestDto } from '../chat/chat-completion.dto';
import { EmbeddingsRequestDto } from '../embeddings/embeddings.dto';
import { GenerateContentRequestDto } from '../gemini/gemini.dto';
import { MessagesRequestDto } from '../messages/messages.dto';
import { ResponsesRequestDto } from '../responses/responses.dto';
import { instantiateDto } from './nested-dto';
import { isValidDto } from './valid-dto';
import { memoizeValidationMetadata } from './validation-metadata-cache';

type DtoClass = new () => object;

/** What class-validator says of a body, with the options the body pipe gives it. */
function classValidatorPasses(type: DtoClass, body: object, strict: boolean): boolean {
  const options = { validationError: { target: false, value: false }, ...(strict ? { whitelist: true, forbidNonWhitelisted: true } : {}) };
  return validateSync(instantiateDto(type, body), options).length === 0;
}

const user = (content: unknown) => ({ role: 'user', content });
const chat = (extra: Record<string, unknown>) => ({ model: 'gpt-4o-mini', messages: [user('hi')], ...extra });
const fn = (name: string) => ({ type: 'function', function: { name, parameters: { type: 'object' } } });

const CASES: Array<[string, DtoClass, object, boolean]> = [
  // Chat: what clients send, then each kind of rule broken.
  ['chat: plain', ChatCompletionRequestDto, chat({}), true],
  ['chat: bench body', ChatCompletionRequestDto, chat({ max_tokens: 64, stream: true }), true],
  ['chat: stream_options with stream', ChatCompletionRequestDto, chat({ stream: true, stream_options: { include_usage: true } }), true],
  ['chat: stream_options without stream', ChatCompletionRequestDto, chat({ stream_options: { include_usage: true } }), false],
  [
    'chat: stream_options.include_usage not boolean',
    ChatCompletionRequestDto,
    chat({ stream: true, stream_options: { include_usage: 1 } }),
    false,
  ],
  ['chat: stream_options not an object', ChatCompletionRequestDto, chat({ stream: true, stream_options: 'yes' }), false],
  ['chat: fields keygate does not model', ChatCompletionRequestDto, chat({ reasoning_effort: 'low', modalities: ['text'] }), true],
  [
    'chat: all sampling fields',
    ChatCompletionRequestDto,
    chat({ temperature: 0.5, top_p: 1, n: 2, seed: 3, stop: ['x'], user: 'u', metadata: { a: 'b' } }),
    true,
  ],
  ['chat: null optional field', ChatCompletionRequestDto, chat({ temperature: null }), true],
  ['chat: model missing', ChatCompletionRequestDto, { messages: [user('hi')] }, false],
  ['chat: model empty', ChatCompletionRequestDto, chat({ model: '' }), false],
  ['chat: messages empty', ChatCompletionRequestDto, chat({ messages: [] }), false],
  ['chat: messages not an array', ChatCompletionRequestDto, chat({ messages: { role: 'user' } }), false],
  ['chat: a message not an object', ChatCompletionRequestDto, chat({ messages: ['hi'] }), false],
  ['chat: a message null', ChatCompletionRequestDto, chat({ messages: [null] }), false],
  ['chat: a role unknown', ChatCompletionRequestDto, chat({ messages: [{ role: 'robot', content: 'x' }] }), false],
  ['chat: content parts', ChatCompletionRequestDto, chat({ messages: [user([{ type: 'text', text: 'x' }])] }), true],
  ['chat: content a number', ChatCompletionRequestDto, chat({ messages: [user(3)] }), false],
  ['chat: content parts not objects', ChatCompletionRequestDto, chat({ messages: [user(['x'])] }), false],
  [
    'chat: assistant tool calls, null content',
    ChatCompletionRequestDto,
    chat({ messages: [user('x'), { role: 'assistant', content: null, tool_calls: [{ id: 'a' }] }] }),
    true,
  ],
  ['chat: tool message without its id', ChatCompletionRequestDto, chat({ messages: [{ role: 'tool', content: 'x' }] }), false],
  ['chat: max_tokens 0', ChatCompletionRequestDto, chat({ max_tokens: 0 }), false],
  ['chat: max_tokens a fraction', ChatCompletionRequestDto, chat({ max_tokens: 1.5 }), false],
  ['chat: top_p over 1', ChatCompletionRequestDto, chat({ top_p: 2 }), false],
  ['chat: stop of numbers', ChatCompletionRequestDto, chat({ stop: [1] }), false],
  ['chat: stop a string', ChatCompletionRequestDto, chat({ stop: 'x' }), true],
  ['chat: tools', ChatCompletionRequestDto, chat({ tools: [fn('a')], tool_choice: 'auto' }), true],
  ['chat: tools with a bad name', ChatCompletionRequestDto, chat({ tools: [fn('a b')] }), false],
  [
    'chat: tool_choice naming no tool',
    ChatCompletionRequestDto,
    chat({ tools: [fn('a')], tool_choice: { type: 'function', function: { name: 'b' } } }),
    false,
  ],
  ['chat: response_format unknown type', ChatCompletionRequestDto, chat({ response_format: { type: 'xml' } }), false],
  // Other routes' bodies.
  ['messages: plain', MessagesRequestDto, { model: 'claude-3-5-haiku', max_tokens: 10, messages: [user('hi')] }, true],
  ['messages: no max_tokens (capped later)', MessagesRequestDto, { model: 'claude-3-5-haiku', messages: [user('hi')] }, true],
  ['messages: content parts not objects', MessagesRequestDto, { model: 'claude-3-5-haiku', messages: [user([1])] }, false],
  [
    'messages: a bad role',
    MessagesRequestDto,
    { model: 'claude-3-5-haiku', max_tokens: 10, messages: [{ role: 'tool', content: 'x' }] },
    false,
  ],
  ['responses: plain', ResponsesRequestDto, { model: 'gpt-4o-mini', input: 'hi' }, true],
  ['responses: input a number', ResponsesRequestDto, { model: 'gpt-4o-mini', input: 3 }, false],
  ['embeddings: plain', EmbeddingsRequestDto, { model: 'text-embedding-3-small', input: 'hi' }, true],
  ['embeddings: no input', EmbeddingsRequestDto, { model: 'text-embedding-3-small' }, false],
  ['gemini: plain', GenerateContentRequestDto, { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }, true],
  ['gemini: contents not an array', GenerateContentRequestDto, { contents: 'hi' }, false],
];

// The admin API's body refuses fields it does not declare.
const STRICT_CASES: Array<[string, object, boolean]> = [
  ['block: product', { product: 'demo', reason: 'abuse' }, true],
  ['block: user and expiry', { product: 'demo', user: 'mallory', reason: 'abuse', expires_in_seconds: 60 }, true],
  ['block: unknown field', { product: 'demo', reason: 'abuse', user_id: 'mallory' }, false],
  [
    'block: toString (class-validator finds it on Object.prototype, a function of no arguments)',
    { product: 'demo', reason: 'abuse', toString: 1 },
    false,
  ],
  // Passed by class-validator's whitelist as it is (the pipe refuses such a key before it asks).
  [
    'block: hasOwnProperty (found on Object.prototype, a function of one argument)',
    { product: 'demo', reason: 'abuse', hasOwnProperty: 1 },
    true,
  ],
  ['block: expiry 0', { product: 'demo', reason: 'abuse', expires_in_seconds: 0 }, false],
  ['block: no reason', { product: 'demo' }, false],
];

describe('isValidDto', () => {
  beforeAll(() => memoizeValidationMetadata());

  it.each(CASES)('%s: as class-validator says', (_name, type, body, valid) => {
    expect(classValidatorPasses(type, body, false)).toBe(valid);
    expect(isValidDto(instantiateDto(type, body), false)).toBe(valid);
  });

  it.each(STRICT_CASES)('%s (strict): as class-validator says', (_name, body, valid) => {
    expect(classValidatorPasses(CreateBlockDto, body, true)).toBe(valid);
    expect(isValidDto(instantiateDto(CreateBlockDto, body), true)).toBe(valid);
  });

  it('refuses an object of a class with no rules, as class-validator does by default', () => {
    class Bare {}
    expect(validateSync(new Bare()).length).toBeGreaterThan(0);
    expect(isValidDto(new Bare(), false)).toBe(false);
  });

  it('answers the same when asked again (its sorted rules are kept per class)', () => {
    const body = chat({ max_tokens: 0 });
    expect(isValidDto(instantiateDto(ChatCompletionRequestDto, body), false)).toBe(false);
    expect(isValidDto(instantiateDto(ChatCompletionRequestDto, chat({})), false)).toBe(true);
    expect(isValidDto(instantiateDto(ChatCompletionRequestDto, body), false)).toBe(false);
  });
});
