import type { OutgoingHttpHeaders } from 'node:http';
import type { MockDirectives } from './mock.directives';
import type { Exchange } from './mock.exchange';

/**
 * A streamed answer, pre-serialised into wire frames. The split between parts
 * gives the fault directives a uniform meaning across providers:
 * - `head` (OpenAI role chunk, Anthropic message_start/content_block_start/ping)
 *   always goes out;
 * - `body` holds the content frames; `stall_after` / `cut_after` /
 *   `error_event_after` = K means "after K body frames";
 * - `tail` (finish chunk, usage, [DONE], message_stop...) goes out only when no
 *   fault interrupts the stream.
 */
export interface StreamPlan {
  headers: OutgoingHttpHeaders;
  head: string;
  body: string[];
  tail: string;
  /** The provider's in-stream error frame, given how many body frames were already sent. */
  errorFrame: (sent: number) => string;
}

type Fault = { kind: 'cut' | 'error' | 'stall'; after: number };

/** When several fault directives are given, the earliest wins; on a tie cut > error > stall. */
function pickFault(ex: Exchange): Fault | undefined {
  const d = ex.directives;
  const candidates: Fault[] = [];
  if (d.cutAfter !== undefined) candidates.push({ kind: 'cut', after: d.cutAfter });
  if (d.errorEventAfter !== undefined) candidates.push({ kind: 'error', after: d.errorEventAfter });
  if (d.stallAfter !== undefined) candidates.push({ kind: 'stall', after: d.stallAfter });
  let best: Fault | undefined;
  for (const c of candidates) if (!best || c.after < best.after) best = c;
  return best;
}

function applyFault(ex: Exchange, fault: Fault, sent: number, plan: StreamPlan): void {
  switch (fault.kind) {
    case 'cut':
      ex.cut();
      return;
    case 'error':
      ex.res.end(plan.errorFrame(sent));
      return;
    case 'stall':
      // Deliberately nothing: the socket stays open until the client gives up;
      // Exchange's close handler then records the abort.
      return;
  }
}

/**
 * The plan of an SSE stream with every line ending written as `eol` asks: SSE allows CRLF, LF and a
 * bare CR, and a client must read all three (a JSON-array stream, Gemini's without `alt=sse`, keeps
 * its own). JSON text holds no raw line break, so every one in a frame is a line ending.
 */
function withLineEndings(plan: StreamPlan, eol: MockDirectives['eol']): StreamPlan {
  if (eol === undefined || !String(plan.headers['content-type']).startsWith('text/event-stream')) return plan;
  const ending = eol === 'cr' ? '\r' : eol === 'crlf' ? '\r\n' : '\n';
  const rewrite = (text: string): string => text.replace(/\r\n|\r|\n/g, ending);
  return {
    headers: plan.headers,
    head: rewrite(plan.head),
    body: plan.body.map(rewrite),
    tail: rewrite(plan.tail),
    errorFrame: (sent) => rewrite(plan.errorFrame(sent)),
  };
}

/**
 * Writes a stream plan honouring the streaming directives. Without any of them
 * the whole stream is sent with a single `end()`, the cheapest possible path for
 * the benchmark; chunk boundaries are then up to TCP, as they are upstream.
 */
export async function sendStream(ex: Exchange, asked: StreamPlan): Promise<void> {
  if (ex.closed) return;
  const plan = withLineEndings(asked, ex.directives.eol);
  const fault = pickFault(ex);
  const delay = ex.directives.chunkDelayMs ?? 0;
  const hold = ex.directives.holdAfterEndMs ?? 0;
  const { res } = ex;
  res.writeHead(200, plan.headers);

  if (!fault && delay === 0 && hold === 0) {
    res.end(plan.head + plan.body.join('') + plan.tail);
    return;
  }

  if (plan.head !== '') res.write(plan.head);
  // Headers must reach the client even if nothing else ever will (stall_after=0).
  else res.flushHeaders();

  let sent = 0;
  for (const frame of plan.body) {
    if (fault && sent === fault.after) return applyFault(ex, fault, sent, plan);
    if (delay > 0 && !(await ex.wait(delay))) return;
    if (ex.closed) return;
    res.write(frame);
    sent++;
  }
  if (fault) return applyFault(ex, fault, sent, plan);
  if (delay > 0 && !(await ex.wait(delay))) return;
  if (hold === 0) {
    res.end(plan.tail);
    return;
  }
  // The stream is complete, but the body stays open (an upstream or a proxy slow to close it).
  res.write(plan.tail);
  if (await ex.wait(hold)) res.end();
}

/**
 * Non-streaming counterpart of the fault directives: `stall_after` sends the
 * headers and never the body; `cut_after` sends the headers and half the body,
 * then drops the connection; `body_pause_ms` sends half the body, pauses, then
 * sends the rest.
 */
export function sendJsonWithFaults(ex: Exchange, body: unknown, headers?: OutgoingHttpHeaders): void {
  const d = ex.directives;
  if (d.stallAfter === undefined && d.cutAfter === undefined && d.bodyPauseMs === undefined) {
    ex.sendJson(200, body, headers);
    return;
  }
  if (ex.closed) return;
  // A body may come serialised already (the embeddings answers, built as text for speed).
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const bytes = Buffer.from(text);
  ex.res.writeHead(200, { ...headers, 'content-type': 'application/json', 'content-length': bytes.length });
  if (d.cutAfter !== undefined && (d.stallAfter === undefined || d.cutAfter <= d.stallAfter)) {
    ex.res.write(bytes.subarray(0, Math.floor(bytes.length / 2)));
    ex.cut();
    return;
  }
  if (d.stallAfter === undefined && d.bodyPauseMs !== undefined) {
    const half = Math.floor(bytes.length / 2);
    ex.res.write(bytes.subarray(0, half));
    void ex.wait(d.bodyPauseMs).then((open) => open && ex.res.end(bytes.subarray(half)));
    return;
  }
  ex.res.flushHeaders();
}
