import { bodyCheck } from '../http/testing/body-check';
import { EmbeddingsRequestDto } from './embeddings.dto';

const { validate, refusal } = bodyCheck(EmbeddingsRequestDto);

describe('EmbeddingsRequestDto input', () => {
  it.each([
    ['a text', 'hello'],
    ['texts', ['a', 'b']],
    ['a token array', [0, 1, 199_999]],
    ['token arrays', [[1, 2], [2_147_483_647]]],
  ])('takes %s', (_what, input) => {
    expect(() => validate({ model: 'text-embedding-3-small', input })).not.toThrow();
  });

  it.each([
    ['a negative token id', [1, -1]],
    ['a negative token id in a list of token arrays', [[1], [-5]]],
    ['a token id past int32', [2 ** 31]],
    ['a token id of 1e10', [[1e10]]],
    ['a fractional token id', [1.5]],
  ])('refuses %s (400, before any upstream call)', (_what, input) => {
    const error = refusal({ model: 'text-embedding-3-small', input });
    expect(error.status).toBe(400);
    expect(error.options.param).toBe('input');
    expect(error.message).toMatch(/token ids are whole numbers 0-2147483647/);
  });
});
