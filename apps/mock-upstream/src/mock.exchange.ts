import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { MockDirectives } from './mock.directives';
import type { MockStats, RouteName } from './mock.stats';

export type ProviderName = 'openai' | 'anthropic' | 'gemini';

/** A complete non-2xx answer in some provider's native error shape. */
export interface ErrorReply {
  status: number;
  body: unknown;
  headers?: OutgoingHttpHeaders;
}

interface PendingWait {
  timer: NodeJS.Timeout;
  resolve: (stillOpen: boolean) => void;
}

/**
 * One request/response pair. Owns every timer started on its behalf so a client
 * disconnect cancels them at once (no leaked timeouts while a stalled or delayed
 * response is abandoned), and decides whether the close counts as an abort.
 */
export class Exchange {
  /** Set once the response is closed for any reason; writers must check it after every await. */
  closed = false;
  directives: MockDirectives = {};
  /** Parsed JSON body, or undefined when the body was empty or not JSON. */
  body: unknown = undefined;
  /** True when the body was present but was not valid JSON. */
  bodyInvalid = false;
  /**
   * Raw text of the last user message (or embedding input), found once by the
   * provider's `directiveText` and reused to build the echo reply.
   */
  userText = '';

  /** We cut the connection ourselves (`cut_after`): not the client's doing, so not an abort. */
  private selfDestroyed = false;
  private readonly waits = new Set<PendingWait>();

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly route: RouteName,
    /** Query string without the `?`, or '' (parsed lazily: most requests never need it). */
    readonly rawQuery: string,
    private readonly stats: MockStats,
    /** The id taken from the URL path: Gemini's model, or a stored response's id; '' for other routes. */
    readonly pathParam: string = '',
  ) {
    stats.exchangeOpened();
    res.once('close', () => this.onClose());
  }

  private query: URLSearchParams | undefined;

  queryParam(name: string): string | null {
    if (this.rawQuery === '') return null;
    this.query ??= new URLSearchParams(this.rawQuery);
    return this.query.get(name);
  }

  private onClose(): void {
    this.closed = true;
    if (!this.res.writableFinished && !this.selfDestroyed) this.stats.markAborted();
    this.stats.exchangeClosed();
    for (const w of this.waits) {
      clearTimeout(w.timer);
      w.resolve(false);
    }
    this.waits.clear();
  }

  /** Resolves true after `ms`, or false as soon as the client has gone (the timer is cleared). */
  wait(ms: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (ms <= 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const entry: PendingWait = {
        timer: setTimeout(() => {
          this.waits.delete(entry);
          resolve(!this.closed);
        }, ms),
        resolve,
      };
      this.waits.add(entry);
    });
  }

  /** Sends a complete JSON answer with Content-Length so keep-alive clients reuse the socket cheaply. */
  sendJson(status: number, body: unknown, headers?: OutgoingHttpHeaders): void {
    if (this.closed) return;
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    this.res.writeHead(status, {
      ...headers,
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
    });
    this.res.end(text);
  }

  sendError(reply: ErrorReply): void {
    this.sendJson(reply.status, reply.body, reply.headers);
  }

  /**
   * Drops the connection mid-response. A plain `destroy()` would discard what
   * `res.write` queued in this tick (node corks response writes until the next
   * tick), so `destroySoon()` flushes those bytes first and then closes the fd:
   * the client receives the first K chunks and then an unterminated body.
   */
  cut(): void {
    if (this.closed) return;
    this.selfDestroyed = true;
    const socket = this.res.socket;
    if (socket) socket.destroySoon();
    else this.res.destroy();
  }
}

/**
 * What the server pipeline needs from each provider module. The pipeline order
 * (directives, delay, auth, forced status, body validation, answer) is shared so
 * every provider behaves the same way under the same directive.
 */
export interface ProviderHandler {
  readonly provider: ProviderName;
  /** The provider's native error body for `status` (used by `status=N` and internal failures). */
  error(status: number, message?: string): ErrorReply;
  /** The provider's native answer to a body that is not JSON. */
  invalidJson(): ErrorReply;
  /** Checks this provider's own credential header; undefined when accepted. */
  authenticate(ex: Exchange, acceptAnyKey: boolean): ErrorReply | undefined;
  /** The text that may carry `[mock ...]` directives (last user message, embedding input). */
  directiveText(ex: Exchange): string;
  /** Produces the success answer (or a validation error). */
  handle(ex: Exchange): void | Promise<void>;
}
