import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  UNCOUNTED_PDF_BYTES_PER_PAGE,
  countTokens,
  estimateEmbedContentTokens,
  estimateResponsesPromptTokens,
  GEMINI_PDF_PAGE_TOKENS,
  PDF_PAGE_TOKENS,
  estimateGenerateContentPromptTokens,
  estimateMessagesPromptTokens,
  promptCacheWrite,
  estimatePromptTokens,
  estimatePredictionTokens,
  type MergeableRanks,
  NON_TEXT_PART_TOKENS,
  parseTiktokenRanks,
  readO200kRanks,
  TokenTally,
} from './token-estimate';

const question = 'What is the weather in Paris today?';

describe('estimatePromptTokens', () => {
  it('counts each message text with the o200k tokenizer plus OpenAI’s framing (3 per message, 3 to prime the reply)', () => {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: question },
    ];
    expect(estimatePromptTokens({ messages })).toBe(3 + (3 + countTokens('Be brief.')) + (3 + countTokens(question)));
  });

  it('counts tool and function definitions and a response_format schema, which providers bill as prompt', () => {
    const messages = [{ role: 'user', content: question }];
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Current weather for a city',
          parameters: { type: 'object', properties: { city: { type: 'string' } } },
        },
      },
    ];
    const response_format = {
      type: 'json_schema',
      json_schema: { name: 'w', schema: { type: 'object', properties: { celsius: { type: 'number' } } } },
    };
    const base = estimatePromptTokens({ messages });
    expect(estimatePromptTokens({ messages, tools })).toBe(base + countTokens(JSON.stringify(tools)));
    expect(estimatePromptTokens({ messages, tools, response_format })).toBe(
      base + countTokens(JSON.stringify(tools)) + countTokens(JSON.stringify(response_format)),
    );
    expect(estimatePromptTokens({ messages, functions: [{ name: 'f', parameters: {} }] })).toBeGreaterThan(base);
  });

  it('reserves a flat amount per image, audio or file part, and counts text and refusal parts as text', () => {
    const messages = [
      {
        role: 'user',
        content: [
          { type: 'text', text: question },
          { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
          { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } },
        ],
      },
      { role: 'assistant', content: [{ type: 'refusal', refusal: 'I cannot help with that.' }] },
    ];
    expect(estimatePromptTokens({ messages })).toBe(
      3 + (3 + countTokens(question) + 2 * NON_TEXT_PART_TOKENS) + (3 + countTokens('I cannot help with that.')),
    );
  });

  it('counts a text file attached as a data URL as the text it holds (a Gemini model gets it as inline text)', () => {
    const csv = Array.from({ length: 2000 }, (_, i) => `${i},Paris,Sunny`).join('\n');
    const file = (url: string) => ({ type: 'file', file: { filename: 'f', file_data: url } });
    const estimate = estimatePromptTokens({
      model: 'm',
      messages: [
        {
          role: 'user',
          content: [
            file(`data:text/csv;charset=utf-8;base64,${Buffer.from(csv).toString('base64')}`),
            file('data:application/pdf;base64,AAAA'),
            file('data:text/plain,not-base64'),
          ],
        },
      ],
    });
    // A PDF whose pages cannot be counted is reserved by its size: one page here.
    expect(estimate).toBe(3 + 3 + new TokenTally().count(csv) + PDF_PAGE_TOKENS + NON_TEXT_PART_TOKENS);
    expect(estimate).toBeGreaterThan(5 * NON_TEXT_PART_TOKENS);
  });

  it('counts the tool calls of the history', () => {
    const tool_calls = [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }];
    const messages = [{ role: 'assistant', content: null, tool_calls }];
    expect(estimatePromptTokens({ messages })).toBe(3 + 3 + countTokens(JSON.stringify(tool_calls)));
  });
});

