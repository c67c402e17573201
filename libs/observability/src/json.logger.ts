import type { LoggerService } from '@nestjs/common';
import { redact } from './redact';
import { requestContextStorage, type RequestContext } from './request-context';

/** Cloud Logging severities (a subset of LogSeverity). */
export type Severity = 'DEBUG' | 'INFO' | 'NOTICE' | 'WARNING' | 'ERROR' | 'CRITICAL' | 'ALERT';

const RANK: Record<Severity, number> = { DEBUG: 0, INFO: 1, NOTICE: 1, WARNING: 2, ERROR: 3, CRITICAL: 3, ALERT: 3 };
const LEVEL_RANK = { debug: 0, info: 1, warn: 2, error: 3 } as const;

const LABELS_FIELD = 'logging.googleapis.com/labels';
const SERVICE = 'keygate';
const SERVICE_LABELS = Object.freeze({ service: SERVICE });
/** The labels every line carries, for a line written without the logger (a failed boot's). */
export const SERVICE_LOG_LABELS: Readonly<Record<string, unknown>> = Object.freeze({ [LABELS_FIELD]: SERVICE_LABELS });

/** Where structured lines go; stdout in production, a buffer in tests. */
export type LineSink = (line: string) => void;

/** A sink that gathers lines and hands them to `write` together; `flush` writes what is pending now. */
export interface BufferedSink extends LineSink {
  flush(): void;
}

/** Pending text beyond which a sink writes at once rather than at the end of the turn. */
const FLUSH_AT_CHARS = 64 * 1024;

/**
 * Gathers the lines written during one event-loop turn and writes them together when the turn's
 * callbacks are done (`setImmediate`), in order, and whatever is pending when the process exits
 * (`process.exit` included). Node writes to files and pipes synchronously, so a line per call was
 * a system call per request on the audit path; this is one per turn, however many requests ended
 * in it.
 */
export function bufferedSink(write: (text: string) => void): BufferedSink {
  let pending: string[] = [];
  let chars = 0;
  let scheduled = false;
  let exitHooked = false;
  const flush = (): void => {
    scheduled = false;
    if (!pending.length) return;
    const text = pending.length === 1 ? pending[0] : pending.join('');
    pending = [];
    chars = 0;
    write(text);
  };
  const sink = (line: string): void => {
    pending.push(line);
    chars += line.length;
    if (chars >= FLUSH_AT_CHARS) return flush();
    if (!exitHooked) {
      exitHooked = true;
      process.once('exit', flush);
    }
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  return Object.assign(sink, { flush });
}

/** stdout, one write per event-loop turn (see {@link bufferedSink}). */
export const stdoutSink: BufferedSink = bufferedSink((text) => {
  process.stdout.write(text);
});

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Writes Cloud Logging structured JSON, one object per line, with the request id and trace of the
 * request being served (from AsyncLocalStorage) on every line.
 */
export class JsonLogger implements LoggerService {
  private readonly minRank: number;

  constructor(
    level: keyof typeof LEVEL_RANK = 'info',
    private readonly projectId?: string,
    private readonly sink: LineSink = stdoutSink,
  ) {
    this.minRank = LEVEL_RANK[level];
  }

  log(message: unknown, ...rest: unknown[]): void {
    this.emit('INFO', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.emit('ERROR', message, rest);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.emit('WARNING', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.emit('DEBUG', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.emit('DEBUG', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.emit('CRITICAL', message, rest);
  }

  /**
   * Writes one structured entry at `severity`, if `LOG_LEVEL` lets it through. The message and
   * every field pass through {@link redact}, so a key, a token or a prompt logged by mistake is
   * masked.
   */
  write(severity: Severity, message: string, fields: Record<string, unknown> = {}, ctx?: RequestContext): void {
    if (RANK[severity] >= this.minRank) this.trail(severity, message, fields, ctx);
  }

  /**
   * Writes one structured entry whatever `LOG_LEVEL` says, masked as {@link write} masks: for a
   * trail that must outlive the level chosen (who blocked or unblocked whom).
   */
  trail(severity: Severity, message: string, fields: Record<string, unknown> = {}, ctx?: RequestContext): void {
    this.always(severity, redact(message) as string, redact(fields) as Record<string, unknown>, ctx);
  }

  /**
   * Writes one structured entry whatever `LOG_LEVEL` says, without masking: for the audit record,
   * whose fields are counters and names (the few a client chose it masks itself).
   */
  always(severity: Severity, message: string, fields: Record<string, unknown> = {}, ctx?: RequestContext): void {
    const context = ctx ?? requestContextStorage.getStore();
    const entry: Record<string, unknown> = { severity, time: new Date().toISOString(), message, ...fields };
    if (context) {
      entry.requestId = context.requestId;
      if (context.trace) Object.assign(entry, this.traceFields(context));
      // Labels are indexed by Cloud Logging: a request's lines are found by one label filter.
      entry[LABELS_FIELD] = { service: SERVICE, request_id: context.requestId };
    } else {
      entry[LABELS_FIELD] = SERVICE_LABELS;
    }
    this.sink(JSON.stringify(entry) + '\n');
  }

  /** Cloud Logging's trace correlation fields for a request. */
  traceFields(context: RequestContext): Record<string, unknown> {
    if (!context.trace) return {};
    const out: Record<string, unknown> = {
      'logging.googleapis.com/trace': this.projectId ? `projects/${this.projectId}/traces/${context.trace.traceId}` : context.trace.traceId,
    };
    if (context.trace.spanId) out['logging.googleapis.com/spanId'] = context.trace.spanId;
    if (context.trace.sampled !== undefined) out['logging.googleapis.com/trace_sampled'] = context.trace.sampled;
    return out;
  }

  private emit(severity: Severity, message: unknown, rest: unknown[]): void {
    // Nest passes the context name last; an Error's stack may come before it.
    const fields: Record<string, unknown> = {};
    const last = rest[rest.length - 1];
    if (typeof last === 'string') fields.context = last;
    if (message instanceof Error) {
      fields.error = message.name;
      fields.stack = message.stack;
      this.write(severity, message.message, fields);
      return;
    }
    if (rest.length > 1 && typeof rest[0] === 'string' && rest[0].includes('\n')) fields.stack = rest[0];
    if (typeof message === 'string') return this.write(severity, message, fields);
    // An object logged through Nest's interface goes through the same masking as any field (it
    // used to be stringified first, out of redact's reach).
    const text = isRecord(message) && typeof message.message === 'string' ? message.message : 'logged value';
    this.write(severity, text, { ...fields, data: message });
  }
}
