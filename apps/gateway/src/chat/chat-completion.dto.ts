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
  ValidatorConstraint,
  type ValidationArguments,
  type ValidatorConstraintInterface,
} from 'class-validator';
import { NestedDto } from '../http/nested-dto';

/**
 * The most messages a chat or `/v1/messages` request may hold. Each is validated with
 * class-validator (~15 µs a message, more with parts), and a request is validated before any limit
 * counts it: 10,000 take ~0.15–0.2 s of the event loop (measured), 33,000 (1 MB of one-letter
 * messages) took 0.4 s. Far beyond real conversations (a 1M-token context holds 10,000 messages of
 * 100 tokens); Anthropic's own limit is 100,000.
 */
export const MAX_MESSAGES = 10_000;

const ROLES = ['system', 'developer', 'user', 'assistant', 'tool', 'function'] as const;

/** One message of a chat (OpenAI's shape); validated for the fields keygate relies on. */
export class ChatMessageDto {
  @ApiProperty({ enum: ROLES, example: 'user' })
  @IsIn(ROLES)
  role!: string;

  @ApiPropertyOptional({
    description: 'Text, or an array of content parts; null for assistant tool calls',
    example: 'Say hello',
    // `nullable` only where a `type` is beside it (OpenAPI 3.0.3): beside `oneOf` alone it allows no null.
    oneOf: [
      { type: 'string', nullable: true },
      { type: 'array', items: { type: 'object', additionalProperties: true } },
    ],
  })
  @ValidateIf((m: ChatMessageDto) => m.content !== null && m.content !== undefined)
  @ValidateIf((m: ChatMessageDto) => typeof m.content !== 'string')
  @IsArray({ message: 'content must be a string or an array of content parts' })
  @IsObject({ each: true, message: 'content must be a string or an array of content parts (objects)' })
  content?: string | Array<Record<string, unknown>> | null;

  @ApiPropertyOptional() @IsOptional() @IsString() name?: string;
  @ApiPropertyOptional({ type: 'array', items: { type: 'object', additionalProperties: true } })
  @IsOptional()
  @IsArray()
  @IsObject({ each: true, message: 'tool_calls must be an array of tool call objects' })
  tool_calls?: unknown[];
  @ApiPropertyOptional() @ValidateIf((m: ChatMessageDto) => m.role === 'tool') @IsString() tool_call_id?: string;
  @ApiPropertyOptional({
    description:
      'Claude\'s thinking blocks, as an answer\'s message gave them (`{type: "thinking", thinking, signature}` or `{type: "redacted_thinking", data}`): sent back to Claude first in the assistant turn',
    type: 'array',
    items: { type: 'object', additionalProperties: true },
  })
  @IsOptional()
  @IsArray({ message: 'thinking_blocks must be an array of thinking blocks' })
  @IsObject({ each: true, message: 'thinking_blocks must be an array of thinking blocks (objects)' })
  thinking_blocks?: unknown[];
}

/**
 * A function name any provider takes: OpenAI and Anthropic allow letters, digits, `_` and `-`;
 * Gemini (and many OpenAI-compatible hosts) also `.` and `:` (namespaced MCP tools). Beyond this,
 * each provider's own rules apply.
 */
const FUNCTION_NAME = /^[A-Za-z0-9_.:-]{1,128}$/;
/** What {@link FUNCTION_NAME} allows, for messages. */
const FUNCTION_NAME_RULE = '1 to 128 letters, digits, underscores, dashes, dots or colons';

/** A function tool as a route's `tools` declares it: its name, where it is, and its parameters schema. */
export interface DeclaredFunction {
  name: unknown;
  /** The tool's place, for messages (`tools[2].function`). */
  at: string;
  parameters?: unknown;
}

/**
 * `tools`: objects, whose function tools have valid, distinct names and an object (or no) parameters
 * schema. `functionOf` reads a tool in its API's shape: its {@link DeclaredFunction}, a problem of
 * its own shape, or undefined for a tool of another kind (passed on for the provider to take or
 * refuse). Every provider refuses these, after keygate would have counted the request; refused
 * here with the place named.
 */