describe('estimatePredictionTokens', () => {
  const predicted = 'const answer = 42;\n'.repeat(200);

  it('counts a prediction’s content, a text or text parts, with the o200k tokenizer (OpenAI bills what the answer leaves out)', () => {
    expect(estimatePredictionTokens({ prediction: { type: 'content', content: predicted } })).toBe(countTokens(predicted));
    const content = [
      { type: 'text', text: predicted },
      { type: 'text', text: question },
    ];
    expect(estimatePredictionTokens({ prediction: { type: 'content', content } })).toBe(countTokens(predicted) + countTokens(question));
  });

  it('counts nothing without a prediction, and a shape it does not know as its JSON', () => {
    expect(estimatePredictionTokens({})).toBe(0);
    expect(estimatePredictionTokens({ prediction: null })).toBe(0);
    const odd = { type: 'content', content: { text: predicted } };
    expect(estimatePredictionTokens({ prediction: odd })).toBe(countTokens(JSON.stringify(odd)));
  });
});

describe('estimateGenerateContentPromptTokens', () => {
  it('counts a Gemini request: system instruction, part text, function calls and responses, tools; a flat amount per inline or file part', () => {
    const tools = [{ functionDeclarations: [{ name: 'get_weather' }] }];
    const call = { name: 'get_weather', args: { city: 'Paris' } };
    const response = { name: 'get_weather', response: { sky: 'Sunny' } };
    const estimate = estimateGenerateContentPromptTokens({
      systemInstruction: { parts: [{ text: 'Be brief.' }] },
      contents: [
        { role: 'user', parts: [{ text: question }, { inlineData: { mimeType: 'image/png', data: 'AAAA' } }] },
        { role: 'model', parts: [{ functionCall: call }] },
        { role: 'user', parts: [{ functionResponse: response }, { fileData: { fileUri: 'gs://x' } }] },
      ],
      tools,
    });
    const expected =
      3 +
      countTokens('Be brief.') +
      3 * 3 +
      countTokens(question) +
      countTokens(JSON.stringify(call)) +
      countTokens(JSON.stringify(response)) +
      2 * NON_TEXT_PART_TOKENS +
      countTokens(JSON.stringify(tools));
    expect(estimate).toBe(expected);
    expect(estimateGenerateContentPromptTokens({ contents: 'nonsense' })).toBe(3);
  });

  it('counts an inline text/* file as the text it holds, a PDF whose pages cannot be counted as one page by its size', () => {
    const csv = Array.from({ length: 2000 }, (_, i) => `${i},Paris,Sunny`).join('\n');
    const estimate = estimateGenerateContentPromptTokens({
      contents: [
        {
          role: 'user',
          parts: [
            { inlineData: { mimeType: 'text/csv', data: Buffer.from(csv).toString('base64') } },
            { inlineData: { mimeType: 'application/pdf', data: 'AAAA' } },
            { text: question },
          ],
        },
      ],
    });
    const tally = new TokenTally();
    expect(estimate).toBe(3 + 3 + tally.count(csv) + GEMINI_PDF_PAGE_TOKENS + tally.count(question));
    expect(estimate).toBeGreaterThan(5 * NON_TEXT_PART_TOKENS);
  });
});

