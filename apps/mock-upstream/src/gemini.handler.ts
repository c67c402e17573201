import { requestSchemaProblems } from './gemini.schema';
import { jsonObjectReply, sampleJson } from './mock.structured';
import { stripDirectives } from './mock.directives';
import {
  asArray,
  asString,
  completionTokens,
  DEFAULT_CHUNKS,
  embedding,
  isRecord,
  nextId,
  planToolCalls,
  promptTokens,
  replyText,
  splitChunks,
  type JsonRecord,
  type ToolCallPlan,
} from './mock.content';
import type { ErrorReply, Exchange, ProviderHandler } from './mock.exchange';
import { sendJsonWithFaults, sendStream, type StreamPlan } from './mock.stream';
import { mockTokens, writtenUsage } from './mock.usage';
import type {
  GeminiCandidate,
  GeminiErrorBody,
  GeminiFinishReason,
  GeminiFunctionCallPart,
  GeminiPart,
  GeminiSafetyRating,
  GeminiUsageMetadata,
  GenerateContentResponse,
} from './gemini.types';

/**
 * Gemini (Generative Language API, v1beta) wire format: generateContent,
 * streamGenerateContent (SSE with `alt=sse`, otherwise a streamed JSON array), countTokens,
 * embedContent and batchEmbedContents, with Google's `{"error":{code,message,status}}`.
 */

/** google.rpc.Code names Google puts in `error.status` for each HTTP status. */
function rpcStatus(status: number): string {
  switch (status) {
    case 400:
      return 'INVALID_ARGUMENT';
    case 401:
      return 'UNAUTHENTICATED';
    case 403:
      return 'PERMISSION_DENIED';
    case 404:
      return 'NOT_FOUND';
    case 409:
      return 'ABORTED';
    case 429:
      return 'RESOURCE_EXHAUSTED';
    case 499:
      return 'CANCELLED';
    case 500:
      return 'INTERNAL';
    case 501:
      return 'UNIMPLEMENTED';
    case 503:
      return 'UNAVAILABLE';
    case 504:
      return 'DEADLINE_EXCEEDED';
    default:
      return status >= 500 ? 'UNKNOWN' : 'FAILED_PRECONDITION';
  }
}

function defaultMessage(status: number): string {
  switch (status) {
    case 429:
      return 'Resource has been exhausted (e.g. check quota).';
    case 500:
      return 'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting';
    case 503:
      return 'The model is overloaded. Please try again later.';
    case 504:
      return 'Deadline expired before operation could complete.';
    default:
      return `Mock failure with status ${status}.`;
  }
}

function geminiErrorBody(status: number, message?: string, details?: Array<Record<string, unknown>>): GeminiErrorBody {
  const error: GeminiErrorBody['error'] = { code: status, message: message ?? defaultMessage(status), status: rpcStatus(status) };
  if (details) error.details = details;
  return { error };
}

function geminiError(status: number, message?: string, details?: Array<Record<string, unknown>>): ErrorReply {
  return { status, body: geminiErrorBody(status, message, details) };
}

/** Text parts of one `Content`. */
function partsText(content: unknown): string {
  if (!isRecord(content)) return '';
  let out = '';
  for (const part of asArray(content.parts)) {
    if (isRecord(part) && typeof part.text === 'string') out = out === '' ? part.text : `${out}\n${part.text}`;
  }
  return out;
}

function hasFunctionResponse(content: unknown): boolean {
  return (
    isRecord(content) && asArray(content.parts).some((p) => isRecord(p) && (isRecord(p.functionResponse) || isRecord(p.function_response)))
  );
}

/** Models that give function calls ids (and check the ids of the responses). */
const GEMINI_3 = /^gemini-3/;

/** Tokens the mock reports as spent thinking when a request asked its model to think. */
export const MOCK_THOUGHT_TOKENS = 16;

/**
 * `generationConfig.thinkingConfig` as Gemini checks it: a budget or a level, not both; a level on a
 * model that takes budgets (2.5); no thinking at all on the models that do not think (1.x, 2.0).
 * Returns the problems, and whether the model thinks.
 */
