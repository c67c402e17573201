import { GatewayError } from '@keygate/errors';
import { refusalOf } from '@keygate/errors/testing';
import { bodyCheck } from './testing/body-check';
import { CreateBlockDto } from '../admin/admin.dto';
import { ChatCompletionRequestDto } from '../chat/chat-completion.dto';
import {
  DtoValidationPipe,
  MAX_BODY_FIELDS,
  MAX_JSON_DEPTH,
  infiniteNumberPath,
  noteDeclaredCharset,
  scanJsonText,
} from './dto-validation.pipe';

const { refusal } = bodyCheck(CreateBlockDto);

describe('DtoValidationPipe', () => {
  it('names a wrong type before the range rules of the same field', () => {
    const error = refusal({ product: 'demo', reason: 'x', expires_in_seconds: '60' });
    expect(error.options.param).toBe('expires_in_seconds');
    expect(error.message).toMatch(/integer/);
  });

  it('names the range rule when the type is right', () => {
    expect(refusal({ product: 'demo', reason: 'x', expires_in_seconds: 1e17 }).message).toMatch(/greater than 315360000/);
  });

  it('hands back the plain object it validated', () => {
    const body = { product: 'demo', reason: 'x', expires_in_seconds: 60 };
    expect(new DtoValidationPipe().transform(Buffer.from(JSON.stringify(body)), { type: 'body', metatype: CreateBlockDto })).toEqual(body);
  });

  it('refuses a block whose user is null (only leaving user out blocks the whole product), and a reason with line breaks or bidi controls', () => {
    const nullUser = refusal({ product: 'demo', user: null, reason: 'x' });
    expect([nullUser.options.param, nullUser.message]).toEqual([
      'user',
      'user must be a string (leave user out to block the whole product)',
    ]);
    for (const reason of ['abuse\nALERT forged line', 'a\u202eb'])
      expect(refusal({ product: 'demo', user: 'mallory', reason }).options.param).toBe('reason');
    const body = { product: 'demo', reason: 'abuse report #123 — café 🚫' };
    expect(new DtoValidationPipe().transform(Buffer.from(JSON.stringify(body)), { type: 'body', metatype: CreateBlockDto })).toEqual(body);
  });

  it('refuses a block whose expiry is null (only leaving it out makes a block until deleted)', () => {
    const error = refusal({ product: 'demo', user: 'mallory', reason: 'x', expires_in_seconds: null });
    expect([error.options.param, error.message]).toEqual([
      'expires_in_seconds',
      'expires_in_seconds must be an integer number (leave it out for a block until deleted)',
    ]);
  });

  it.each(['toString', 'hasOwnProperty', 'constructor', 'valueOf'])(
    'refuses a @StrictBody field named like an Object.prototype member (%s), which the whitelist would find there',
    (key) => {
      const error = refusal(JSON.parse(`{"product": "demo", "reason": "x", "${key}": 1}`));
      expect([error.options.param, error.message]).toEqual([key, `${key}: unknown field`]);
    },
  );

  it('refuses an unknown field of a @StrictBody DTO, naming it', () => {
    const error = refusal({ product: 'demo', user_id: 'alice', reason: 'x' });
    expect(error.options.param).toBe('user_id');
    expect(error.message).toBe('user_id: unknown field');
  });

  it('names the place inside a field its message names (a tool declared twice), as OpenAI does', () => {
    const chatRefusal = (extra: Record<string, unknown>): GatewayError => {
      try {
        new DtoValidationPipe().transform(
          Buffer.from(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...extra })),
          {
            type: 'body',
            metatype: ChatCompletionRequestDto,
          },
        );
      } catch (error) {
        return error as GatewayError;
      }
      throw new Error('expected a refusal');
    };
    const fn = (name: string, parameters?: unknown): Record<string, unknown> => ({ type: 'function', function: { name, parameters } });
    const twice = chatRefusal({ tools: [fn('get'), fn('get')] });
    expect([twice.options.param, twice.message]).toEqual(['tools[1].function.name', 'tools[1].function.name: get is declared twice']);
    expect(chatRefusal({ tools: [fn('get', 'nope')] }).options.param).toBe('tools[0].function.parameters');
    // A message about the field as a whole names the field.
    expect(chatRefusal({ tools: [fn('get')], tool_choice: { type: 'function', function: { name: 'other' } } }).options.param).toBe(
      'tool_choice',
    );
  });

  describe('reads bodies as UTF-8 only', () => {
    const chat = (bytes: Buffer): unknown => new DtoValidationPipe().transform(bytes, { type: 'body', metatype: ChatCompletionRequestDto });
    const json = '{"model":"m","messages":[{"role":"user","content":"caf\u00e9 \u00fcber"}]}';

    it('refuses Latin-1 bytes (read as UTF-8 they would reach the model as U+FFFD), naming a declared charset', () => {
      const latin1 = Buffer.from(json, 'latin1');
      expect(refusalOf(() => chat(latin1))).toMatchObject({
        code: 'invalid_json',
        message: 'the request body must be JSON in UTF-8, and it is not valid UTF-8',
      });
      const declared = Buffer.from(json, 'latin1');
      noteDeclaredCharset(declared, 'application/json; charset="ISO-8859-1"');
      expect(refusalOf(() => chat(declared)).message).toBe(
        'the request body must be JSON in UTF-8, and it is not valid UTF-8 (its Content-Type declares charset=ISO-8859-1)',
      );
    });

    it('refuses UTF-16 and UTF-32, with or without a byte order mark, naming what they look like', () => {
      const utf16 = Buffer.from(json, 'utf16le');
      const utf32 = Buffer.alloc(json.length * 4);
      [...json].forEach((char, i) => utf32.writeUInt32LE(char.codePointAt(0) ?? 0, i * 4));
      for (const bytes of [utf16, Buffer.concat([Buffer.from([0xff, 0xfe]), utf16]), Buffer.from(utf16).swap16(), utf32]) {
        expect(refusalOf(() => chat(bytes))).toMatchObject({
          code: 'invalid_json',
          message: expect.stringMatching(/looks like UTF-16 or UTF-32$/),
        });
      }
    });

    it('takes UTF-8 whatever charset the Content-Type names when its bytes are ASCII, and with a UTF-8 byte order mark', () => {
      const utf8 = Buffer.from(json);
      expect(chat(utf8)).toMatchObject({ messages: [{ content: 'café über' }] });
      const ascii = Buffer.from('{"model":"m","messages":[{"role":"user","content":"hi"}]}');
      noteDeclaredCharset(ascii, 'application/json;charset=iso-8859-1');
      expect(chat(ascii)).toMatchObject({ model: 'm' });
      expect(chat(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), utf8]))).toMatchObject({ model: 'm' });
    });
  });

  it('refuses a body with more top-level fields than the limit (each is copied and passed on), and takes one at the limit', () => {
    const body = (fields: number): Record<string, unknown> => {
      const out: Record<string, unknown> = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] };
      for (let i = 2; i < fields; i++) out[`x${i}`] = 0;
      return out;
    };
    const pipe = new DtoValidationPipe();
    const meta = { type: 'body' as const, metatype: ChatCompletionRequestDto };
    expect(Object.keys(pipe.transform(Buffer.from(JSON.stringify(body(MAX_BODY_FIELDS))), meta) as object)).toHaveLength(MAX_BODY_FIELDS);
    const error = refusalOf(() => pipe.transform(Buffer.from(JSON.stringify(body(MAX_BODY_FIELDS + 1))), meta));
    expect(error).toMatchObject({ code: 'invalid_request', message: `the request body has more than ${MAX_BODY_FIELDS} fields` });
  });

  it('passes unknown fields of an open DTO (OpenAI bodies) through untouched', () => {
    const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], service_tier: 'flex', store: false };
    expect(
      new DtoValidationPipe().transform(Buffer.from(JSON.stringify(body)), { type: 'body', metatype: ChatCompletionRequestDto }),
    ).toEqual(body);
  });

  it('refuses a body nested deeper than the limit with 400 (it used to exhaust the stack: a 500)', () => {
    const deep = (levels: number): string => `{"model":"m","messages":[],"x":${'['.repeat(levels)}${']'.repeat(levels)}}`;
    const chat = (text: string): unknown =>
      new DtoValidationPipe().transform(Buffer.from(text), { type: 'body', metatype: ChatCompletionRequestDto });
    for (const levels of [5000, MAX_JSON_DEPTH]) {
      let error: unknown;
      try {
        chat(deep(levels));
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(GatewayError);
      expect(error).toMatchObject({
        code: 'invalid_request',
        message: expect.stringMatching(/nests arrays and objects more than 64 levels/),
      });
    }
    // The body itself is one level: 63 more fit.
    expect(scanJsonText(Buffer.from(deep(MAX_JSON_DEPTH - 1)), MAX_JSON_DEPTH).tooDeep).toBe(false);
  });

  it('does not count brackets inside strings, escaped quotes included', () => {
    const text = JSON.stringify({ a: '[[[[{{{{', b: 'say \\"[[[[\\" and \\\\', c: [[1]] });
    expect(scanJsonText(Buffer.from(text), 3).tooDeep).toBe(false);
    expect(scanJsonText(Buffer.from(text), 2).tooDeep).toBe(true);
    expect(scanJsonText(Buffer.from('{"unterminated'), 1).tooDeep).toBe(false);
  });

  it("refuses a number beyond a double's range anywhere in the body, naming where (it reached the provider as null)", () => {
    const chat = (text: string): unknown =>
      new DtoValidationPipe().transform(Buffer.from(text), { type: 'body', metatype: ChatCompletionRequestDto });
    const schema = '{"type":"object","properties":{"n":{"type":"number","maximum":1e309}}}';
    const body = `{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":${schema}}}]}`;
    const where = (text: string): [string, string | undefined] => {
      const error = refusalOf(() => chat(text));
      return [error.code, error.options.param];
    };
    expect(where(body)).toEqual(['invalid_request', 'tools[0].function.parameters.properties.n.maximum']);
    expect(where('{"model":"m","messages":[{"role":"user","content":"hi"}],"logit_bias":{"50256":-1e309}}')).toEqual([
      'invalid_request',
      'logit_bias.50256',
    ]);
    // An integer of 310 digits overflows without an exponent; small and long-but-finite numbers pass.
    expect(where(`{"model":"m","messages":[{"role":"user","content":"hi"}],"seed":1${'0'.repeat(309)}}`)).toEqual([
      'invalid_request',
      'seed',
    ]);
    expect(chat('{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1e-7,"x":1.5e300}')).toMatchObject({ x: 1.5e300 });
    // The path is the client's key names: echoed up to 256 characters, however long they are.
    const [, param] = where(`{"model":"m","messages":[{"role":"user","content":"hi"}],"${'k'.repeat(5000)}":1e999}`);
    expect(param).toBe(`${'k'.repeat(256)}…`);
  });

  it('flags only number literals that may overflow, outside strings', () => {
    expect(scanJsonText(Buffer.from('{"a":"1e309","b":-12.5,"c":1e-5,"d":true}'), 64).longNumber).toBe(false);
    expect(scanJsonText(Buffer.from('{"a":[1,2,1E+400]}'), 64).longNumber).toBe(true);
    expect(infiniteNumberPath({ a: [1, { b: -Infinity }] })).toBe('a[1].b');
    expect(infiniteNumberPath({ a: [1, { b: 1e308 }] })).toBeUndefined();
  });

  it('names a __proto__ key for what it is, not as invalid JSON', () => {
    const error = refusal(JSON.parse('{"product": "demo", "reason": "x", "__proto__": {"admin": true}}'));
    expect(error).toMatchObject({ code: 'invalid_request', message: expect.stringMatching(/__proto__ or constructor.prototype/) });
  });

  it('validates a body with a "constructor" key anywhere (class-transformer took it for a class: a 500) and hands it back as sent', () => {
    const pipe = new DtoValidationPipe();
    const chat = (extra: Record<string, unknown>): unknown =>
      pipe.transform(Buffer.from(JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], ...extra })), {
        type: 'body',
        metatype: ChatCompletionRequestDto,
      });
    // A tool whose schema has a property named `constructor`, and open fields holding one: valid.
    const tools = [
      { type: 'function', function: { name: 'build', parameters: { type: 'object', properties: { constructor: { type: 'string' } } } } },
    ];
    expect(chat({ tools, metadata: { constructor: 'x' } })).toEqual({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hi' }],
      tools,
      metadata: { constructor: 'x' },
    });
    // A wrong type that carries one is named like any other wrong type.
    const error = refusalOf(() => chat({ model: { constructor: 1 } }));
    expect([error.code, error.options.param]).toEqual(['invalid_request', 'model']);
    expect(() => chat({ messages: [{ role: 'user', content: [{ type: 'text', text: 'hi', constructor: 1 }] }] })).not.toThrow();
  });

  it('validates a body whose constructor key is spelt with escaped letters like any other', () => {
    const pipe = new DtoValidationPipe();
    const body = '{"model":{"\\u0063onstructor":1},"messages":[{"role":"user","content":"hi","\\u0063onstructor":{}}]}';
    const refused = refusalOf(() => pipe.transform(Buffer.from(body), { type: 'body', metatype: ChatCompletionRequestDto }));
    expect([refused.code, refused.options.param]).toEqual(['invalid_request', 'model']);
  });
});
