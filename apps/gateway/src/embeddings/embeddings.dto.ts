import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsInt, IsOptional, IsString, MaxLength, Min, MinLength, ValidateBy, type ValidationOptions } from 'class-validator';

/** The largest token id taken: a tokenizer's ids are int32 (o200k's end near 200,000). */
const MAX_TOKEN_ID = 2 ** 31 - 1;
const isTokenId = (t: unknown): boolean => Number.isInteger(t) && (t as number) >= 0 && (t as number) <= MAX_TOKEN_ID;

/**
 * A string, a non-empty list of strings, a token array, or a non-empty list of token arrays (OpenAI's
 * `input`). A token id is a whole number 0–2^31−1: a negative one, or one past any tokenizer, is no
 * token and was passed on for the provider to refuse.
 */
function IsEmbeddingInput(options?: ValidationOptions): PropertyDecorator {
  const isTokens = (v: unknown): boolean => Array.isArray(v) && v.length > 0 && v.every(isTokenId);
  return ValidateBy(
    {
      name: 'isEmbeddingInput',
      validator: {
        validate: (v: unknown) =>
          (typeof v === 'string' && v.length > 0) ||
          (Array.isArray(v) &&
            v.length > 0 &&
            v.length <= 2048 &&
            (v.every((s) => typeof s === 'string' && s.length > 0) || isTokens(v) || v.every(isTokens))),
        defaultMessage: () =>
          'input must be a non-empty string, a list of up to 2048 non-empty strings, or token arrays (token ids are whole numbers 0-2147483647)',
      },
    },
    options,
  );
}

/** `POST /v1/embeddings` body (OpenAI's shape). */
export class EmbeddingsRequestDto {
  @ApiProperty({ example: 'text-embedding-3-small' }) @IsString() @MinLength(1) @MaxLength(256) model!: string;
  @ApiProperty({
    oneOf: [
      { type: 'string', minLength: 1 },
      { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1, maxItems: 2048 },
      {
        type: 'array',
        items: { type: 'integer', minimum: 0, maximum: 2147483647 },
        minItems: 1,
        maxItems: 2048,
        description: 'token ids (OpenAI models only)',
      },
      {
        type: 'array',
        items: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 2147483647 }, minItems: 1 },
        minItems: 1,
        maxItems: 2048,
        description: 'lists of token ids (OpenAI models only)',
      },
    ],
    example: 'The food was delicious',
  })
  @IsEmbeddingInput()
  input!: string | string[] | number[] | number[][];
  @ApiPropertyOptional({ enum: ['float', 'base64'] }) @IsOptional() @IsIn(['float', 'base64']) encoding_format?: 'float' | 'base64';
  @ApiPropertyOptional({ type: 'integer', minimum: 1 }) @IsOptional() @IsInt() @Min(1) dimensions?: number;
  @ApiPropertyOptional() @IsOptional() @IsString() user?: string;
}

class EmbeddingDto {
  @ApiProperty({ enum: ['embedding'], example: 'embedding' }) object!: 'embedding';
  @ApiProperty({ type: 'integer', example: 0, description: 'The position of its input' }) index!: number;
  @ApiProperty({
    oneOf: [
      { type: 'array', items: { type: 'number' } },
      { type: 'string', description: 'with encoding_format base64: the little-endian float32 values, base64-encoded' },
    ],
    example: [0.0023064255, -0.009327292, -0.0028842222],
  })
  embedding!: number[] | string;
}

class EmbeddingsUsageDto {
  @ApiProperty({ type: 'integer', example: 5 }) prompt_tokens!: number;
  @ApiProperty({ type: 'integer', example: 5 }) total_tokens!: number;
}

/** OpenAI's embeddings list, as keygate answers it for every provider. */
export class EmbeddingListDto {
  @ApiProperty({ enum: ['list'], example: 'list' }) object!: 'list';
  @ApiProperty({ type: [EmbeddingDto] }) data!: EmbeddingDto[];
  @ApiProperty({ example: 'text-embedding-3-small' }) model!: string;
  @ApiPropertyOptional({ type: EmbeddingsUsageDto }) usage?: EmbeddingsUsageDto;
}