describe('estimateGenerateContentPromptTokens, snake_case', () => {
  it('counts the answer’s schema in either form and either spelling (responseSchema, responseJsonSchema, generation_config.response_schema)', () => {
    const schema = {
      type: 'OBJECT',
      properties: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`field_${i}`, { type: 'STRING' }])),
    };
    const contents = [{ role: 'user', parts: [{ text: question }] }];
    const bare = estimateGenerateContentPromptTokens({ contents });
    const schemaTokens = countTokens(JSON.stringify(schema));
    expect(schemaTokens).toBeGreaterThan(1000);
    for (const config of [
      { generationConfig: { responseMimeType: 'application/json', responseSchema: schema } },
      { generationConfig: { responseJsonSchema: schema } },
      { generation_config: { response_schema: schema } },
      { generation_config: { response_json_schema: schema } },
    ])
      expect(estimateGenerateContentPromptTokens({ contents, ...config })).toBe(bare + schemaTokens);
    expect(
      estimateGenerateContentPromptTokens({
        contents,
        generationConfig: { responseSchema: schema },
        generation_config: { response_schema: schema },
      }),
    ).toBe(bare + 2 * schemaTokens);
  });

  it('reads the snake_case spellings Google’s parser takes as it reads the camelCase ones (system_instruction, inline_data, mime_type, function_call)', () => {
    const book = Buffer.from(Array.from({ length: 2000 }, (_, i) => `line ${i}`).join('\n')).toString('base64');
    const pdf = readFileSync(join(__dirname, 'testing', 'pdf', 'seven-pages.pdf')).toString('base64');
    const call = { name: 'get_weather', args: { city: 'Paris' } };
    const camel = estimateGenerateContentPromptTokens({
      systemInstruction: { parts: [{ text: 'Be brief. '.repeat(500) }] },
      contents: [
        {
          role: 'user',
          parts: [{ inlineData: { mimeType: 'text/plain', data: book } }, { inlineData: { mimeType: 'application/pdf', data: pdf } }],
        },
        { role: 'model', parts: [{ functionCall: call }] },
        { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { sky: 'Sunny' } } }] },
      ],
    });
    const snake = estimateGenerateContentPromptTokens({
      system_instruction: { parts: [{ text: 'Be brief. '.repeat(500) }] },
      contents: [
        {
          role: 'user',
          parts: [{ inline_data: { mime_type: 'text/plain', data: book } }, { inline_data: { mime_type: 'application/pdf', data: pdf } }],
        },
        { role: 'model', parts: [{ function_call: call }] },
        { role: 'user', parts: [{ function_response: { name: 'get_weather', response: { sky: 'Sunny' } } }] },
      ],
    });
    expect(snake).toBe(camel);
    expect(camel).toBeGreaterThan(countTokens('Be brief. '.repeat(500)) + 7 * GEMINI_PDF_PAGE_TOKENS);
  });

  it('counts both spellings where a body carries both, so a second one does not slip past the estimate', () => {
    const long = 'Be brief. '.repeat(500);
    const text = Buffer.from(long).toString('base64');
    expect(
      estimateGenerateContentPromptTokens({
        systemInstruction: { parts: [] },
        system_instruction: { parts: [{ text: long }] },
        contents: [{ role: 'user', parts: [{ inlineData: { mimeType: 'image/png', mime_type: 'text/plain', data: text } }] }],
      }),
    ).toBe(3 + 3 + 2 * countTokens(long));
  });

  it('counts generated code and its result in the history as their JSON (a run’s output can be long), not at the flat amount', () => {
    const output = 'row\n'.repeat(5000);
    const estimate = estimateGenerateContentPromptTokens({
      contents: [
        {
          role: 'model',
          parts: [
            { executableCode: { language: 'PYTHON', code: 'print(1)' } },
            { code_execution_result: { outcome: 'OUTCOME_OK', output } },
          ],
        },
      ],
    });
    expect(estimate).toBe(
      3 +
        3 +
        countTokens(JSON.stringify({ language: 'PYTHON', code: 'print(1)' })) +
        countTokens(JSON.stringify({ outcome: 'OUTCOME_OK', output })),
    );
    expect(estimate).toBeGreaterThan(NON_TEXT_PART_TOKENS);
  });
});

