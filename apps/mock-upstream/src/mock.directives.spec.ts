import { parseDirectiveHeaders, parseDirectiveText, resolveDirectives, stripDirectives } from './mock.directives';

describe('mock directives', () => {
  it('parses every key from a body token', () => {
    const d = parseDirectiveText(
      'hello [mock delay_ms=10 status=503 retry_after=7 stall_after=2 cut_after=3 chunk_delay_ms=4 chunks=9 error_event_after=1 safety=1 finish=length tool=get_weather tools=2 no_usage=1 no_done=1 bad_usage=1 failed=1 redacted_thinking=1 prompt_tokens=300000 cached_tokens=5 cache_write_tokens=6 cache_write_1h_tokens=2 reasoning_tokens=7 answer_chars=5000 eol=cr]',
    );
    expect(d).toEqual({
      delayMs: 10,
      status: 503,
      retryAfter: 7,
      stallAfter: 2,
      cutAfter: 3,
      chunkDelayMs: 4,
      chunks: 9,
      errorEventAfter: 1,
      safety: true,
      finish: 'length',
      tool: 'get_weather',
      tools: 2,
      noUsage: true,
      noDone: true,
      badUsage: true,
      failed: true,
      redactedThinking: true,
      promptTokens: 300_000,
      cachedTokens: 5,
      cacheWriteTokens: 6,
      cacheWrite1hTokens: 2,
      reasoningTokens: 7,
      answerChars: 5000,
      eol: 'cr',
    });
  });

  it('merges several tokens, later ones winning', () => {
    expect(parseDirectiveText('[mock status=500] text [mock status=429 chunks=2]')).toEqual({ status: 429, chunks: 2 });
  });

  it('ignores unknown keys, junk values and out-of-range numbers', () => {
    expect(parseDirectiveText('[mock nope=1 status=abc chunks=0 status=99 delay_ms=-5 tool=bad/name eol=lfcr answer_chars=0]')).toEqual({});
  });

  it('returns nothing for text without a token (fast path)', () => {
    expect(parseDirectiveText('just a prompt with [brackets]')).toEqual({});
  });

  it('reads x-mock-* headers with _ or - spelling', () => {
    expect(
      parseDirectiveHeaders({
        'x-mock-status': '429',
        'x-mock-delay-ms': '5',
        'x-mock-chunk_delay_ms': '3',
        'x-mock-tool': 'f',
        'x-mock-redacted-thinking': 'true',
      }),
    ).toEqual({
      status: 429,
      delayMs: 5,
      chunkDelayMs: 3,
      tool: 'f',
      redactedThinking: true,
    });
  });

  it('lets the body token override headers', () => {
    expect(resolveDirectives({ 'x-mock-status': '429', 'x-mock-chunks': '2' }, '[mock status=500]')).toEqual({ status: 500, chunks: 2 });
  });

  it('strips tokens from the echoed text', () => {
    expect(stripDirectives('  hi [mock status=500] there  ')).toBe('hi there');
    expect(stripDirectives('[mock chunks=2]')).toBe('');
    expect(stripDirectives(' plain ')).toBe('plain');
  });
});
