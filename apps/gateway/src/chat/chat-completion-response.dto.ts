import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { CHAT_STREAM_EXAMPLE } from '../http/stream-examples';

/** The assistant's message of a choice (OpenAI's shape, whatever the provider). */
class ChatCompletionMessageDto {
  @ApiProperty({ enum: ['assistant'], example: 'assistant' }) role!: 'assistant';
  @ApiProperty({ type: String, nullable: true, example: 'Hello! How can I help?' }) content!: string | null;
  @ApiPropertyOptional({ type: String, nullable: true, example: null }) refusal?: string | null;
  @ApiPropertyOptional({ type: 'array', items: { type: 'object', additionalProperties: true }, description: 'Function calls' })
  tool_calls?: Array<Record<string, unknown>>;
}

class ChatCompletionChoiceDto {
  @ApiProperty({ type: 'integer', example: 0 }) index!: number;
  @ApiProperty({ type: ChatCompletionMessageDto }) message!: ChatCompletionMessageDto;
  @ApiProperty({
    type: String,
    nullable: true,
    example: 'stop',
    description: '`stop`, `length`, `tool_calls`, `content_filter`…',
  })
  finish_reason!: string | null;
  @ApiPropertyOptional({ type: 'object', additionalProperties: true, nullable: true, example: null }) logprobs?: Record<
    string,
    unknown
  > | null;
}

class ChatCompletionUsageDto {
  @ApiProperty({ type: 'integer', example: 9 }) prompt_tokens!: number;
  @ApiProperty({ type: 'integer', example: 12 }) completion_tokens!: number;
  @ApiProperty({ type: 'integer', example: 21 }) total_tokens!: number;
}

/** OpenAI's `chat.completion` object, as keygate answers it for every provider. */
export class ChatCompletionDto {
  @ApiProperty({ example: 'chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT' }) id!: string;
  @ApiProperty({ enum: ['chat.completion'], example: 'chat.completion' }) object!: 'chat.completion';
  @ApiProperty({ type: 'integer', example: 1741569952, description: 'Unix seconds' }) created!: number;
  @ApiProperty({ example: 'gpt-4o-mini' }) model!: string;
  @ApiProperty({ type: [ChatCompletionChoiceDto] }) choices!: ChatCompletionChoiceDto[];
  @ApiPropertyOptional({ type: ChatCompletionUsageDto, description: 'Absent when an OpenAI-compatible host reports none' })
  usage?: ChatCompletionUsageDto;
  @ApiPropertyOptional({ type: String, nullable: true, example: 'fp_44709d6fcb' }) system_fingerprint?: string | null;
}

/** The stream of `POST /v1/chat/completions` with `stream: true`. */
export const CHAT_COMPLETION_STREAM = {
  description:
    'Server-sent events: `data:` lines, each a chat.completion.chunk object, then `data: [DONE]`; with `stream_options.include_usage`, a last chunk with no choices carries the usage',
  example: CHAT_STREAM_EXAMPLE,
};