describe('estimateEmbedContentTokens', () => {
  it('counts an embedContent body: its title and its parts’ text, a flat amount per other part', () => {
    const body = { content: { parts: [{ text: question }, { inlineData: { mimeType: 'image/png', data: 'AAAA' } }] }, title: 'Weather' };
    expect(estimateEmbedContentTokens(body, false)).toBe(countTokens(question) + NON_TEXT_PART_TOKENS + countTokens('Weather'));
  });

  it('counts every request of a batch, and nothing of what is not a request', () => {
    const body = { requests: [{ content: { parts: [{ text: question }] } }, { content: { parts: [{ text: 'Sunny' }] } }, 'junk'] };
    expect(estimateEmbedContentTokens(body, true)).toBe(countTokens(question) + countTokens('Sunny'));
    expect(estimateEmbedContentTokens({ requests: 'nonsense' }, true)).toBe(0);
    expect(estimateEmbedContentTokens(body, false)).toBe(0);
  });
});

describe('estimateMessagesPromptTokens', () => {
  it('counts a structured output’s schema, GA (output_config.format) and beta (output_format) alike: Anthropic bills it as prompt', () => {
    const schema = {
      type: 'object',
      properties: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`field_${i}`, { type: 'string' }])),
    };
    const messages = [{ role: 'user', content: question }];
    const bare = estimateMessagesPromptTokens({ messages });
    const format = { type: 'json_schema', schema };
    const schemaTokens = countTokens(JSON.stringify(format));
    expect(schemaTokens).toBeGreaterThan(1000);
    expect(estimateMessagesPromptTokens({ messages, output_config: { effort: 'low', format } })).toBe(bare + schemaTokens);
    expect(estimateMessagesPromptTokens({ messages, output_format: format })).toBe(bare + schemaTokens);
    expect(estimateMessagesPromptTokens({ messages, output_config: 'nonsense' })).toBe(bare);
  });

  it('counts an Anthropic request: system, message text, tool inputs and results, thinking, tools; a flat amount per image or document of unknown source', () => {
    const tools = [{ name: 'get_weather', input_schema: { type: 'object' } }];
    const estimate = estimateMessagesPromptTokens({
      system: [{ type: 'text', text: 'Be brief.' }],
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: question },
            { type: 'image', source: { type: 'base64', data: 'AAAA' } },
          ],
        },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'Look it up.' },
            { type: 'tool_use', id: 't1', name: 'get_weather', input: { city: 'Paris' } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 't1', content: 'Sunny' },
            { type: 'document', source: {} },
          ],
        },
      ],
      tools,
    });
    const text = ['Be brief.', question, 'Look it up.', '{"city":"Paris"}', 'Sunny', JSON.stringify(tools)];
    expect(estimate).toBe(3 + 3 * 3 + text.reduce((sum, t) => sum + countTokens(t), 0) + 2 * NON_TEXT_PART_TOKENS);
  });

  it('counts a plain-text or custom-content document, and a search result, as the text they hold; a PDF at the flat amount', () => {
    // A text file the Vercel AI SDK attaches is such a document: Anthropic bills its text, however long.
    const book = Array.from({ length: 3000 }, (_, i) => `line ${i} of the book`).join('\n');
    const estimate = estimateMessagesPromptTokens({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'document', title: 'Book', context: 'Chapter 1', source: { type: 'text', media_type: 'text/plain', data: book } },
            { type: 'document', source: { type: 'content', content: [{ type: 'text', text: question }] } },
            { type: 'document', source: { type: 'content', content: 'Sunny' } },
            { type: 'search_result', source: 'https://example.com', title: 'Weather', content: [{ type: 'text', text: 'Rain' }] },
            { type: 'document', title: 'Scan', source: { type: 'url', url: 'https://example.com/a.pdf' } },
          ],
        },
      ],
    });
    // Counted in this order within the request's one budget (the book is longer than it).
    const tally = new TokenTally();
    const text = ['Book', 'Chapter 1', book, question, 'Sunny', 'Weather', 'https://example.com', 'Rain', 'Scan'];
    expect(estimate).toBe(3 + 3 + text.reduce((sum, t) => sum + tally.count(t), 0) + NON_TEXT_PART_TOKENS);
    expect(estimate).toBeGreaterThan(10 * NON_TEXT_PART_TOKENS);
  });

  it('counts a string system prompt and string contents, and skips what is not a message', () => {
    expect(estimateMessagesPromptTokens({ system: 'Be brief.', messages: [{ role: 'user', content: question }, 'junk'] })).toBe(
      3 + countTokens('Be brief.') + 3 + countTokens(question) + 3,
    );
  });
});

