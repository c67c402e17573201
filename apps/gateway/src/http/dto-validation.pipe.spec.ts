import { GatewayError } from '@keygate/errors';
import { CreateBlockDto } from '../admin/admin.dto';
import { ChatCompletionRequestDto } from '../chat/chat-completion.dto';
import { DtoValidationPipe } from './dto-validation.pipe';

function refusal(body: unknown): GatewayError {
  try {
    new DtoValidationPipe().transform(Buffer.from(JSON.stringify(body)), { type: 'body', metatype: CreateBlockDto });
  } catch (error) {
    expect(error).toBeInstanceOf(GatewayError);
    return error as GatewayError;
  }
  throw new Error('expected a refusal');
}

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

  it('refuses an unknown field of a @StrictBody DTO, naming it', () => {
    const error = refusal({ product: 'demo', user_id: 'alice', reason: 'x' });
    expect(error.options.param).toBe('user_id');
    expect(error.message).toBe('user_id: unknown field');
  });

  it('passes unknown fields of an open DTO (OpenAI bodies) through untouched', () => {
    const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], service_tier: 'flex', store: false };
    expect(
      new DtoValidationPipe().transform(Buffer.from(JSON.stringify(body)), { type: 'body', metatype: ChatCompletionRequestDto }),
    ).toEqual(body);
  });
});
