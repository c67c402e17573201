import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import {
  IsArray,
  IsBoolean,
  IsInt,
  IsNumber,
  IsObject,
  IsOptional,
  IsString,
  Max,
  MaxLength,
  Min,
  MinLength,
  ValidateIf,
} from 'class-validator';

const INPUT = 'input must be a string or an array of input items (objects)';

/**
 * `POST /v1/responses` body: OpenAI's Responses request. Fields not listed here (`reasoning`,
 * `text`, `tool_choice`, `previous_response_id`, `include`, …) are passed on to OpenAI unchanged.
 */
export class ResponsesRequestDto {
  @ApiProperty({ example: 'gpt-4o-mini' })
  @IsString()
  @MinLength(1)
  @MaxLength(256)
  model!: string;

  @ApiProperty({
    description: 'Text, or an array of input items (messages, function call outputs, …)',
    example: 'Hello!',
    oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'object', additionalProperties: true } }],
  })
  @ValidateIf((r: ResponsesRequestDto) => typeof r.input !== 'string')
  @IsArray({ message: INPUT })
  @IsObject({ each: true, message: INPUT })
  input!: string | Array<Record<string, unknown>>;

  @ApiPropertyOptional({ example: 'Answer briefly.' }) @IsOptional() @IsString() instructions?: string;

  @ApiPropertyOptional({ description: 'Capped by the product policy; set to the cap when absent' })
  @IsOptional()
  @IsInt()
  @Min(1)
  max_output_tokens?: number;

  @ApiPropertyOptional({ default: false }) @IsOptional() @IsBoolean() stream?: boolean;
  @ApiPropertyOptional({ example: 0.7 }) @IsOptional() @IsNumber() temperature?: number;
  @ApiPropertyOptional({ minimum: 0, maximum: 1 }) @IsOptional() @IsNumber() @Min(0) @Max(1) top_p?: number;
  @ApiPropertyOptional({ type: 'array', items: { type: 'object', additionalProperties: true } })
  @IsOptional()
  @IsArray()
  @IsObject({ each: true, message: 'each tool must be an object' })
  tools?: Array<Record<string, unknown>>;
}

/** The usage block of a Response (documentation only). */
export class ResponsesUsageDto {
  @ApiProperty({ example: 12, description: 'Prompt tokens, cached ones included' }) input_tokens!: number;
  @ApiProperty({ example: 48, description: 'Generated tokens, reasoning included' }) output_tokens!: number;
  @ApiProperty({ example: 60 }) total_tokens!: number;
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
