import type { IncomingHttpHeaders } from 'node:http';

/** Every provider route the mock serves; stats are keyed by these names. */
export const ROUTE_NAMES = [
  'openai.chat',
  'openai.responses',
  'openai.responses.retrieve',
  'openai.responses.delete',
  'openai.responses.inputItems',
  'openai.responses.cancel',
  'openai.responses.inputTokens',
  'openai.responses.compact',
  'openai.embeddings',
  'openai.models',
  'anthropic.messages',
  'anthropic.countTokens',
  'gemini.generateContent',
  'gemini.streamGenerateContent',
  'gemini.countTokens',
  'gemini.embedContent',
  'gemini.batchEmbedContents',
] as const;

export type RouteName = (typeof ROUTE_NAMES)[number];

export interface LastRequest {
  headers: IncomingHttpHeaders;
  /** Parsed JSON body; the raw text when it was not JSON; null when empty. */
  body: unknown;
  url: string;
}

export interface StatsSnapshot {
  total: number;
  byRoute: Record<RouteName, number>;
  /** Requests whose client went away before the mock finished answering. */
  aborted: number;
  /** Requests still being answered (stalls, delays); 0 at rest proves nothing leaked. */
  active: number;
  /** The most requests answered at once since the last reset (how concurrent a client was). */
  peakActive: number;
  last: Partial<Record<RouteName, LastRequest>>;
}

function zeroCounts(): Record<RouteName, number> {
  const counts = {} as Record<RouteName, number>;
  for (const name of ROUTE_NAMES) counts[name] = 0;
  return counts;
}

/**
 * In-memory counters read by tests through `GET /__mock/stats`.
 * Kept to plain field updates because it sits on the benchmark hot path.
 */
export class MockStats {
  private total = 0;
  private aborted = 0;
  private active = 0;
  private peakActive = 0;
  private byRoute = zeroCounts();
  private last: Partial<Record<RouteName, LastRequest>> = {};

  /** Counted as soon as the route matches, so auth failures and forced errors are included. */
  count(route: RouteName): void {
    this.total++;
    this.byRoute[route]++;
  }

  /** Stores references only (no copies): the request objects are not mutated afterwards. */
  remember(route: RouteName, headers: IncomingHttpHeaders, body: unknown, url: string): void {
    this.last[route] = { headers, body, url };
  }

  markAborted(): void {
    this.aborted++;
  }

  exchangeOpened(): void {
    if (++this.active > this.peakActive) this.peakActive = this.active;
  }

  exchangeClosed(): void {
    this.active--;
  }

  /** `active` survives a reset because those exchanges are genuinely still open. */
  reset(): void {
    this.total = 0;
    this.aborted = 0;
    this.peakActive = this.active;
    this.byRoute = zeroCounts();
    this.last = {};
  }

  snapshot(): StatsSnapshot {
    return {
      total: this.total,
      byRoute: { ...this.byRoute },
      aborted: this.aborted,
      active: this.active,
      peakActive: this.peakActive,
      last: { ...this.last },
    };
  }
}
