/**
 * The subset of the Gemini API (Generative Language API, `v1beta`) wire format keygate writes and
 * reads: `generateContent`, `streamGenerateContent?alt=sse` and `batchEmbedContents`. Field names
 * are the REST (camelCase) spellings; everything Google may add later is optional here.
 */

/** One part of a `Content`: exactly one data field is set. */
export interface GeminiPart {
  text?: string;
  /** Set on thought-summary text parts (only when `includeThoughts` was asked for). */
  thought?: boolean;
  /** Opaque reasoning state that must be sent back, in the same part, on the next turn. */
  thoughtSignature?: string;
  inlineData?: { mimeType: string; data: string };
  functionCall?: GeminiFunctionCall;
  functionResponse?: { name: string; response: Record<string, unknown>; id?: string };
}

/** A function call as the model makes it; `args` is a JSON object, never a string. */
export interface GeminiFunctionCall {
  name: string;
  args?: Record<string, unknown>;
  id?: string;
}

/** One turn of the conversation. */
export interface GeminiContent {
  role?: 'user' | 'model';
  parts: GeminiPart[];
}

/** The OpenAPI 3.0 subset Gemini takes for `responseSchema` and function `parameters`. */
export interface GeminiSchema {
  type?: 'STRING' | 'NUMBER' | 'INTEGER' | 'BOOLEAN' | 'ARRAY' | 'OBJECT' | 'NULL';
  format?: string;
  title?: string;
  description?: string;
  nullable?: boolean;
  enum?: string[];
  items?: GeminiSchema;
  minItems?: number;
  maxItems?: number;
  properties?: Record<string, GeminiSchema>;
  required?: string[];
  propertyOrdering?: string[];
  minProperties?: number;
  maxProperties?: number;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  anyOf?: GeminiSchema[];
  default?: unknown;
  example?: unknown;
}

/** One function the model may call. */
export interface GeminiFunctionDeclaration {
  name: string;
  description?: string;
  parameters?: GeminiSchema;
  /** The parameters as JSON Schema, for a schema the OpenAPI subset cannot say (exclusive with `parameters`). */
  parametersJsonSchema?: Record<string, unknown>;
}

/** Sampling and output settings (`generationConfig`). */
export interface GeminiGenerationConfig {
  maxOutputTokens?: number;
  temperature?: number;
  topP?: number;
  stopSequences?: string[];
  candidateCount?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  seed?: number;
  responseMimeType?: string;
  responseSchema?: GeminiSchema;
  /** The answer's schema as JSON Schema, for one the OpenAPI subset cannot say (exclusive with `responseSchema`). */
  responseJsonSchema?: Record<string, unknown>;
  /** How much the model thinks: a token budget (Gemini 2.5) or a level (Gemini 3 and later), never both. */
  thinkingConfig?: { thinkingBudget?: number; thinkingLevel?: string };
}

/** `toolConfig.functionCallingConfig.mode`. */
export type GeminiFunctionCallingMode = 'AUTO' | 'ANY' | 'NONE';

/** `models.generateContent` / `models.streamGenerateContent` request body. */
export interface GenerateContentRequest {
  contents: GeminiContent[];
  systemInstruction?: { parts: GeminiPart[] };
  tools?: Array<{ functionDeclarations: GeminiFunctionDeclaration[] }>;
  toolConfig?: { functionCallingConfig: { mode: GeminiFunctionCallingMode; allowedFunctionNames?: string[] } };
  generationConfig?: GeminiGenerationConfig;
}

/** One generated answer (a choice, in OpenAI's terms). */
export interface GeminiCandidate {
  content?: { parts?: GeminiPart[]; role?: string };
  /** Absent on intermediate stream chunks. */
  finishReason?: string;
  index?: number;
  safetyRatings?: unknown[];
}

/** Token counts; protobuf JSON omits zero values, so every count may be missing. */
export interface GeminiUsageMetadata {
  promptTokenCount?: number;
  candidatesTokenCount?: number;
  thoughtsTokenCount?: number;
  toolUsePromptTokenCount?: number;
  cachedContentTokenCount?: number;
  totalTokenCount?: number;
}

/** `generateContent` response, and each `data:` event of `streamGenerateContent?alt=sse`. */
export interface GenerateContentResponse {
  candidates?: GeminiCandidate[];
  promptFeedback?: { blockReason?: string; safetyRatings?: unknown[] };
  usageMetadata?: GeminiUsageMetadata;
  modelVersion?: string;
  responseId?: string;
}

/** Google's error envelope (`google.rpc.Status` as JSON), also sent as an in-stream event. */
export interface GeminiErrorBody {
  error?: {
    code?: number;
    message?: string;
    status?: string;
    details?: Array<{ '@type'?: string; reason?: string; retryDelay?: string; [key: string]: unknown }>;
  };
}

/** `models.batchEmbedContents` request body. */
export interface BatchEmbedContentsRequest {
  requests: Array<{ model: string; content: { parts: Array<{ text: string }> }; outputDimensionality?: number }>;
}

/** `models.batchEmbedContents` response body. */
export interface BatchEmbedContentsResponse {
  embeddings?: Array<{ values?: number[] }>;
}
