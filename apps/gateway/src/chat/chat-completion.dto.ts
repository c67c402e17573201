import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayNotEmpty,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsNumber,
  IsObject,
  IsOptional,
  IsString,
  MaxLength,
  Min,
  MinLength,
  ValidateIf,
  ValidateNested,
} from 'class-validator';

const ROLES = ['system', 'developer', 'user', 'assistant', 'tool', 'function'] as const;

/** One message of a chat (OpenAI's shape); validated for the fields keygate relies on. */
export class ChatMessageDto {
  @ApiProperty({ enum: ROLES, example: 'user' })
  @IsIn(ROLES)
  role!: string;

  @ApiPropertyOptional({
    description: 'Text, or an array of content parts; null for assistant tool calls',
    example: 'Say hello',
    nullable: true,
    oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'object', additionalProperties: true } }],
  })
  @ValidateIf((m: ChatMessageDto) => m.content !== null && m.content !== undefined)
  @ValidateIf((m: ChatMessageDto) => typeof m.content !== 'string')
  @IsArray({ message: 'content must be a string or an array of content parts' })
  content?: string | Array<Record<string, unknown>> | null;

  @ApiPropertyOptional() @IsOptional() @IsString() name?: string;
  @ApiPropertyOptional({ type: 'array', items: { type: 'object' } }) @IsOptional() @IsArray() tool_calls?: unknown[];
  @ApiPropertyOptional() @ValidateIf((m: ChatMessageDto) => m.role === 'tool') @IsString() tool_call_id?: string;
}

/** Options for streamed responses. */
export class StreamOptionsDto {
  @ApiPropertyOptional({ description: 'Send a final chunk with token usage' }) @IsOptional() @IsBoolean() include_usage?: boolean;
}

/**
 * `POST /v1/chat/completions` body: OpenAI's chat-completions request. Fields not listed here are
 * passed through to OpenAI-compatible upstreams unchanged.
 */
export class ChatCompletionRequestDto {
  @ApiProperty({ example: 'gpt-4o-mini' })
  @IsString()
  @MinLength(1)
  @MaxLength(256)
  model!: string;

  @ApiProperty({ type: [ChatMessageDto], example: [{ role: 'user', content: 'Say hello' }] })
  @IsArray()
  @ArrayNotEmpty({ message: 'messages must contain at least one message' })
  @ValidateNested({ each: true })
  @Type(() => ChatMessageDto)
  messages!: ChatMessageDto[];

  @ApiPropertyOptional({ default: false }) @IsOptional() @IsBoolean() stream?: boolean;
  @ApiPropertyOptional({ type: StreamOptionsDto })
  @IsOptional()
  @ValidateNested()
  @Type(() => StreamOptionsDto)
  stream_options?: StreamOptionsDto;
  @ApiPropertyOptional({ description: 'Capped by the product policy; set to the cap when absent' })
  @IsOptional()
  @IsInt()
  @Min(1)
  max_tokens?: number;
  @ApiPropertyOptional() @IsOptional() @IsInt() @Min(1) max_completion_tokens?: number;
  @ApiPropertyOptional({ example: 0.7 }) @IsOptional() @IsNumber() temperature?: number;
  @ApiPropertyOptional() @IsOptional() @IsNumber() top_p?: number;
  @ApiPropertyOptional() @IsOptional() @IsInt() @Min(1) n?: number;
  @ApiPropertyOptional({ oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] })
  @IsOptional()
  @ValidateIf((r: ChatCompletionRequestDto) => typeof r.stop !== 'string')
  @IsArray({ message: 'stop must be a string or an array of strings' })
  stop?: string | string[];
  @ApiPropertyOptional({ type: 'array', items: { type: 'object' } }) @IsOptional() @IsArray() tools?: unknown[];
  @ApiPropertyOptional({ oneOf: [{ type: 'string' }, { type: 'object' }] }) @IsOptional() tool_choice?: unknown;
  @ApiPropertyOptional({ type: 'object', additionalProperties: true }) @IsOptional() @IsObject() response_format?: Record<string, unknown>;
  @ApiPropertyOptional() @IsOptional() @IsString() user?: string;
}
