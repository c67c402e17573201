import type { GatewayError } from '@keygate/errors';
import type { RequestContext } from '@keygate/observability';
import { UpstreamError } from '@keygate/providers';
import type { RelayDialect } from '../chat/sse-relay';

/**
 * keygate's Gemini-compatible routes live under Google's API version (`/v1beta/models/{model}:generateContent`, …);
 * Google's uploads under `/upload/v1beta` (`@google/genai`'s `files.upload`, which keygate does not serve).
 */
const GOOGLE_PATH = /^\/(upload\/)?v1beta(\/|$)/i;
/**
 * The Gemini routes under Google's stable `/v1` (`/v1/models/:model(…)::generateContent`, …): a
 * model, then a method after a colon. `/v1/models` and `/v1/models/:model` are OpenAI's.
 */
const GOOGLE_V1_ROUTE = /^\/v1\/models\/:model\([^/]*\)::[A-Za-z]+$/;
/** A path under `/v1` that names a model and one of the Gemini methods keygate serves (decoded, lower-cased). */
const GOOGLE_V1_METHOD_PATH = /^\/v1\/models\/[^/]+:(generatecontent|streamgeneratecontent|counttokens|embedcontent|batchembedcontents)$/;

/**
 * Whether a request speaks Google's Gemini API (its credentials and error envelope): a route under
 * `/v1beta` matched, or its path when none did (`/v1beta/tunedModels`, which keygate does not
 * serve, is refused in Google's shape too); or one of the Gemini routes under `/v1` matched, or
 * when none did, a path that names one of their methods (a model the router refused, malformed or
 * over-long; another HTTP method than POST but GET, which OpenAI's `/v1/models/{model}` takes).
 * Any other unmatched `/v1` path is OpenAI's.
 */
export function speaksGoogle(route: string | undefined, path: string): boolean {
  if (route !== undefined && GOOGLE_V1_ROUTE.test(route)) return true;
  if (route === undefined && GOOGLE_V1_METHOD_PATH.test(path)) return true;
  return GOOGLE_PATH.test(route ?? path);
}

/**
 * Google's `error.status` (a `google.rpc.Code` name) for an HTTP status, as the Gemini API answers
 * them: 400 `INVALID_ARGUMENT`, 401 `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`, 404 `NOT_FOUND`,
 * 429 `RESOURCE_EXHAUSTED`, 500 `INTERNAL`, 502 and 503 `UNAVAILABLE`, 504 `DEADLINE_EXCEEDED`.
 */
export function googleRpcStatus(status: number): string {
  switch (status) {
    case 400:
    case 413:
    case 415:
      return 'INVALID_ARGUMENT';
    case 401:
      return 'UNAUTHENTICATED';
    case 403:
      return 'PERMISSION_DENIED';
    case 404:
      return 'NOT_FOUND';
    case 408:
    case 504:
      return 'DEADLINE_EXCEEDED';
    case 409:
      return 'ABORTED';
    case 429:
      return 'RESOURCE_EXHAUSTED';
    case 499:
      return 'CANCELLED';
    case 501:
      return 'UNIMPLEMENTED';
    case 502:
    case 503:
      return 'UNAVAILABLE';
    case 500:
      return 'INTERNAL';
    default:
      return status >= 500 ? 'INTERNAL' : 'FAILED_PRECONDITION';
  }
}

/** Google's error envelope (`google.rpc.Status` as JSON), with keygate's own code in an `ErrorInfo` detail. */
export interface GoogleErrorBody {
  error: { code: number; message: string; status: string; details: Array<Record<string, unknown>> };
}

/**
 * The contract's error in Google's envelope (`{"error": {"code", "message", "status", "details"}}`),
 * which `@google/genai` and Gemini CLI read. keygate's `error.code` and `error.param` go in a
 * `google.rpc.ErrorInfo` detail (domain `keygate`), a `Retry-After` also as a `google.rpc.RetryInfo`
 * (which Google's clients read). A refusal Gemini itself sent keeps Google's own status name.
 */
export function googleErrorBody(error: GatewayError, requestId: string | null): GoogleErrorBody {
  const metadata: Record<string, string> = { code: error.code };
  if (error.options.param !== undefined) metadata.param = error.options.param;
  if (requestId !== null) metadata.request_id = requestId;
  const details: Array<Record<string, unknown>> = [
    { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: error.code.toUpperCase(), domain: 'keygate', metadata },
  ];
  if (error.options.retryAfterSeconds !== undefined)
    details.push({ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: `${error.options.retryAfterSeconds}s` });
  const cause = error.options.cause;
  const upstream = cause instanceof UpstreamError && cause.provider === 'gemini' && error.status < 500 ? cause.code : undefined;
  return { error: { code: error.status, message: error.message, status: upstream ?? googleRpcStatus(error.status), details } };
}

/**
 * Google's stream: its `data:` events pass as they are, and it ends with the answer's last one; an
 * error is a `data:` event holding Google's error envelope. Nothing else is written between events,
 * as Google writes nothing: Google's SDKs read the stream as `data:` lines and nothing else, and
 * fail on an SSE comment (`@google/generative-ai`, which LangChain's `@langchain/google-genai`
 * uses: "Failed to parse stream"; `@google/genai` before 1.32; the Python `google-genai`).
 */
export const GOOGLE_STREAM: RelayDialect = {
  done: '',
  errorEvent: (error, { requestId }) => `data: ${JSON.stringify(googleErrorBody(error, requestId))}\n\n`,
  keepAlive: undefined,
};

/** Whether a request was found to speak Google's API on arrival (see {@link speaksGoogle}). */
export function isGoogleRequest(ctx: Pick<RequestContext, 'google'> | undefined): boolean {
  return ctx?.google === true;
}
