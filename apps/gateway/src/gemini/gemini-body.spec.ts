import { refusalOf } from '@keygate/errors/testing';
import { checkGenerateContentParts, checkParts } from './gemini-body';

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
