import type { IncomingMessage, ServerResponse } from 'node:http';

/** At most this many bytes of a refused body are read (and dropped) before its answer goes anyway. */
export const REFUSED_BODY_MAX_BYTES = 16 * 1024 * 1024;
/** At most this long is waited for the rest of a refused body before its answer goes anyway. */
export const REFUSED_BODY_MAX_MS = 5_000;

/**
 * Requests that asked `Expect: 100-continue` and were not told to continue: their client holds the
 * body back, so a refusal goes at once (see {@link expectContinue}).
 */
const continueWithheld = new WeakSet<IncomingMessage>();

/**
 * Node's `checkContinue` handling, with the size checked first: a request whose `Content-Length`
 * is above every product's limit is not told `100 Continue` (it would upload a body only to hear
 * 413); its 413 then goes at once. A client may send its body without waiting for the 100 (RFC
 * 9110 §10.1.1), so the connection is not dropped under an upload still arriving (its next write
 * would meet a reset instead of the 413): after the answer it is half-closed and what still comes is
 * read and dropped, as {@link answerAfterBody} does before an answer, until the client closes its
 * side or the same bounds pass. Any other request is told to continue, as Node does without a
 * listener (its own product's limit and its credential are known only later).
 */
export function expectContinue(
  request: IncomingMessage,
  response: ServerResponse,
  largestBytes: number,
  { maxBytes = REFUSED_BODY_MAX_BYTES, maxMs = REFUSED_BODY_MAX_MS }: { maxBytes?: number; maxMs?: number } = {},
): void {
  const length = Number(request.headers['content-length']);
  if (!(Number.isFinite(length) && length > largestBytes)) return void response.writeContinue();
  continueWithheld.add(request);
  // Node ends the connection of a `Connection: close` answer with destroySoon once it is written:
  // on this one connection, that becomes a lingering close.
  const socket = request.socket;
  socket.destroySoon = (): void => {
    socket.end();
    let read = 0;
    const close = (): void => {
      clearTimeout(timer);
      socket.destroy();
    };
    const timer = setTimeout(close, maxMs).unref();
    socket.on('data', (chunk: Buffer) => {
      read += chunk.length;
      if (read > maxBytes) close();
    });
    socket.once('end', close);
    socket.resume();
  };
}

/**
 * Sends `answer` once the rest of a refused request body has arrived, read and dropped (nginx's
 * lingering close). A body refused before it was read (413: above every product's limit) gets its
 * answer with `Connection: close`; sent at once, the connection closed while the client is still
 * uploading, and the client's next write met a reset: it saw EPIPE or ECONNRESET instead of the
 * 413, and the OpenAI SDKs retry such a connection error, upload and all. A body beyond `maxBytes`,
 * or still arriving after `maxMs`, is answered at that point (the client may then see the reset),
 * and so is one whose request is ended meanwhile (`signal`: the drain deadline), so that what the
 * client gets is the 413 its audit line records.
 */
export function answerAfterBody(
  request: IncomingMessage,
  answer: () => void,
  {
    signal,
    maxBytes = REFUSED_BODY_MAX_BYTES,
    maxMs = REFUSED_BODY_MAX_MS,
  }: { signal?: AbortSignal; maxBytes?: number; maxMs?: number } = {},
): void {
  if (request.complete || request.destroyed || signal?.aborted || continueWithheld.has(request)) return answer();
  let read = 0;
  let answered = false;
  const finish = (): void => {
    if (answered) return;
    answered = true;
    clearTimeout(timer);
    request.off('data', onData).off('end', finish).off('close', finish);
    signal?.removeEventListener('abort', finish);
    answer();
  };
  const onData = (chunk: Buffer): void => {
    read += chunk.length;
    if (read > maxBytes) finish();
  };
  const timer = setTimeout(finish, maxMs);
  request.on('data', onData).once('end', finish).once('close', finish);
  signal?.addEventListener('abort', finish, { once: true });
  request.resume();
}
