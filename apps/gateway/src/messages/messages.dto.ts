import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
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
  Max,
  MaxLength,
  Min,
  MinLength,
  Validate,
  ValidateIf,
} from 'class-validator';
import { NestedDto } from '../http/nested-dto';
import { MAX_MESSAGES, constraintOf, declaredToolsProblem, isRecord } from '../chat/chat-completion.dto';

const CONTENT = 'content must be a string or an array of content blocks (objects)';

/**
 * `tools`: the client tools (no `type`, or `custom`: `{name, input_schema}`), see
 * {@link declaredToolsProblem}; server tools (`web_search_20250305`, …) are passed on for Anthropic to judge.
 */
export function messagesToolsProblem(tools: unknown): string | undefined {
  return declaredToolsProblem(tools, (tool, i) =>
    tool.type === undefined || tool.type === null || tool.type === 'custom' ? { name: tool.name, at: `tools[${i}]` } : undefined,
  );
}

/** `tool_choice` forcing a tool (`{type: 'tool', name}`): one of the declared tools. */
export function messagesToolChoiceProblem(choice: unknown, tools: unknown): string | undefined {
  if (!isRecord(choice) || choice.type !== 'tool') return undefined;
  if (typeof choice.name !== 'string') return 'tool_choice.name is required';
  const declared = Array.isArray(tools) && tools.some((t) => isRecord(t) && t.name === choice.name);
  return declared ? undefined : `tool_choice names ${choice.name}, which is not among the tools`;
}

const ToolsConstraint = constraintOf<MessagesRequestDto>('tools', (tools) => messagesToolsProblem(tools));
const ToolChoiceConstraint = constraintOf<MessagesRequestDto>('toolChoice', (choice, request) =>
  messagesToolChoiceProblem(choice, request.tools),
);

/** One message of an Anthropic Messages request; validated for the fields keygate relies on. */
export class AnthropicMessageDto {
  // `system`: a mid-conversation system message (Claude Opus 4.8 and later; Claude Code sends one
  // after the user's turn). Where it may stand, and which models take it, is Anthropic's to judge.
  @ApiProperty({ enum: ['user', 'assistant', 'system'], example: 'user' })
  @IsIn(['user', 'assistant', 'system'])
  role!: string;

  @ApiProperty({
    description: 'Text, or an array of content blocks',
    example: 'Hello, Claude',
    oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'object', additionalProperties: true } }],
  })
  @ValidateIf((m: AnthropicMessageDto) => typeof m.content !== 'string')
  @IsArray({ message: CONTENT })
  @IsObject({ each: true, message: CONTENT })
  content!: string | Array<Record<string, unknown>>;
}

/**
 * `POST /v1/messages` body: Anthropic's Messages request. Fields not listed here (`thinking`,
 * `metadata`, …) are passed on to Anthropic unchanged.
 */
export class MessagesRequestDto {
  @ApiProperty({ example: 'claude-3-5-sonnet-20241022' })
  @IsString()
  @MinLength(1)
  @MaxLength(256)
  model!: string;

  @ApiProperty({ type: [AnthropicMessageDto], example: [{ role: 'user', content: 'Hello, Claude' }] })
  @IsArray()
  @ArrayNotEmpty({ message: 'messages must contain at least one message' })
  @IsObject({ each: true, message: 'each message must be an object with a role and content' })
  @NestedDto(() => AnthropicMessageDto, { each: true, maxItems: MAX_MESSAGES, items: 'messages' })
  messages!: AnthropicMessageDto[];

  @ApiPropertyOptional({ type: 'integer', minimum: 1, description: 'Capped by the product policy; set to the cap when absent' })
  @IsOptional()
  @IsInt()
  @Min(1)
  max_tokens?: number;