export function declaredToolsProblem(
  tools: unknown,
  functionOf: (tool: Record<string, unknown>, i: number) => DeclaredFunction | string | undefined,
): string | undefined {
  if (!Array.isArray(tools)) return 'tools must be an array';
  const names = new Set<string>();
  for (const [i, tool] of tools.entries()) {
    if (!isRecord(tool)) return `tools[${i}] must be an object`;
    const fn = functionOf(tool, i);
    if (fn === undefined) continue;
    if (typeof fn === 'string') return fn;
    if (typeof fn.name !== 'string' || !FUNCTION_NAME.test(fn.name)) return `${fn.at}.name must be ${FUNCTION_NAME_RULE}`;
    if (names.has(fn.name)) return `${fn.at}.name: ${fn.name} is declared twice`;
    names.add(fn.name);
    if (fn.parameters !== undefined && !isRecord(fn.parameters)) return `${fn.at}.parameters must be a JSON Schema object`;
  }
  return undefined;
}

/** Chat's `tools`: function tools (`{type: 'function', function: {name, parameters}}`), see {@link declaredToolsProblem}. */
export function toolsProblem(tools: unknown): string | undefined {
  return declaredToolsProblem(tools, (tool, i) => {
    if (tool.type !== 'function') return undefined;
    const fn = tool.function;
    if (!isRecord(fn)) return `tools[${i}].function must be an object with a name`;
    return { name: fn.name, at: `tools[${i}].function`, parameters: fn.parameters };
  });
}

/** `tool_choice` forcing a function: one of the declared function tools. */
export function toolChoiceProblem(toolChoice: unknown, tools: unknown): string | undefined {
  if (!isRecord(toolChoice) || toolChoice.type !== 'function') return undefined;
  const fn = toolChoice.function;
  const name = isRecord(fn) ? fn.name : undefined;
  if (typeof name !== 'string') return 'tool_choice.function.name is required';
  const declared =
    Array.isArray(tools) && tools.some((t) => isRecord(t) && t.type === 'function' && isRecord(t.function) && t.function.name === name);
  return declared ? undefined : `tool_choice names ${name}, which is not among the tools`;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A class-validator constraint from a function that names the problem of a field's value (given
 * the whole request), or returns undefined when there is none.
 */
export function constraintOf<R = ChatCompletionRequestDto>(
  name: string,
  problem: (value: unknown, request: R) => string | undefined,
): new () => ValidatorConstraintInterface {
  @ValidatorConstraint({ name })
  class ProblemConstraint implements ValidatorConstraintInterface {
    validate(value: unknown, args: ValidationArguments): boolean {
      return problem(value, args.object as R) === undefined;
    }

    defaultMessage(args: ValidationArguments): string {
      return problem(args.value, args.object as R) ?? `${args.property} is invalid`;
    }
  }
  return ProblemConstraint;
}

function responseFormatProblem(format: unknown): string | undefined {
  if (!isRecord(format)) return 'response_format must be an object';
  if (!['text', 'json_object', 'json_schema'].includes(format.type as string))
    return 'response_format.type must be text, json_object or json_schema';
  if (format.type === 'json_schema' && !isRecord(format.json_schema))
    return 'response_format.json_schema is required with type json_schema ({"name", "schema"})';
  return undefined;
}

