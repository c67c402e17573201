import { Reflector } from '@nestjs/core';
import { GeminiController } from '../gemini/gemini.controller';
import { MessagesController } from '../messages/messages.controller';
import { ResponsesController } from '../responses/responses.controller';

// The @nestjs/throttler metadata keys (its SkipThrottle writes them; the package exports no constant).
const skipped = (target: object, throttler: string): unknown => new Reflector().get(`THROTTLER:SKIP${throttler}`, target as () => void);

describe('the token-count routes', () => {
  it.each([
    ['POST /v1/messages/count_tokens', MessagesController.prototype.countTokens],
    ['POST /v1/responses/input_tokens', ResponsesController.prototype.inputTokens],
    ['POST /v1beta/models/{model}:countTokens', GeminiController.prototype.countTokens],
  ])('%s: paced by the per-second limits (a call on the product key), outside the daily caps (nothing generated)', (_route, handler) => {
    expect([skipped(handler, 'product_qps'), skipped(handler, 'user_qps')]).toEqual([undefined, undefined]);
    expect([skipped(handler, 'product_daily'), skipped(handler, 'user_daily')]).toEqual([true, true]);
  });
});
