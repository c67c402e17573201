import { ERROR_CODES, type ErrorCodeSpec, type GatewayErrorCode } from './error-codes';

/** Options that refine how a {@link GatewayError} is answered. */
export interface GatewayErrorOptions {
  /** Seconds for the `Retry-After` header (429, 503). */
  retryAfterSeconds?: number;
  /** Extra response headers (e.g. rate-limit headers). */
  headers?: Record<string, string>;
  /** The offending parameter, echoed as `error.param`. */
  param?: string;
  /** Underlying error, kept for logs only: never sent to the client. */
  cause?: unknown;
  /**
   * Machine-readable detail, sent as `error.details` (Anthropic's envelope has it: its SDKs read
   * `details.error_code` to tell a thread refusal they can recover from).
   */
  details?: Readonly<Record<string, string>>;
}

/** A domain error with a code; the exception filter turns it into the contract's error body. */
export class GatewayError extends Error {
  readonly spec: ErrorCodeSpec;

  constructor(
    readonly code: GatewayErrorCode,
    message: string,
    readonly options: GatewayErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.spec = ERROR_CODES[code];
  }

  get status(): number {
    return this.spec.status;
  }

  /** The OpenAI-shaped body: `{"error": {"message", "type", "code", "param"}}`. */
  toBody(): OpenAiErrorBody {
    const body = errorBody(this.code, this.message, this.options.param);
    if (this.options.details) body.error.details = { ...this.options.details };
    return body;
  }
}

/** OpenAI's error envelope. */
export interface OpenAiErrorBody {
  error: { message: string; type: string; code: string; param: string | null; details?: Record<string, string> };
}

/** Builds the contract's error body for a code. */
export function errorBody(code: GatewayErrorCode, message: string, param?: string): OpenAiErrorBody {
  return { error: { message, type: ERROR_CODES[code].type, code, param: param ?? null } };
}