const ToolsConstraint = constraintOf('tools', (tools) => toolsProblem(tools));
const ToolChoiceConstraint = constraintOf('toolChoice', (choice, request) => toolChoiceProblem(choice, request.tools));
/** `response_format`: a known type, and a json_schema one carries its `json_schema` object. */
const ResponseFormatConstraint = constraintOf('responseFormat', (format) => responseFormatProblem(format));
/** OpenAI refuses `stream_options` on a request that does not stream. */
const StreamOptionsConstraint = constraintOf('streamOptions', (_options, request) =>
  request.stream === true ? undefined : 'stream_options is only allowed when stream is true',
);

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
  @IsObject({ each: true, message: 'each message must be an object with a role' })
  @NestedDto(() => ChatMessageDto, { each: true, maxItems: MAX_MESSAGES, items: 'messages' })
  messages!: ChatMessageDto[];

  @ApiPropertyOptional({ default: false }) @IsOptional() @IsBoolean() stream?: boolean;
  @ApiPropertyOptional({ type: StreamOptionsDto, description: 'Only with stream: true (OpenAI refuses it otherwise)' })
  @IsOptional()
  @Validate(StreamOptionsConstraint)
  @NestedDto(() => StreamOptionsDto)
  stream_options?: StreamOptionsDto;
  @ApiPropertyOptional({ type: 'integer', minimum: 1, description: 'Capped by the product policy; set to the cap when absent' })
  @IsOptional()
  @IsInt()
  @Min(1)
  max_tokens?: number;
  @ApiPropertyOptional({ type: 'integer', minimum: 1, description: 'Capped by the product policy like max_tokens' })
  @IsOptional()
  @IsInt()
  @Min(1)
  max_completion_tokens?: number;
  @ApiPropertyOptional({ example: 0.7 }) @IsOptional() @IsNumber() temperature?: number;
  @ApiPropertyOptional({ minimum: 0, maximum: 1 }) @IsOptional() @IsNumber() @Min(0) @Max(1) top_p?: number;
  @ApiPropertyOptional({ type: 'integer', minimum: 1, maximum: 128 }) @IsOptional() @IsInt() @Min(1) @Max(128) n?: number;
  @ApiPropertyOptional({ minimum: -2, maximum: 2 }) @IsOptional() @IsNumber() @Min(-2) @Max(2) presence_penalty?: number;
  @ApiPropertyOptional({ minimum: -2, maximum: 2 }) @IsOptional() @IsNumber() @Min(-2) @Max(2) frequency_penalty?: number;
  @ApiPropertyOptional({ type: 'object', additionalProperties: { type: 'number' } })
  @IsOptional()
  @IsObject()
  logit_bias?: Record<string, number>;
  @ApiPropertyOptional({ type: 'integer' }) @IsOptional() @IsInt() seed?: number;
  @ApiPropertyOptional() @IsOptional() @IsBoolean() logprobs?: boolean;
  @ApiPropertyOptional({ type: 'integer', minimum: 0, maximum: 20 }) @IsOptional() @IsInt() @Min(0) @Max(20) top_logprobs?: number;
  @ApiPropertyOptional({ oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] })
  @IsOptional()
  @ValidateIf((r: ChatCompletionRequestDto) => typeof r.stop !== 'string')
  @IsArray({ message: 'stop must be a string or an array of strings' })
  @IsString({ each: true, message: 'stop must be a string or an array of strings' })
  stop?: string | string[];
  @ApiPropertyOptional({ type: 'array', items: { type: 'object', additionalProperties: true } })
  @IsOptional()
  @IsArray()
  @Validate(ToolsConstraint)
  tools?: unknown[];
  @ApiPropertyOptional({ oneOf: [{ type: 'string' }, { type: 'object', additionalProperties: true }] })
  @IsOptional()
  @Validate(ToolChoiceConstraint)
  tool_choice?: unknown;
  @ApiPropertyOptional({ type: 'object', additionalProperties: true })
  @IsOptional()
  @Validate(ResponseFormatConstraint)
  response_format?: Record<string, unknown>;
  @ApiPropertyOptional() @IsOptional() @IsString() user?: string;
  @ApiPropertyOptional({
    type: 'object',
    additionalProperties: { type: 'string' },
    description: 'Key-value pairs (OpenAI stores them with the completion)',
  })
  @IsOptional()
  @IsObject()
  metadata?: Record<string, string>;
}
