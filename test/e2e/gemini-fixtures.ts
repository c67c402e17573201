/**
 * What the Gemini API e2e files share: calling through `@google/genai` and reading its errors
 * (Google's envelope, keygate's code in its ErrorInfo detail), request ids, and counting the
 * upstream calls a request made.
 */
import { ApiError } from '@google/genai';
import type { MockUpstream } from './harness';
import { countingUpstream, moved, rid } from './provider-fixtures';

/** The SDK's error for a call: its status and Google's error body. */
export interface GoogleError {
  status: number;
  body: { error: { code: number; message: string; status: string; details: Array<Record<string, unknown>> } };
}

/** The error a call fails with (the SDK's message is the body's JSON); throws when the call succeeds. */
export async function sdkError(promise: Promise<unknown>): Promise<GoogleError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ApiError) return { status: error.status, body: JSON.parse(error.message) as GoogleError['body'] };
    throw error;
  }
  throw new Error('the call succeeded');
}

/** keygate's own code and param, from an error's ErrorInfo detail. */
export function errorInfo(body: GoogleError['body']): { code?: string; param?: string } {
  return body.error.details.find((d) => d['@type'] === 'type.googleapis.com/google.rpc.ErrorInfo')?.metadata ?? {};
}

/**
 * Checks a keygate refusal in Google's envelope: 400 `INVALID_ARGUMENT`, a message holding
 * `mentions`, and keygate's `invalid_request` naming `param`.
 */
export async function expectInvalidArgument(res: Response, param: string, mentions: string): Promise<void> {
  expect(res.status).toBe(400);
  const body = (await res.json()) as GoogleError['body'];
  expect(body.error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT' });
  expect(body.error.message).toContain(mentions);
  expect(errorInfo(body)).toMatchObject({ code: 'invalid_request', param });
}

/** The per-request options that send a request id. */
export function withId(label: string): { id: string; httpOptions: { headers: Record<string, string> } } {
  const { id, headers } = rid(label);
  return { id, httpOptions: { headers } };
}

/** One user turn in Google's shape. */
export const say = (text: string): Array<{ role: string; parts: Array<{ text: string }> }> => [{ role: 'user', parts: [{ text }] }];

/** Runs `action` and says which of the mock's routes it moved, and the mock's stats after. */
export async function countingOn<T>(
  mock: MockUpstream,
  action: () => Promise<T>,
): Promise<{ result: T; moved: ReturnType<typeof moved>; after: Awaited<ReturnType<MockUpstream['stats']>> }> {
  const { result, delta, after } = await countingUpstream(mock, action);
  return { result, moved: moved(delta), after };
}
