import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsBoolean, IsInt, IsNumber, IsOptional, IsString, Matches, Max, MaxLength, Min, MinLength, Validate } from 'class-validator';
import { MIN_OUTPUT_TOKENS } from '@keygate/policy';
import { constraintOf, declaredToolsProblem, isRecord } from '../chat/chat-completion.dto';
import { RESPONSE_ID } from './response-id';

const INPUT = 'input must be a string or an array of input items (objects)';

/**
 * `input` as an array: items that are objects, and a message's content parts too. OpenAI refuses
 * the rest after keygate would have counted the request; refused here with the place named.
 */
export function inputProblem(input: unknown): string | undefined {
  if (typeof input === 'string') return undefined;
  if (!Array.isArray(input)) return INPUT;
  if (input.length === 0) return 'input must contain at least one item';
  for (const [i, item] of input.entries()) {
    if (!isRecord(item)) return `input[${i}] must be an object`;
    if (Array.isArray(item.content))
      for (const [j, part] of (item.content as unknown[]).entries())
        if (!isRecord(part)) return `input[${i}].content[${j}] must be an object`;
  }
  return undefined;
}

/**
 * `tools`: function tools in the Responses API's flat shape (`{type: 'function', name, parameters}`),
 * see {@link declaredToolsProblem}; other kinds (built-in, custom, MCP tools) are passed on.
 */
export function responsesToolsProblem(tools: unknown): string | undefined {
  return declaredToolsProblem(tools, (tool, i) => {
    if (tool.type !== 'function') return undefined;
    // Chat's nested shape, a common slip when moving a client to this API: say so rather than that the name is missing.
    if (tool.name === undefined && isRecord(tool.function))
      return `tools[${i}]: the Responses API takes a function tool flat ({"type": "function", "name", "parameters"}), not chat's {"function": {...}}`;
    return { name: tool.name, at: `tools[${i}]`, parameters: tool.parameters ?? undefined };
  });
}

/**
 * `tool_choice` forcing a function (`{type: 'function', name}`): one of the declared function tools.
 * Tools may also be declared where keygate does not resolve names (inside a `namespace`, or in an
 * input item such as Codex's `additional_tools`): with any there, the name is left to OpenAI.
 */
export function responsesToolChoiceProblem(choice: unknown, tools: unknown, input?: unknown): string | undefined {
  if (!isRecord(choice) || choice.type !== 'function') return undefined;
  if (typeof choice.name !== 'string') return 'tool_choice.name is required';
  const declared = Array.isArray(tools) && tools.some((t) => isRecord(t) && t.type === 'function' && t.name === choice.name);
  if (declared || declaresToolsElsewhere(tools, input)) return undefined;
  return `tool_choice names ${choice.name}, which is not among the tools`;
}

/** Whether tools are declared in a `namespace` of `tools`, or by an input item (`{tools: [...]}`). */
function declaresToolsElsewhere(tools: unknown, input: unknown): boolean {
  const namespaced = Array.isArray(tools) && tools.some((t) => isRecord(t) && t.type === 'namespace');
  return namespaced || (Array.isArray(input) && input.some((item) => isRecord(item) && Array.isArray(item.tools)));
}

const InputConstraint = constraintOf<ResponsesRequestDto>('input', (input) => inputProblem(input));
const ToolsConstraint = constraintOf<ResponsesRequestDto>('tools', (tools) => responsesToolsProblem(tools));
const ToolChoiceConstraint = constraintOf<ResponsesRequestDto>('toolChoice', (choice, request) =>
  responsesToolChoiceProblem(choice, request.tools, request.input),
);
/** `tools` and `tool_choice`, checked alike on every body that declares tools (create, input_tokens). */
const Tools = (): PropertyDecorator =>
  applyDecorators(
    ApiPropertyOptional({ type: 'array', items: { type: 'object', additionalProperties: true } }),
    IsOptional(),
    Validate(ToolsConstraint),
  );
const ToolChoice = (): PropertyDecorator =>
  applyDecorators(
    ApiPropertyOptional({ oneOf: [{ type: 'string' }, { type: 'object', additionalProperties: true }] }),
    IsOptional(),
    Validate(ToolChoiceConstraint),
  );
/** `previous_response_id`'s checks, on every body that continues a response (its documentation differs per route). */
const PreviousResponseId = (): PropertyDecorator =>
  applyDecorators(
    IsOptional(),
    IsString(),
    Matches(RESPONSE_ID, { message: 'previous_response_id must be a response id (letters, digits, _ and -)' }),
  );