function thinkingProblems(config: unknown, model: string): { problems: string[]; thinks: boolean } {
  const thinking = isRecord(config) ? field(config, 'thinkingConfig', 'thinking_config') : undefined;
  const budget = isRecord(thinking) ? field(thinking, 'thinkingBudget', 'thinking_budget') : undefined;
  const level = isRecord(thinking) ? field(thinking, 'thinkingLevel', 'thinking_level') : undefined;
  const thinksByDefault = /^gemini-(2\.5|[3-9])/.test(model);
  if (thinking === undefined) return { problems: [], thinks: thinksByDefault };
  if (budget !== undefined && level !== undefined)
    return { problems: ['You cannot set both thinking_level and the legacy thinking_budget parameter.'], thinks: false };
  if (!thinksByDefault) return { problems: ['Thinking is not supported for this model.'], thinks: false };
  if (level !== undefined && /^gemini-2/.test(model))
    return { problems: ['Thinking level is not supported for this model.'], thinks: false };
  if (level !== undefined && (typeof level !== 'string' || !['minimal', 'low', 'medium', 'high'].includes(level.toLowerCase())))
    return { problems: [`Invalid value at 'generation_config.thinking_config.thinking_level' (${JSON.stringify(level)})`], thinks: false };
  return { problems: [], thinks: budget !== 0 };
}

/**
 * A functionResponse that carries an id must answer a functionCall of the model turn before it
 * with that id, as Gemini 3 checks ("functionResponse.id does not match functionCall.id").
 */
function functionResponseIdProblems(contents: unknown[]): string[] {
  const problems: string[] = [];
  contents.forEach((content, c) => {
    if (!isRecord(content)) return;
    const previous = contents[c - 1];
    const callIds = new Set<string>();
    if (isRecord(previous) && previous.role === 'model')
      for (const part of asArray(previous.parts)) {
        const call = isRecord(part) ? field(part, 'functionCall', 'function_call') : undefined;
        if (isRecord(call) && typeof call.id === 'string') callIds.add(call.id);
      }
    asArray(content.parts).forEach((part, p) => {
      const response = isRecord(part) ? field(part, 'functionResponse', 'function_response') : undefined;
      if (isRecord(response) && typeof response.id === 'string' && !callIds.has(response.id))
        problems.push(
          `* GenerateContentRequest.contents[${c}].parts[${p}].function_response.id: functionResponse.id does not match functionCall.id`,
        );
    });
  });
  return problems;
}

/** Models that refuse penalties (Gemini 2.5 and later). */
const REFUSES_PENALTIES = /^gemini-(2\.5|[3-9])/;

/**
 * What Gemini refuses of a request's fields by model generation: function declarations beside JSON
 * output before Gemini 3 (Gemini 3 takes both); a penalty other than 0 from Gemini 2.5 on; more
 * than one candidate on Gemini 3; and on every model a seed outside int32.
 */
function generationProblems(body: JsonRecord, config: unknown, model: string): string[] {
  const problems: string[] = [];
  const mime = isRecord(config) ? field(config, 'responseMimeType', 'response_mime_type') : undefined;
  if (mime === 'application/json' && !GEMINI_3.test(model) && toolInfo(body).declared.length > 0)
    problems.push("Function calling with a response mime type: 'application/json' is unsupported");
  const penalties = isRecord(config)
    ? [field(config, 'presencePenalty', 'presence_penalty'), field(config, 'frequencyPenalty', 'frequency_penalty')]
    : [];
  if (REFUSES_PENALTIES.test(model) && penalties.some((p) => p !== undefined && p !== 0))
    problems.push(`Penalty is not enabled for models/${model}`);
  const candidates = isRecord(config) ? field(config, 'candidateCount', 'candidate_count') : undefined;
  if (GEMINI_3.test(model) && typeof candidates === 'number' && candidates > 1)
    problems.push('Multiple candidates is not enabled for this model');
  // Any model: the seed is an int32 in Google's proto, which refuses a larger number while parsing.
  const seed = isRecord(config) ? config.seed : undefined;
  if (typeof seed === 'number' && (seed < -(2 ** 31) || seed > 2 ** 31 - 1))
    problems.push(`Invalid value at 'generation_config.seed' (TYPE_INT32), ${seed}`);
  return problems;
}