describe('PDFs sent inline are reserved by their pages', () => {
  // Seven pages, their page objects in a compressed object stream (see pdf-pages.spec.ts).
  const pdf = readFileSync(join(__dirname, 'testing', 'pdf', 'seven-pages-object-streams.pdf')).toString('base64');
  const unreadable = Buffer.from('not a PDF at all').toString('base64');

  it('on chat, a file part with a data:application/pdf URL', () => {
    const file = (url: string) => ({ type: 'file', file: { filename: 'report.pdf', file_data: url } });
    const messages = [
      { role: 'user', content: [file(`data:application/pdf;base64,${pdf}`), file(`data:application/pdf;base64,${unreadable}`)] },
    ];
    expect(estimatePromptTokens({ messages })).toBe(3 + 3 + 7 * PDF_PAGE_TOKENS + PDF_PAGE_TOKENS);
  });

  it('reserves a PDF whose pages cannot be counted (encrypted, or written to hide them) by its size', () => {
    const hidden = Buffer.alloc(5 * UNCOUNTED_PDF_BYTES_PER_PAGE + 1, 'x').toString('base64');
    const messages = [
      { role: 'user', content: [{ type: 'file', file: { filename: 'a.pdf', file_data: `data:application/pdf;base64,${hidden}` } }] },
    ];
    expect(estimatePromptTokens({ messages })).toBe(3 + 3 + 6 * PDF_PAGE_TOKENS);
  });

  it('on /v1/messages, a base64 document block (one named by URL is not in the request: the flat amount)', () => {
    const document = (source: Record<string, unknown>) => ({ type: 'document', source });
    const estimate = estimateMessagesPromptTokens({
      messages: [
        {
          role: 'user',
          content: [
            document({ type: 'base64', media_type: 'application/pdf', data: pdf }),
            document({ type: 'url', url: 'https://example.com/a.pdf' }),
          ],
        },
      ],
    });
    expect(estimate).toBe(3 + 3 + 7 * PDF_PAGE_TOKENS + NON_TEXT_PART_TOKENS);
  });

  it('on /v1/responses, an input_file part (a text file as its text)', () => {
    const csv = 'city,sky\nParis,Sunny';
    const estimate = estimateResponsesPromptTokens({
      input: [
        {
          role: 'user',
          content: [
            { type: 'input_file', filename: 'a.pdf', file_data: `data:application/pdf;base64,${pdf}` },
            { type: 'input_file', filename: 'a.csv', file_data: `data:text/csv;base64,${Buffer.from(csv).toString('base64')}` },
            { type: 'input_file', file_id: 'file-abc' },
          ],
        },
      ],
    });
    expect(estimate).toBe(3 + 3 + 7 * PDF_PAGE_TOKENS + countTokens(csv) + NON_TEXT_PART_TOKENS);
  });

  it('on Gemini’s API, inline application/pdf data, at Gemini’s rate a page', () => {
    const estimate = estimateGenerateContentPromptTokens({
      contents: [{ role: 'user', parts: [{ inlineData: { mimeType: 'application/pdf', data: pdf } }] }],
    });
    expect(estimate).toBe(3 + 3 + 7 * GEMINI_PDF_PAGE_TOKENS);
  });
});