/** OpenAI refuses `stream_options` on a request that does not stream. */
const StreamOptionsConstraint = constraintOf<ResponsesRequestDto>('streamOptions', (_options, request) =>
  request.stream === true ? undefined : 'stream_options is only allowed when stream is true',
);

/**
 * `POST /v1/responses` body: OpenAI's Responses request. Fields not listed here (`reasoning`,
 * `text`, `prompt`, `include`, …) are passed on to OpenAI unchanged.
 */
export class ResponsesRequestDto {
  @ApiProperty({ example: 'gpt-4o-mini' })
  @IsString()
  @MinLength(1)
  @MaxLength(256)
  model!: string;

  @ApiPropertyOptional({
    description:
      'Text, or an array of input items (messages, function call outputs, …); may be left out where `prompt` or `previous_response_id` carries it',
    example: 'Hello!',
    oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'object', additionalProperties: true } }],
  })
  // Optional: a stored prompt (`prompt`) or a previous response may carry it all.
  @IsOptional()
  @Validate(InputConstraint)
  input?: string | Array<Record<string, unknown>>;

  @ApiPropertyOptional({ example: 'Answer briefly.' }) @IsOptional() @IsString() instructions?: string;

  @ApiPropertyOptional({
    type: 'integer',
    minimum: MIN_OUTPUT_TOKENS,
    description: `At least ${MIN_OUTPUT_TOKENS} (OpenAI's minimum); capped by the product policy; set to the cap when absent`,
  })
  @IsOptional()
  @IsInt()
  // OpenAI refuses less, after keygate would have counted the request.
  @Min(MIN_OUTPUT_TOKENS, { message: `max_output_tokens must be at least ${MIN_OUTPUT_TOKENS} (the Responses API's minimum)` })
  max_output_tokens?: number;

  @ApiPropertyOptional({ default: false }) @IsOptional() @IsBoolean() stream?: boolean;
  @ApiPropertyOptional({ example: 0.7 }) @IsOptional() @IsNumber() temperature?: number;
  @ApiPropertyOptional({ minimum: 0, maximum: 1 }) @IsOptional() @IsNumber() @Min(0) @Max(1) top_p?: number;
  @Tools() tools?: Array<Record<string, unknown>>;
  @ToolChoice() tool_choice?: unknown;

  @ApiPropertyOptional({
    description: 'A response this user created through keygate (`store` not false), continued from: its context comes with it',
    example: 'resp_67ccd2bed1ec8190b14f964abc054267',
  })
  @PreviousResponseId()
  previous_response_id?: string;

  @ApiPropertyOptional({ type: 'object', additionalProperties: true, description: 'Only with stream: true (OpenAI refuses it otherwise)' })
  @IsOptional()
  @Validate(StreamOptionsConstraint)
  stream_options?: unknown;
}

const ModelProperty = ApiProperty({
  example: 'gpt-4o-mini',
  description: 'An OpenAI model of the caller’s product: it picks the host and key',
});
const PreviousResponseProperty = ApiPropertyOptional({
  description: 'A response this user created through keygate (`store` not false): its context counts too',
  example: 'resp_67ccd2bed1ec8190b14f964abc054267',
});
const InputProperty = ApiPropertyOptional({
  description: 'Text, or an array of input items, as `POST /v1/responses` takes it',
  example: 'Hello!',
  oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'object', additionalProperties: true } }],
});

/**
 * `POST /v1/responses/input_tokens` body: the fields of a create request that shape its input
 * (`model`, `input`, `instructions`, `tools`, `tool_choice`, `previous_response_id`, `text`,
 * `reasoning`, `truncation`, …), checked as create checks them; the rest goes to OpenAI unchanged.
 */
export class ResponsesInputTokensRequestDto {
  @ModelProperty @IsString() @MinLength(1) @MaxLength(256) model!: string;
  @InputProperty @IsOptional() @Validate(InputConstraint) input?: string | Array<Record<string, unknown>>;
  @ApiPropertyOptional({ example: 'Answer briefly.' }) @IsOptional() @IsString() instructions?: string;

  @Tools() tools?: Array<Record<string, unknown>>;
  @ToolChoice() tool_choice?: unknown;

  @PreviousResponseProperty
  @PreviousResponseId()
  previous_response_id?: string;
}

