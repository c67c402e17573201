import { refusalOf } from '@keygate/errors/testing';
import { checkBodyModel, checkGenerateContentParts, checkParts, continuesGeneration } from './gemini-body';

const turn = (parts: unknown): Record<string, unknown> => ({ role: 'user', parts });

describe('checkParts', () => {
  it('takes parts as a list (empty too), and a Content without parts or with null parts', () => {
    for (const content of [{ parts: [{ text: 'x' }] }, { parts: [] }, {}, { parts: null }])
      expect(() => checkParts(content, 'content')).not.toThrow();
  });

  it.each([
    ['one Part', { text: 'x' }],
    ['a string', 'x'],
    ['a number', 7],
  ])('refuses parts that are %s, naming the field', (_case, parts) => {
    const error = refusalOf(() => checkParts({ parts }, 'content'));
    expect(error).toMatchObject({ code: 'invalid_request', options: { param: 'content.parts' } });
    expect(error.message).toMatch(/^content\.parts must be a list/);
  });
});

describe('checkGenerateContentParts', () => {
  it('takes contents and system instructions whose parts are lists', () => {
    expect(() =>
      checkGenerateContentParts({
        contents: [turn([{ text: 'x' }]), turn([{ inlineData: { mimeType: 'image/png', data: 'AA==' } }])],
        systemInstruction: { parts: [{ text: 'Be brief.' }] },
        system_instruction: { parts: [{ text: 'Be brief.' }] },
      }),
    ).not.toThrow();
  });

  it('refuses a turn whose parts are one Part, naming the turn', () => {
    const inline = { inlineData: { mimeType: 'text/plain', data: 'aGVsbG8=' } };
    expect(refusalOf(() => checkGenerateContentParts({ contents: [turn([{ text: 'x' }]), turn(inline)] }))).toMatchObject({
      code: 'invalid_request',
      options: { param: 'contents[1].parts' },
    });
  });

  it.each(['systemInstruction', 'system_instruction'])('refuses a %s whose parts are one Part', (field) => {
    expect(
      refusalOf(() => checkGenerateContentParts({ contents: [turn([{ text: 'x' }])], [field]: { parts: { text: 'y' } } })),
    ).toMatchObject({
      code: 'invalid_request',
      options: { param: `${field}.parts` },
    });
  });
});

describe('checkBodyModel', () => {
  it('takes a body naming the path’s model as Google’s resource name, as the bare id, or not at all', () => {
    for (const body of [{ model: 'models/gemini-2.5-flash' }, { model: 'gemini-2.5-flash' }, {}, { model: null }])
      expect(() => checkBodyModel(body, 'gemini-2.5-flash')).not.toThrow();
  });

  it('refuses a body naming another model, naming both', () => {
    const error = refusalOf(() => checkBodyModel({ model: 'models/gemini-2.5-pro' }, 'gemini-2.5-flash'));
    expect(error).toMatchObject({ code: 'invalid_request', options: { param: 'model' } });
    expect(error.message).toMatch(/models\/gemini-2\.5-pro.*models\/gemini-2\.5-flash/);
  });

  it('names the request within a body, and refuses a model that is not a string', () => {
    expect(refusalOf(() => checkBodyModel({ model: 7 }, 'gemini-2.5-flash', 'generateContentRequest.'))).toMatchObject({
      options: { param: 'generateContentRequest.model' },
    });
  });
});

describe('continuesGeneration', () => {
  it('tells a long decode’s next hop by its token, in either spelling', () => {
    expect(continuesGeneration({ contents: [], continuationToken: 'dG9rZW4=' })).toBe(true);
    expect(continuesGeneration({ contents: [], continuation_token: 'dG9rZW4=' })).toBe(true);
  });

  it('takes a body without one, or with a null one, as a new answer', () => {
    expect(continuesGeneration({ contents: [] })).toBe(false);
    expect(continuesGeneration({ contents: [], continuationToken: null })).toBe(false);
  });
});