describe('promptCacheWrite', () => {
  const text = (t: string, cache?: Record<string, unknown>) => ({ type: 'text', text: t, ...(cache ? { cache_control: cache } : {}) });

  it('is undefined for a request that asks for no cache write', () => {
    expect(promptCacheWrite({ system: 'Be brief.', messages: [{ role: 'user', content: [text('hi')] }] })).toBeUndefined();
    // A text that merely names the field is no cache write.
    expect(promptCacheWrite({ messages: [{ role: 'user', content: 'set "cache_control": {"ttl": "1h"}' }] })).toBeUndefined();
  });

  it('is 5m for an ephemeral cache_control anywhere: system, tools, a message block, a nested tool result, the request itself', () => {
    const ephemeral = { type: 'ephemeral' };
    expect(promptCacheWrite({ system: [text('Be brief.', ephemeral)], messages: [] })).toBe('5m');
    expect(promptCacheWrite({ tools: [{ name: 'f', input_schema: { type: 'object' }, cache_control: ephemeral }], messages: [] })).toBe(
      '5m',
    );
    expect(promptCacheWrite({ messages: [{ role: 'user', content: [text('a'), text('b', { type: 'ephemeral', ttl: '5m' })] }] })).toBe(
      '5m',
    );
    const toolResult = { type: 'tool_result', tool_use_id: 't1', content: [text('42', ephemeral)] };
    expect(promptCacheWrite({ messages: [{ role: 'user', content: [toolResult] }] })).toBe('5m');
    expect(promptCacheWrite({ cache_control: ephemeral, messages: [] } as Record<string, unknown>)).toBe('5m');
  });

  it('is 1h when any cache_control asks for an hour, whatever else asks for 5 minutes', () => {
    const messages = [{ role: 'user', content: [text('a', { type: 'ephemeral' }), text('b', { type: 'ephemeral', ttl: '1h' })] }];
    expect(promptCacheWrite({ system: [text('s', { type: 'ephemeral' })], messages })).toBe('1h');
  });
});

describe('TokenTally', () => {
  // The library itself, as the reference for what one piece costs.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const library = require('gpt-tokenizer') as { countTokens(text: string, options?: { disallowedSpecial: Set<string> }): number };

  it('counts ordinary text exactly as the tokenizer does', () => {
    const text = `${question} ${'The quick brown fox jumps over the lazy dog. '.repeat(50)}`;
    expect(new TokenTally().count(text)).toBe(library.countTokens(text));
  });

  it('counts special tokens in a caller’s text as ordinary text, never throwing (as OpenAI reads a prompt)', () => {
    for (const text of ['a <|endoftext|> b', 'x<|endofprompt|>', 'see <|fim_prefix|> and <|im_start|>system']) {
      expect(new TokenTally().count(text)).toBe(library.countTokens(text, { disallowedSpecial: new Set() }));
    }
    // More than one token: the text of the marker, not one special token.
    expect(countTokens('<|endoftext|>')).toBeGreaterThan(1);
    expect(estimatePromptTokens({ messages: [{ role: 'user', content: 'the <|endoftext|> marker' }] })).toBeGreaterThan(6);
  });

  it('counts a run without breaks (no spaces, as in CJK text) in pieces, never whole: BPE is quadratic in a run', () => {
    const run = 'y'.repeat(640);
    expect(new TokenTally().count(run)).toBe(10 * library.countTokens('y'.repeat(64)));
    const cjk = '这是一个测试句子没有空格'.repeat(16); // 192 characters, one run
    const pieces = [cjk.slice(0, 64), cjk.slice(64, 128), cjk.slice(128)];
    expect(new TokenTally().count(`Translate: ${cjk}`)).toBe(
      pieces.reduce((n, p) => n + library.countTokens(p), 0) + library.countTokens('Translate: '),
    );
  });

  it('never cuts a run between the two halves of a surrogate pair', () => {
    const run = `a${'😀'.repeat(100)}`; // index 64 falls inside a pair
    const pieces = [run.slice(0, 65), run.slice(65, 129), run.slice(129, 193), run.slice(193)];
    for (const p of pieces) expect(p).not.toMatch(/^[\udc00-\udfff]|[\ud800-\udbff]$/);
    expect(new TokenTally().count(run)).toBe(pieces.reduce((n, p) => n + library.countTokens(p), 0));
  });

  it('past its budget of characters, estimates at the tokens per character measured so far', () => {
    const tally = new TokenTally(128);
    const first = tally.count('y'.repeat(128)); // two pieces, both tokenized: the budget is spent
    expect(first).toBe(2 * library.countTokens('y'.repeat(64)));
    // 6 400 characters more, none tokenized: the measured ratio stands in.
    expect(tally.count('z'.repeat(6_400))).toBe(100 * Math.ceil((64 * first) / 128));
    expect(tally.count('hello')).toBe(Math.ceil((5 * first) / 128));
  });

  it('tokenizes what fits of a text longer than the budget, cut after a space, and estimates the rest', () => {
    const head = 'word '.repeat(200); // 1 000 characters, one token each 5
    const tail = '1 2 3 4 '.repeat(500); // 4 000 characters, denser
    const measured = library.countTokens(head);
    expect(new TokenTally(1_000).count(head + tail)).toBe(measured + Math.ceil((4_000 * measured) / 1_000));
  });

  it('gives one request one budget: estimatePromptTokens of many long messages stays near the exact count', () => {
    const content = 'word '.repeat(20_000); // 100 000 characters, ordinary text
    const exact = library.countTokens(content);
    const estimate = estimatePromptTokens({ messages: [{ role: 'user', content }] }) - 6;
    expect(Math.abs(estimate - exact) / exact).toBeLessThan(0.05);
  });
});

