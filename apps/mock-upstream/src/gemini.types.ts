/**
 * The subset of the Gemini (Generative Language API) wire types the mock
 * produces, shared by the handler and the specs.
 */

export interface GeminiErrorBody {
  error: { code: number; message: string; status: string; details?: Array<Record<string, unknown>> };
}

export interface GeminiTextPart {
  text: string;
}

export interface GeminiFunctionCallPart {
  /** `id`: Gemini 3 gives every call one, and wants it back on the functionResponse. */
  functionCall: { name: string; args: Record<string, unknown>; id?: string };
}

export type GeminiPart = GeminiTextPart | GeminiFunctionCallPart;

export type GeminiFinishReason = 'STOP' | 'MAX_TOKENS' | 'SAFETY';

export interface GeminiSafetyRating {
  category: string;
  probability: string;
  blocked?: boolean;
}

export interface GeminiCandidate {
  /** Absent on a safety-blocked candidate. */
  content?: { parts: GeminiPart[]; role: 'model' };
  /** Absent on intermediate stream chunks. */
  finishReason?: GeminiFinishReason;
  index?: number;
  safetyRatings?: GeminiSafetyRating[];
}

export interface GeminiUsageMetadata {
  promptTokenCount: number;
  /** Absent on intermediate stream chunks and when zero (protobuf JSON omits zeros). */
  candidatesTokenCount?: number;
  /** Tokens the model spent thinking (absent when it did not think). */
  thoughtsTokenCount?: number;
  /** Of the prompt, tokens read from the context cache (absent when none). */
  cachedContentTokenCount?: number;
  totalTokenCount: number;
  promptTokensDetails?: Array<{ modality: string; tokenCount: number }>;
}

export interface GenerateContentResponse {
  candidates: GeminiCandidate[];
  usageMetadata: GeminiUsageMetadata;
  modelVersion: string;
  responseId: string;
}

export interface EmbedContentResponse {
  embedding: { values: number[] };
}

export interface BatchEmbedContentsResponse {
  embeddings: Array<{ values: number[] }>;
}