  @ApiPropertyOptional({ oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'object', additionalProperties: true } }] })
  @IsOptional()
  @ValidateIf((r: MessagesRequestDto) => typeof r.system !== 'string')
  @IsArray({ message: 'system must be a string or an array of text blocks' })
  @IsObject({ each: true, message: 'system must be a string or an array of text blocks (objects)' })
  system?: string | Array<Record<string, unknown>>;

  @ApiPropertyOptional({ default: false }) @IsOptional() @IsBoolean() stream?: boolean;
  @ApiPropertyOptional({ example: 0.7 }) @IsOptional() @IsNumber() temperature?: number;
  @ApiPropertyOptional({ minimum: 0, maximum: 1 }) @IsOptional() @IsNumber() @Min(0) @Max(1) top_p?: number;
  @ApiPropertyOptional({ type: 'integer', minimum: 0 }) @IsOptional() @IsInt() @Min(0) top_k?: number;
  @ApiPropertyOptional({ type: 'array', items: { type: 'string' } })
  @IsOptional()
  @IsArray()
  @IsString({ each: true })
  stop_sequences?: string[];
  @ApiPropertyOptional({ type: 'array', items: { type: 'object', additionalProperties: true } })
  @IsOptional()
  @Validate(ToolsConstraint)
  tools?: Array<Record<string, unknown>>;
  @ApiPropertyOptional({ type: 'object', additionalProperties: true })
  @IsOptional()
  @Validate(ToolChoiceConstraint)
  tool_choice?: unknown;
  // Checked by the service (it decides whose a thread is), documented here.
  @ApiPropertyOptional({
    description:
      "Anthropic's server-held thread (anthropic-beta message-threads-2026-08-12): create one, or continue from an earlier answer's id. " +
      'keygate continues a thread only for the user who created it (else 404 thread_not_found)',
    oneOf: [
      { type: 'object', properties: { type: { type: 'string', enum: ['create'] } }, required: ['type'] },
      {
        type: 'object',
        properties: { type: { type: 'string', enum: ['continue'] }, previous_message_id: { type: 'string', example: 'msg_01ABC' } },
        required: ['type', 'previous_message_id'],
      },
    ],
  })
  thread?: unknown;
}

/** The usage block of an Anthropic message (documentation only). */
export class AnthropicUsageDto {
  @ApiProperty({ type: 'integer', example: 12 })
  input_tokens!: number;

  @ApiProperty({ type: 'integer', example: 48 })
  output_tokens!: number;

  @ApiPropertyOptional({ type: 'integer', nullable: true, example: 0, description: 'Prompt tokens written to the cache' })
  cache_creation_input_tokens?: number | null;

  @ApiPropertyOptional({ type: 'integer', nullable: true, example: 0, description: 'Prompt tokens read from the cache' })
  cache_read_input_tokens?: number | null;
}

/** Anthropic's Message object, as `POST /v1/messages` answers it unchanged (documentation only). */
export class AnthropicMessageResponseDto {
  @ApiProperty({ example: 'msg_013Zva2CMHLNnXjNJJKqJ2EF' })
  id!: string;

  @ApiProperty({ enum: ['message'] })
  type!: 'message';

  @ApiProperty({ enum: ['assistant'] })
  role!: 'assistant';

  @ApiProperty({
    description: 'Content blocks: `text`, `tool_use`, `thinking`…',
    type: 'array',
    items: { type: 'object', additionalProperties: true },
    example: [{ type: 'text', text: 'Hello! How can I help?' }],
  })
  content!: Array<Record<string, unknown>>;

  @ApiProperty({ example: 'claude-3-5-sonnet-20241022' })
  model!: string;

  @ApiProperty({ type: String, nullable: true, example: 'end_turn', description: '`end_turn`, `max_tokens`, `stop_sequence`, `tool_use`…' })
  stop_reason!: string | null;

  @ApiPropertyOptional({ type: String, nullable: true, example: null, description: 'The stop sequence that ended the message' })
  stop_sequence?: string | null;

  @ApiProperty({ type: AnthropicUsageDto })
  usage!: AnthropicUsageDto;
}

/** Anthropic's answer to `POST /v1/messages/count_tokens` (documentation only). */
export class AnthropicTokenCountDto {
  @ApiProperty({ type: 'integer', example: 14 })
  input_tokens!: number;
}
