import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayNotEmpty, IsArray, IsObject, IsOptional } from 'class-validator';

const CONTENTS = 'contents must be an array of Content objects ({role, parts})';

/**
 * `POST /v1beta/models/{model}:generateContent` (and `:streamGenerateContent`) body: Gemini's
 * GenerateContentRequest. Fields not listed here (`safetySettings`, `toolConfig`, `cachedContent`, …)
 * are passed on to Google unchanged.
 */
export class GenerateContentRequestDto {
  @ApiProperty({
    type: 'array',
    items: { type: 'object', additionalProperties: true },
    example: [{ role: 'user', parts: [{ text: 'Hello, Gemini' }] }],
  })
  @IsArray({ message: CONTENTS })
  @ArrayNotEmpty({ message: 'contents must contain at least one Content' })
  @IsObject({ each: true, message: CONTENTS })
  contents!: Array<Record<string, unknown>>;

  @ApiPropertyOptional({ type: 'object', additionalProperties: true, example: { parts: [{ text: 'Be brief.' }] } })
  @IsOptional()
  @IsObject()
  systemInstruction?: Record<string, unknown>;

  @ApiPropertyOptional({
    type: 'object',
    additionalProperties: true,
    description: '`maxOutputTokens` is capped by the product policy (set to the cap when absent); `temperature` must lie in its range',
    example: { maxOutputTokens: 256, temperature: 0.7 },
  })
  @IsOptional()
  @IsObject()
  generationConfig?: Record<string, unknown>;

  @ApiPropertyOptional({
    type: 'array',
    items: { type: 'object', additionalProperties: true },
    description:
      'Tool entries (`functionDeclarations`, `googleSearch`, `codeExecution`, …); kinds in the policy’s `refused_tools` are refused',
  })
  @IsOptional()
  @IsArray()
  @IsObject({ each: true, message: 'each tool must be an object' })
  tools?: Array<Record<string, unknown>>;
}

/** `POST /v1beta/models/{model}:countTokens` body: `contents`, or a whole `generateContentRequest`. */
export class CountTokensRequestDto {
  @ApiPropertyOptional({ type: 'array', items: { type: 'object', additionalProperties: true } })
  @IsOptional()
  @IsArray({ message: CONTENTS })
  @IsObject({ each: true, message: CONTENTS })
  contents?: Array<Record<string, unknown>>;

  @ApiPropertyOptional({ type: 'object', additionalProperties: true })
  @IsOptional()
  @IsObject()
  generateContentRequest?: Record<string, unknown>;
}

/** Gemini's GenerateContentResponse, as the route answers it unchanged (documentation only). */
export class GenerateContentResponseDto {
  @ApiProperty({
    type: 'array',
    items: { type: 'object', additionalProperties: true },
    example: [{ content: { role: 'model', parts: [{ text: 'Hello! How can I help?' }] }, finishReason: 'STOP', index: 0 }],
  })
  candidates!: Array<Record<string, unknown>>;

  @ApiPropertyOptional({
    type: 'object',
    additionalProperties: true,
    example: { promptTokenCount: 5, candidatesTokenCount: 7, totalTokenCount: 12 },
  })
  usageMetadata?: Record<string, unknown>;

  @ApiPropertyOptional({ example: 'gemini-2.5-flash' })
  modelVersion?: string;
}

/** Gemini's answer to `countTokens` (documentation only). */
export class CountTokensResponseDto {
  @ApiProperty({ type: 'integer', example: 5 })
  totalTokens!: number;
}
