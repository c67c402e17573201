import { Inject, Injectable } from '@nestjs/common';
import { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { JsonLogger, KEYGATE_LOGGER } from '@keygate/observability';
import { KEYGATE_REDIS, withinRequestWait } from '@keygate/redis';
import type { Redis } from 'ioredis';

/** Who made a stored response, and where: what a later request needs to be let at it. */
export interface StoredResponse {
  /** The user of the product who created it: the only one it is served to. */
  user: string;
  /** The model that answered (the audit's model for the routes that read it). */
  model: string;
  /** The OpenAI(-compatible) host that stores it (the product's key for that host reads it). */
  baseUrl: string;
  /** Its input and output tokens: a continuation from it carries them as context. */
  tokens: number;
}

/** OpenAI's ids (`resp_…`); the path and the Redis key take nothing else. */
export const RESPONSE_ID = /^[A-Za-z0-9_-]{1,128}$/;

/** Records kept in memory: every one made here (the only store without Redis), and those read from Redis. */
const MAX_MEMORY_RECORDS = 20_000;
/** A failed Redis write is said at most this often (a Redis outage would otherwise log each response). */
const WARN_EVERY_MS = 60_000;

function redisKey(product: string, id: string): string {
  // The product's hash tag, as its counters: a Redis Cluster keeps a product's keys in one slot.
  return `kg:{${product}}:resp:${id}`;
}

function parseRecord(text: string): StoredResponse | undefined {
  try {
    const doc = JSON.parse(text) as Record<string, unknown>;
    const { user, model, baseUrl, tokens } = doc;
    if (typeof user !== 'string' || typeof model !== 'string' || typeof baseUrl !== 'string') return undefined;
    return { user, model, baseUrl, tokens: typeof tokens === 'number' && Number.isFinite(tokens) && tokens >= 0 ? tokens : 0 };
  } catch {
    return undefined;
  }
}

/**
 * Who owns each response the Responses API stored through keygate. Every product's key is shared
 * by all its users, so OpenAI would hand any stored response to anyone holding its id; keygate
 * serves one (retrieve, delete, input items, `previous_response_id`) only to the product and user
 * that created it. Records live in Redis when it is configured (every replica sees them) for
 * `API_KEY_SERVER_STORED_RESPONSE_DAYS`, and in a bounded map in memory (the only store without
 * Redis; records made while Redis is away are written to it when it returns).
 */
@Injectable()
export class StoredResponses {
  private readonly ttlMs: number;
  private readonly memory = new Map<string, { record: StoredResponse; expiresAt: number }>();
  /** Records made here that Redis has not taken yet (it was away), by memory key. */
  private readonly unsynced = new Set<string>();
  private warnedAt = 0;

  constructor(
    @Inject(GatewayConfig) config: GatewayConfig,
    @Inject(KEYGATE_REDIS) private readonly redis: Redis | undefined,
    @Inject(KEYGATE_LOGGER) private readonly logger: JsonLogger,
  ) {
    this.ttlMs = config.storedResponseDays * 86_400_000;
    redis?.on('ready', () => void this.sync());
  }

  /**
   * Records a response as the product's and user's. Not awaited by the request: the write is sent
   * before the answer reaches the client, so a request the client sends next, whichever replica
   * takes it, reads it after the write.
   */
  remember(product: string, id: string, record: StoredResponse): void {
    if (!RESPONSE_ID.test(id)) return;
    const key = this.keep(product, id, record, Date.now() + this.ttlMs);
    if (!this.redis) return;
    if (this.redis.status !== 'ready') {
      this.unsynced.add(key);
      return;
    }
    this.write(product, id, record, key);
  }

  /**
   * The response's record when `user` of `product` may use it; undefined when it is not theirs (no
   * record, another user's, another product's: never said apart, so ids cannot be probed). 503
   * when Redis, which holds it, cannot be asked.
   */
  async find(product: string, user: string, id: string): Promise<StoredResponse | undefined> {
    const record = await this.lookup(product, id);
    return record?.user === user ? record : undefined;
  }

  /** Forgets a response (deleted, or gone from the upstream). */
  forget(product: string, id: string): void {
    const key = `${product}\n${id}`;
    this.memory.delete(key);
    this.unsynced.delete(key);
    this.redis
      ?.del(redisKey(product, id))
      .catch((error: unknown) => this.warn('could not delete a stored response record in Redis', error));
  }

  private async lookup(product: string, id: string): Promise<StoredResponse | undefined> {
    const key = `${product}\n${id}`;
    const kept = this.memory.get(key);
    if (kept && kept.expiresAt > Date.now()) return kept.record;
    if (kept) this.memory.delete(key);
    if (!this.redis) return undefined;
    let text: string | null;
    let ttlMs: number;
    try {
      if (this.redis.status !== 'ready') throw new Error(`Redis is ${this.redis.status}`);
      const [[getError, value], [ttlError, pttl]] = (await withinRequestWait(
        this.redis.multi().get(redisKey(product, id)).pttl(redisKey(product, id)).exec(),
      )) as [[Error | null, string | null], [Error | null, number]];
      const failed = getError ?? ttlError;
      if (failed) throw failed;
      text = value;
      ttlMs = pttl;
    } catch (error) {
      throw new GatewayError('service_unavailable', 'who owns stored responses is kept in Redis, which is unavailable; retry shortly', {
        retryAfterSeconds: 1,
        cause: error,
      });
    }
    const record = text === null ? undefined : parseRecord(text);
    if (record && ttlMs > 0) this.keep(product, id, record, Date.now() + ttlMs);
    return record;
  }

  private keep(product: string, id: string, record: StoredResponse, expiresAt: number): string {
    const key = `${product}\n${id}`;
    // Re-inserted so the map's order is the order of use: the first key is the one to evict.
    this.memory.delete(key);
    this.memory.set(key, { record, expiresAt });
    if (this.memory.size > MAX_MEMORY_RECORDS) {
      const oldest = this.memory.keys().next().value as string;
      this.memory.delete(oldest);
      this.unsynced.delete(oldest);
    }
    return key;
  }

  private write(product: string, id: string, record: StoredResponse, key: string, ttlMs = this.ttlMs): void {
    (this.redis as Redis).set(redisKey(product, id), JSON.stringify(record), 'PX', Math.max(1, Math.round(ttlMs))).then(
      () => this.unsynced.delete(key),
      (error: unknown) => {
        this.unsynced.add(key);
        this.warn('could not record a stored response in Redis: until it is written, only this replica serves it', error);
      },
    );
  }

  /** Redis is back: the records made while it was away are written, with the time they have left. */
  private sync(): void {
    const now = Date.now();
    for (const key of [...this.unsynced]) {
      this.unsynced.delete(key);
      const kept = this.memory.get(key);
      if (!kept || kept.expiresAt <= now) continue;
      const at = key.indexOf('\n');
      this.write(key.slice(0, at), key.slice(at + 1), kept.record, key, kept.expiresAt - now);
    }
  }

  private warn(message: string, error: unknown): void {
    const now = Date.now();
    if (now - this.warnedAt < WARN_EVERY_MS) return;
    this.warnedAt = now;
    this.logger.write('WARNING', message, { error: error instanceof Error ? error.message : String(error) });
  }
}
