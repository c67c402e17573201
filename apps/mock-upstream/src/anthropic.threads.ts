import { asString, isRecord, type JsonRecord } from './mock.content';

/** The `anthropic-beta` feature that lets a Messages request carry `thread`. */
export const THREADS_BETA = 'message-threads-2026-08-12';

/** Threads held at once; the oldest is dropped past this (Anthropic's expire too). */
const MAX_THREADS = 10_000;

interface HeldThread {
  /** The conversation up to and including the answer that holds it. */
  messages: unknown[];
  /** Each answer can be continued once (Anthropic's `thread_already_continued`). */
  continued: boolean;
}

const held = new Map<string, HeldThread>();

/** A refusal of a `thread` field, as Anthropic answers it (`code`: its `error.details.error_code`). */
export interface ThreadRefusal {
  status: number;
  message: string;
  code?: string;
}

/** What a request's `thread` makes of it: the whole conversation to answer, and whether its answer holds a thread. */
export type ThreadResolution =
  { messages: unknown[]; holds: boolean; continues?: string; refusal?: undefined } | { refusal: ThreadRefusal };

/**
 * Anthropic's server-held threads, as far as a client can tell them apart: `{"type": "create"}`
 * holds the conversation under the answer's id; `{"type": "continue", "previous_message_id"}` answers
 * the held conversation followed by the request's messages (404 `thread_not_found` for an id it does
 * not hold, 400 `thread_already_continued` for one continued before). Needs the threads beta.
 */
export function resolveThread(body: JsonRecord, beta: string | string[] | undefined): ThreadResolution {
  const messages = body.messages as unknown[];
  const thread = body.thread;
  if (thread === undefined || thread === null) return { messages, holds: false };
  const betas = (Array.isArray(beta) ? beta.join(',') : (beta ?? '')).split(',').map((name) => name.trim());
  if (!betas.includes(THREADS_BETA))
    return { refusal: { status: 400, message: `thread: requires the anthropic-beta header ${THREADS_BETA}` } };
  if (isRecord(thread) && thread.type === 'create') return { messages, holds: true };
  if (isRecord(thread) && thread.type === 'continue') {
    const id = asString(thread.previous_message_id) ?? '';
    const prior = held.get(id);
    if (!prior) return { refusal: { status: 404, message: `No thread found for message '${id}'.`, code: 'thread_not_found' } };
    if (prior.continued)
      return {
        refusal: { status: 400, message: `Message '${id}' has already been continued.`, code: 'thread_already_continued' },
      };
    return { messages: [...prior.messages, ...messages], holds: true, continues: id };
  }
  return { refusal: { status: 400, message: 'thread: Input tag does not match any of the expected tags: create, continue' } };
}

/** Holds the conversation `messages` plus `answer` (its content blocks) under the answer's `id`; the answer continued from is spent. */
export function holdThread(id: string, messages: unknown[], answer: unknown[], continues: string | undefined): void {
  if (continues !== undefined) {
    const prior = held.get(continues);
    if (prior) prior.continued = true;
  }
  held.set(id, { messages: [...messages, { role: 'assistant', content: answer }], continued: false });
  if (held.size > MAX_THREADS) held.delete(held.keys().next().value as string);
}

/** Drops a held thread (`DELETE /__mock/anthropic/threads/{id}`): as if it expired at Anthropic. Whether it was held. */
export function forgetThread(id: string): boolean {
  return held.delete(id);
}