/** Gemini's proto-JSON parser accepts camelCase and snake_case field names alike. */
function field(o: JsonRecord, camel: string, snake: string): unknown {
  return o[camel] ?? o[snake];
}

/**
 * The answer's text under `generationConfig`'s response format: JSON of `responseSchema` (or
 * `responseJsonSchema`) with `responseMimeType: application/json`, a JSON object for that type
 * alone, the first value of an enum schema for `text/x.enum` (Gemini answers the bare value there),
 * else the usual reply.
 */
function formattedReply(config: unknown, reply: string): string {
  if (!isRecord(config)) return reply;
  const mime = field(config, 'responseMimeType', 'response_mime_type');
  const schema = field(config, 'responseSchema', 'response_schema') ?? field(config, 'responseJsonSchema', 'response_json_schema');
  if (mime === 'text/x.enum' && isRecord(schema) && Array.isArray(schema.enum)) return String(schema.enum[0]);
  if (mime !== 'application/json') return reply;
  return isRecord(schema) ? sampleJson(schema) : jsonObjectReply(reply);
}

interface GeminiToolInfo {
  declared: string[];
  parameters: Map<string, unknown>;
  forced: string | undefined;
  disabled: boolean;
}

function toolInfo(body: JsonRecord): GeminiToolInfo {
  const declared: string[] = [];
  const parameters = new Map<string, unknown>();
  for (const tool of asArray(body.tools)) {
    if (!isRecord(tool)) continue;
    for (const fn of asArray(field(tool, 'functionDeclarations', 'function_declarations'))) {
      const name = isRecord(fn) ? asString(fn.name) : undefined;
      if (isRecord(fn) && name) {
        declared.push(name);
        parameters.set(name, fn.parameters ?? field(fn, 'parametersJsonSchema', 'parameters_json_schema'));
      }
    }
  }
  const toolConfig = field(body, 'toolConfig', 'tool_config');
  const fcc = isRecord(toolConfig) ? field(toolConfig, 'functionCallingConfig', 'function_calling_config') : undefined;
  let forced: string | undefined;
  let disabled = false;
  if (isRecord(fcc)) {
    if (fcc.mode === 'ANY') {
      const allowed = asArray(field(fcc, 'allowedFunctionNames', 'allowed_function_names'));
      forced = asString(allowed[0]) ?? '';
    } else if (fcc.mode === 'NONE') {
      disabled = true;
    }
  }
  return { declared, parameters, forced, disabled };
}

