import { chunkHead, chunkText, type Json } from './translate.util';

describe('chunkText', () => {
  const deltas: Json[] = [
    { role: 'assistant', content: '', refusal: null },
    { content: 'Hello "world"\n\u2028 \ud83d\ude00 </script>' },
    { tool_calls: [{ index: 1, id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a":[1,2]}' } }] },
    { reasoning_content: '\\ back\u0000slash' },
    {},
  ];
  it.each([
    ['chatcmpl-abc', 1765000000, 'claude-3-5-sonnet-20241022'],
    ['chatcmpl-"quoted"\\', 0, 'gemini/2.5 "flash"'],
    [undefined, 12, 'model'],
  ])('writes what JSON.stringify writes for the whole chunk (id %p)', (id, created, model) => {
    const head = chunkHead(id, created, model);
    for (const delta of deltas)
      for (const index of [0, 3])
        for (const finish of [null, 'stop', 'tool_calls'])
          for (const nullUsage of [false, true]) {
            const chunk: Json = {
              id,
              object: 'chat.completion.chunk',
              created,
              model,
              choices: [{ index, delta, logprobs: null, finish_reason: finish }],
            };
            if (nullUsage) chunk.usage = null;
            expect(chunkText(head, index, delta, finish, nullUsage)).toBe(JSON.stringify(chunk));
          }
  });
});
