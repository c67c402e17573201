import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsInt, IsOptional, IsString, MaxLength, Min, MinLength, ValidateBy, type ValidationOptions } from 'class-validator';

/** A string, a non-empty list of strings, a token array, or a non-empty list of token arrays (OpenAI's `input`). */
function IsEmbeddingInput(options?: ValidationOptions): PropertyDecorator {
  const isTokens = (v: unknown): boolean => Array.isArray(v) && v.length > 0 && v.every((t) => Number.isInteger(t));
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
        defaultMessage: () => 'input must be a non-empty string, a list of up to 2048 non-empty strings, or token arrays',
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
      { type: 'array', items: { type: 'integer' }, minItems: 1, maxItems: 2048, description: 'token ids (OpenAI models only)' },
      {
        type: 'array',
        items: { type: 'array', items: { type: 'integer' }, minItems: 1 },
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
