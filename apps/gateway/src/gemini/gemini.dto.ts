import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { GEMINI_EMBED_BATCH_SIZE } from '@keygate/providers';
import { ArrayMaxSize, ArrayNotEmpty, IsArray, IsObject, IsOptional } from 'class-validator';

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

const CONTENT = 'content must be a Content object ({parts})';

/**
 * `POST /v1beta/models/{model}:embedContent` body: Gemini's EmbedContentRequest. Fields not listed
 * here are passed on to Google unchanged.
 */
export class EmbedContentRequestDto {
  @ApiProperty({ type: 'object', additionalProperties: true, example: { parts: [{ text: 'The food was delicious' }] } })
  @IsObject({ message: CONTENT })
  content!: Record<string, unknown>;

  @ApiPropertyOptional({ example: 'RETRIEVAL_DOCUMENT', description: 'Passed on to Google' })
  taskType?: string;

  @ApiPropertyOptional({ example: 'A review', description: 'Passed on to Google (with taskType RETRIEVAL_DOCUMENT)' })
  title?: string;

  @ApiPropertyOptional({ type: 'integer', example: 256, description: 'Passed on to Google' })
  outputDimensionality?: number;
}

/**
 * `POST /v1beta/models/{model}:batchEmbedContents` body (what `@google/genai`'s `models.embedContent`
 * sends): up to 100 EmbedContentRequests, each naming the path's model or none.
 */
export class BatchEmbedContentsRequestDto {
  @ApiProperty({
    type: 'array',
    items: { type: 'object', additionalProperties: true },
    minItems: 1,
    maxItems: GEMINI_EMBED_BATCH_SIZE,
    example: [{ model: 'models/text-embedding-004', content: { parts: [{ text: 'The food was delicious' }] } }],
  })
  @IsArray({ message: 'requests must be an array of EmbedContentRequest objects' })
  @ArrayNotEmpty({ message: 'requests must contain at least one EmbedContentRequest' })
  @ArrayMaxSize(GEMINI_EMBED_BATCH_SIZE, {
    message: `requests may hold at most ${GEMINI_EMBED_BATCH_SIZE} EmbedContentRequests (Google's limit)`,
  })
  @IsObject({ each: true, message: 'each of requests must be an EmbedContentRequest object' })
  requests!: Array<Record<string, unknown>>;
}

/** Gemini's answer to `embedContent` (documentation only). */
export class EmbedContentResponseDto {
  @ApiProperty({ type: 'object', additionalProperties: true, example: { values: [0.013, -0.008, 0.021] } })
  embedding!: Record<string, unknown>;
}

/** Gemini's answer to `batchEmbedContents`, one embedding per request in order (documentation only). */
export class BatchEmbedContentsResponseDto {
  @ApiProperty({ type: 'array', items: { type: 'object', additionalProperties: true }, example: [{ values: [0.013, -0.008, 0.021] }] })
  embeddings!: Array<Record<string, unknown>>;
}