/** Ratings as a blocked answer carries them: one category rated HIGH and marked blocked. */
const SAFETY_RATINGS: GeminiSafetyRating[] = [
  { category: 'HARM_CATEGORY_SEXUALLY_EXPLICIT', probability: 'NEGLIGIBLE' },
  { category: 'HARM_CATEGORY_HATE_SPEECH', probability: 'NEGLIGIBLE' },
  { category: 'HARM_CATEGORY_HARASSMENT', probability: 'NEGLIGIBLE' },
  { category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH', blocked: true },
];

function embeddingDims(model: string, requested: unknown): number {
  if (typeof requested === 'number' && Number.isInteger(requested) && requested > 0 && requested <= 8192) return requested;
  return model.includes('gemini-embedding') ? 3072 : 768;
}

interface Answer {
  /** Parts of the whole candidate content (one text part, or the function calls). */
  parts: GeminiPart[];
  /** The same content as stream chunks: text pieces, or all function calls at once. */
  chunks: GeminiPart[][];
  finishReason: GeminiFinishReason;
  safety: boolean;
  promptTokens: number;
  candidateTokens: number;
}

class GeminiHandler implements ProviderHandler {
  readonly provider = 'gemini' as const;

  error(status: number, message?: string): ErrorReply {
    return geminiError(status, message);
  }

  invalidJson(): ErrorReply {
    return geminiError(400, 'Invalid JSON payload received. Unexpected token.');
  }

  /**
   * Real Gemini behaviour, deliberately: a missing key is 403 PERMISSION_DENIED
   * and a wrong key is 400 INVALID_ARGUMENT with reason API_KEY_INVALID (Google
   * never answers 401 to API-key callers), so the gateway is tested against what
   * it will actually see.
   */
  authenticate(ex: Exchange, acceptAnyKey: boolean): ErrorReply | undefined {
    const raw = ex.req.headers['x-goog-api-key'];
    const key = ((Array.isArray(raw) ? raw[0] : raw) ?? ex.queryParam('key') ?? '').trim();
    if (key === '') {
      return geminiError(
        403,
        "Method doesn't allow unregistered callers (callers without established identity). Please use API key or other form of API consumer identity to call this API.",
      );
    }
    if (acceptAnyKey || key.startsWith('AIza-mock')) return undefined;
    return geminiError(400, 'API key not valid. Please pass a valid API key.', [
      {
        '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
        reason: 'API_KEY_INVALID',
        domain: 'googleapis.com',
        metadata: { service: 'generativelanguage.googleapis.com' },
      },
    ]);
  }

  directiveText(ex: Exchange): string {
    const body = ex.body;
    if (!isRecord(body)) return '';
    switch (ex.route) {
      case 'gemini.embedContent':
        ex.userText = partsText(body.content);
        break;
      case 'gemini.batchEmbedContents':
        ex.userText = asArray(body.requests)
          .map((r) => (isRecord(r) ? partsText(r.content) : ''))
          .join('\n');
        break;
      default: {
        const contents = asArray(body.contents);
        for (let i = contents.length - 1; i >= 0; i--) {
          const c = contents[i];
          // Role may be omitted for single-turn requests; it then means "user".
          if (isRecord(c) && c.role !== 'model' && c.role !== 'function' && !hasFunctionResponse(c)) {
            ex.userText = partsText(c);
            break;
          }
        }
      }
    }
    return ex.userText;
  }

  handle(ex: Exchange): void | Promise<void> {
    switch (ex.route) {
      case 'gemini.embedContent':
        return this.embedContent(ex);
      case 'gemini.batchEmbedContents':
        return this.batchEmbedContents(ex);
      case 'gemini.countTokens':
        return this.countTokens(ex);
      default:
        return this.generate(ex);
    }
  }

  /**
   * `countTokens`: the prompt's tokens as a `generateContent` answer would report them
   * (`promptTokenCount`), for `contents` or a whole `generateContentRequest`.
   */
  private countTokens(ex: Exchange): void {
    const body = isRecord(ex.body) ? ex.body : {};
    const wrapped = field(body, 'generateContentRequest', 'generate_content_request');
    const request = isRecord(wrapped) ? wrapped : body;
    const contents = asArray(request.contents);
    if (contents.length === 0) return ex.sendError(geminiError(400, '* CountTokensRequest.contents: contents is not specified\n'));
    let chars = partsText(field(request, 'systemInstruction', 'system_instruction')).length;
    for (const c of contents) chars += partsText(c).length;
    const total = promptTokens(chars, contents.length);
    sendJsonWithFaults(ex, { totalTokens: total, promptTokensDetails: [{ modality: 'TEXT', tokenCount: total }] });
  }

  private embedContent(ex: Exchange): void {
    const body = isRecord(ex.body) ? ex.body : {};
    if (!isRecord(body.content)) return ex.sendError(geminiError(400, '* EmbedContentRequest.content: content is not specified\n'));
    const dims = embeddingDims(ex.pathParam, field(body, 'outputDimensionality', 'output_dimensionality'));
    // Spliced as a string (shape: EmbedContentResponse) around the cached vector text.
    ex.sendJson(200, `{"embedding":{"values":${embedding(partsText(body.content), dims).json}}}`);
  }

  private batchEmbedContents(ex: Exchange): void {
    const body = isRecord(ex.body) ? ex.body : {};
    const requests = asArray(body.requests);
    if (requests.length === 0) return ex.sendError(geminiError(400, '* BatchEmbedContentsRequest.requests: requests is not specified\n'));
    const parts: string[] = [];
    for (let i = 0; i < requests.length; i++) {
      const r = requests[i];
      if (!isRecord(r) || !isRecord(r.content)) {
        return ex.sendError(geminiError(400, `* BatchEmbedContentsRequest.requests[${i}].content: content is not specified\n`));
      }
      const dims = embeddingDims(ex.pathParam, field(r, 'outputDimensionality', 'output_dimensionality'));
      parts.push(`{"values":${embedding(partsText(r.content), dims).json}}`);
    }
    sendJsonWithFaults(ex, `{"embeddings":[${parts.join(',')}]}`);
  }

  private answer(ex: Exchange, body: JsonRecord, contents: unknown[]): Answer {
    let chars = partsText(field(body, 'systemInstruction', 'system_instruction')).length;
    for (const c of contents) chars += partsText(c).length;
    const prompt = promptTokens(chars, contents.length);
    const d = ex.directives;
    if (d.safety) return { parts: [], chunks: [], finishReason: 'SAFETY', safety: true, promptTokens: prompt, candidateTokens: 0 };

    const last = contents[contents.length - 1];
    const userText = stripDirectives(ex.userText);
    const plan: ToolCallPlan | undefined = planToolCalls({
      ...toolInfo(body),
      userTurn: isRecord(last) && last.role !== 'model' && !hasFunctionResponse(last),
      directives: d,
      userText,
    });
    if (plan) {
      // Gemini delivers function calls whole (no argument streaming); Gemini 3 gives each an id.
      const calls: GeminiFunctionCallPart[] = [];
      const ids = GEMINI_3.test(ex.pathParam);
      for (let i = 0; i < plan.count; i++)
        calls.push({ functionCall: { name: plan.name, args: plan.args, ...(ids ? { id: nextId('fc') } : {}) } });
      return {
        parts: calls,
        chunks: [calls],
        finishReason: 'STOP',
        safety: false,
        promptTokens: prompt,
        candidateTokens: completionTokens(plan.argumentsJson) * plan.count,
      };
    }
    const text = formattedReply(
      field(body, 'generationConfig', 'generation_config'),
      replyText('gemini', userText, ex.directives.answerChars),
    );
    return {
      parts: [{ text }],
      chunks: splitChunks(text, d.chunks ?? DEFAULT_CHUNKS).map((piece) => [{ text: piece }]),
      finishReason: d.finish === 'length' ? 'MAX_TOKENS' : 'STOP',
      safety: false,
      promptTokens: prompt,
      candidateTokens: completionTokens(text),
    };
  }

  private generate(ex: Exchange): void | Promise<void> {
    const body = isRecord(ex.body) ? ex.body : {};
    const contents = asArray(body.contents);
    if (contents.length === 0) return ex.sendError(geminiError(400, '* GenerateContentRequest.contents: contents is not specified\n'));
    const config = field(body, 'generationConfig', 'generation_config');
    const thinking = thinkingProblems(config, ex.pathParam);
    const problems = [
      ...requestSchemaProblems(body),
      ...functionResponseIdProblems(contents),
      ...thinking.problems,
      ...generationProblems(body, config, ex.pathParam),
    ];
    if (problems.length > 0) return ex.sendError(geminiError(400, problems.join('\n')));
    const a = this.answer(ex, body, contents);
    // generationConfig.candidateCount: that many candidates (the same answer), each numbered.
    const requested = isRecord(config) ? field(config, 'candidateCount', 'candidate_count') : undefined;
    const n = typeof requested === 'number' && Number.isInteger(requested) && requested > 1 && !a.safety ? Math.min(requested, 8) : 1;
    a.candidateTokens *= n;
    const model = ex.pathParam;
    const responseId = nextId('mock');
    // Only a request that asked for thinking reports thought tokens: the existing answers stay as they were.
    const thinks = thinking.thinks && config !== undefined && isRecord(config) && field(config, 'thinkingConfig', 'thinking_config');
    const tokens = mockTokens(ex.directives, a.promptTokens, 0);
    const thoughts = (thinks ? MOCK_THOUGHT_TOKENS : 0) + tokens.reasoning;
    const promptDetails = [{ modality: 'TEXT', tokenCount: tokens.prompt }];
    // Protobuf JSON omits zero counts, so a blocked answer has no candidatesTokenCount.
    const cached = tokens.cached ? { cachedContentTokenCount: tokens.cached } : {};
    const finalUsage: GeminiUsageMetadata = writtenUsage(
      ex.directives,
      a.safety
        ? { promptTokenCount: tokens.prompt, ...cached, totalTokenCount: tokens.prompt, promptTokensDetails: promptDetails }
        : {
            promptTokenCount: tokens.prompt,
            ...cached,
            candidatesTokenCount: a.candidateTokens,
            ...(thoughts ? { thoughtsTokenCount: thoughts } : {}),
            totalTokenCount: tokens.prompt + a.candidateTokens + thoughts,
            promptTokensDetails: promptDetails,
          },
    );

    if (ex.route === 'gemini.generateContent') {
      const candidate: GeminiCandidate = a.safety
        ? { finishReason: 'SAFETY', index: 0, safetyRatings: SAFETY_RATINGS }
        : { content: { parts: a.parts, role: 'model' }, finishReason: a.finishReason, index: 0 };
      const candidates = Array.from({ length: n }, (_, index) => ({ ...candidate, index }));
      const response: GenerateContentResponse = { candidates, usageMetadata: finalUsage, modelVersion: model, responseId };
      sendJsonWithFaults(ex, response);
      return;
    }

    // Streaming: intermediate chunks carry the prompt's usage and, as Gemini's running totals do once
    // the model has thought (before its first text), the thought tokens; the last one the totals and
    // finishReason.
    const partialUsage: GeminiUsageMetadata = writtenUsage(ex.directives, {
      promptTokenCount: tokens.prompt,
      ...cached,
      ...(thoughts ? { thoughtsTokenCount: thoughts } : {}),
      totalTokenCount: tokens.prompt + thoughts,
      promptTokensDetails: promptDetails,
    });
    const responses: GenerateContentResponse[] = a.safety
      ? [
          {
            candidates: [{ finishReason: 'SAFETY', index: 0, safetyRatings: SAFETY_RATINGS }],
            usageMetadata: finalUsage,
            modelVersion: model,
            responseId,
          },
        ]
      : a.chunks.map((parts, i) => {
          const isLast = i === a.chunks.length - 1;
          // Protobuf JSON leaves out the first candidate's index 0; the others carry theirs.
          const candidates = Array.from({ length: n }, (_, index): GeminiCandidate => {
            const candidate: GeminiCandidate = { content: { parts, role: 'model' } };
            if (index > 0) candidate.index = index;
            if (isLast) candidate.finishReason = a.finishReason;
            return candidate;
          });
          return { candidates, usageMetadata: isLast ? finalUsage : partialUsage, modelVersion: model, responseId };
        });
    const errorJson = JSON.stringify(geminiErrorBody(503));

    let plan: StreamPlan;
    if (ex.queryParam('alt') === 'sse') {
      plan = {
        headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'content-disposition': 'attachment' },
        head: '',
        body: responses.map((r) => `data: ${JSON.stringify(r)}\r\n\r\n`),
        tail: '',
        errorFrame: () => `data: ${errorJson}\r\n\r\n`,
      };
    } else {
      // Without alt=sse Google streams one JSON array, element by element.
      plan = {
        headers: { 'content-type': 'application/json; charset=UTF-8' },
        head: '[',
        body: responses.map((r, i) => `${i === 0 ? '' : ',\r\n'}${JSON.stringify(r)}`),
        tail: ']',
        errorFrame: (sent) => `${sent === 0 ? '' : ',\r\n'}${errorJson}]`,
      };
    }
    return sendStream(ex, plan);
  }
}

export const geminiHandler: ProviderHandler = new GeminiHandler();
