import { GatewayError } from '@keygate/errors';
import { DtoValidationPipe } from '../http/dto-validation.pipe';
import { ResponsesRequestDto } from './responses.dto';

const pipe = new DtoValidationPipe();
const validate = (body: unknown): unknown =>
  pipe.transform(Buffer.from(JSON.stringify(body)), { type: 'body', metatype: ResponsesRequestDto });
const base = { model: 'gpt-4o-mini', input: 'hi' };

function refusal(body: unknown): GatewayError {
  try {
    validate(body);
  } catch (error) {
    expect(error).toBeInstanceOf(GatewayError);
    return error as GatewayError;
  }
  throw new Error('expected a refusal');
}

describe('ResponsesRequestDto', () => {
  it.each([1, 15])("refuses max_output_tokens %i, below OpenAI's minimum of 16, naming the parameter and the minimum", (value) => {
    const error = refusal({ ...base, max_output_tokens: value });
    expect(error).toMatchObject({ code: 'invalid_request', status: 400, options: { param: 'max_output_tokens' } });
    expect(error.message).toBe("max_output_tokens must be at least 16 (the Responses API's minimum)");
  });

  it('names a wrong type before the minimum', () => {
    const error = refusal({ ...base, max_output_tokens: 'ten' });
    expect(error.options.param).toBe('max_output_tokens');
    expect(error.message).toMatch(/integer/);
  });

  it.each([16, 4096, null])('takes max_output_tokens %p', (value) => {
    expect(validate({ ...base, max_output_tokens: value })).toEqual({ ...base, max_output_tokens: value });
  });
});