describe('readO200kRanks', () => {
  it('reads the same table as gpt-tokenizer’s own module, entry for entry (texts, byte tokens and BOM-led tokens)', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const packaged = (require('gpt-tokenizer/bpeRanks/o200k_base') as { default: MergeableRanks }).default;
    const read = readO200kRanks();
    expect(read).toHaveLength(packaged.length);
    const differing = packaged.map((_, rank) => rank).filter((rank) => JSON.stringify(read[rank]) !== JSON.stringify(packaged[rank]));
    expect(differing).toEqual([]);
    // The table has both kinds, so the comparison covers both.
    expect(read.filter((entry) => Array.isArray(entry)).length).toBeGreaterThan(1000);
    expect(read[5574]).toEqual([0xef, 0xbb, 0xbf]);
  });

  it('reads text tokens, byte tokens and BOM-led tokens of a .tiktoken file (base64 and rank per line)', () => {
    const line = (bytes: number[], rank: number) => `${Buffer.from(bytes).toString('base64')} ${rank}`;
    const file = [line([0x68, 0x69], 1), line([0xff], 0), line([0xef, 0xbb, 0xbf, 0x61], 2)].join('\n') + '\n';
    expect(parseTiktokenRanks(file)).toEqual([[0xff], 'hi', [0xef, 0xbb, 0xbf, 0x61]]);
  });

  it.each([
    ['a line without a rank', 'aGk=\n', /no rank/],
    ['a rank that is not a number', 'aGk= x\n', /bad rank/],
    ['a rank given twice', 'aGk= 0\nYQ== 0\n', /appears twice/],
    ['a hole in the ranks', 'aGk= 0\nYQ== 2\n', /0\.\.n-1/],
  ])('refuses a file with %s', (_, file, message) => {
    expect(() => parseTiktokenRanks(file)).toThrow(message);
  });

  it('counts like gpt-tokenizer’s packaged o200k encoder', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const packaged = require('gpt-tokenizer') as { countTokens(text: string): number };
    for (const text of [question, '\uFEFFusing System;', 'naïve café – 東京タワー 🚀', ' \t\n  x', 'a'.repeat(63)]) {
      expect(countTokens(text)).toBe(packaged.countTokens(text));
    }
  });
});