/**
 * `POST /v1/responses/compact` body: OpenAI's compaction request (`model`, `input`,
 * `instructions`, `previous_response_id`; `prompt_cache_key` and the like go on unchanged).
 */
export class ResponsesCompactRequestDto {
  @ModelProperty @IsString() @MinLength(1) @MaxLength(256) model!: string;
  @InputProperty @IsOptional() @Validate(InputConstraint) input?: string | Array<Record<string, unknown>>;
  @ApiPropertyOptional({ example: 'Keep the decisions made.' }) @IsOptional() @IsString() instructions?: string;

  @PreviousResponseProperty
  @PreviousResponseId()
  previous_response_id?: string;
}

/** The usage block of a Response (documentation only). */
export class ResponsesUsageDto {
  @ApiProperty({ type: 'integer', example: 12, description: 'Prompt tokens, cached ones included' }) input_tokens!: number;
  @ApiProperty({ type: 'integer', example: 48, description: 'Generated tokens, reasoning included' }) output_tokens!: number;
  @ApiProperty({ type: 'integer', example: 60 }) total_tokens!: number;
}

/** OpenAI's Response object, as `POST /v1/responses` answers it unchanged (documentation only). */
export class ResponseObjectDto {
  @ApiProperty({ example: 'resp_67ccd2bed1ec8190b14f964abc054267' }) id!: string;
  @ApiProperty({ enum: ['response'] }) object!: 'response';
  @ApiProperty({ example: 'completed', description: '`completed`, `incomplete`, `failed`…' }) status!: string;
  @ApiProperty({ example: 'gpt-4o-mini' }) model!: string;

  @ApiProperty({
    description: 'Output items: `message` (with `output_text` parts), `function_call`, `reasoning`…',
    type: 'array',
    items: { type: 'object', additionalProperties: true },
    example: [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Hello! How can I help?', annotations: [] }] }],
  })
  output!: Array<Record<string, unknown>>;

  @ApiPropertyOptional({ type: ResponsesUsageDto }) usage?: ResponsesUsageDto;
}

/** OpenAI's answer to deleting a response (documentation only). */
export class ResponseDeletedDto {
  @ApiProperty({ example: 'resp_67ccd2bed1ec8190b14f964abc054267' }) id!: string;
  @ApiProperty({ example: 'response' }) object!: string;
  @ApiProperty({ example: true }) deleted!: boolean;
}

/** A page of a response's input items, as OpenAI lists them (documentation only). */
export class InputItemListDto {
  @ApiProperty({ enum: ['list'] }) object!: 'list';
  @ApiProperty({
    type: 'array',
    items: { type: 'object', additionalProperties: true },
    example: [{ id: 'msg_abc', type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hello!' }] }],
  })
  data!: Array<Record<string, unknown>>;
  @ApiProperty({ type: String, nullable: true, example: 'msg_abc', description: 'null on an empty page' }) first_id!: string | null;
  @ApiProperty({ type: String, nullable: true, example: 'msg_abc', description: 'null on an empty page' }) last_id!: string | null;
  @ApiProperty({ example: false }) has_more!: boolean;
}

/** OpenAI's input token count, as `POST /v1/responses/input_tokens` answers it unchanged (documentation only). */
export class ResponseInputTokensDto {
  @ApiProperty({ enum: ['response.input_tokens'] }) object!: 'response.input_tokens';
  @ApiProperty({ type: 'integer', example: 11 }) input_tokens!: number;
}

/** OpenAI's compacted conversation, as `POST /v1/responses/compact` answers it unchanged (documentation only). */
export class ResponseCompactionDto {
  @ApiProperty({ example: 'resp_001' }) id!: string;
  @ApiProperty({ enum: ['response.compaction'] }) object!: 'response.compaction';
  @ApiProperty({ type: 'integer', example: 1764967971 }) created_at!: number;

  @ApiProperty({
    description: 'The conversation’s user messages, then one `compaction` item whose `encrypted_content` stands for the rest',
    type: 'array',
    items: { type: 'object', additionalProperties: true },
    example: [
      { id: 'msg_000', type: 'message', status: 'completed', role: 'user', content: [{ type: 'input_text', text: 'Hello!' }] },
      { id: 'cmp_001', type: 'compaction', encrypted_content: 'gAAAAABpM0Yj-...=' },
    ],
  })
  output!: Array<Record<string, unknown>>;

  @ApiProperty({ type: ResponsesUsageDto, description: 'What the compaction cost: counted into the daily token quotas' })
  usage!: ResponsesUsageDto;
}
