import { Inject, Injectable } from '@nestjs/common';
import { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { JsonLogger, KEYGATE_LOGGER } from '@keygate/observability';
import { KEYGATE_REDIS, withinRequestWait } from '@keygate/redis';
import type { Redis } from 'ioredis';
import type { Principal } from '@keygate/auth';

/** Who made a stored response, and where: what a later request needs to be let at it. */
export interface StoredResponse {
  /** The credential kind and user that created it ({@link ownerOf}): the only one it is served to. */
  owner: string;
  /** The model that answered (the audit's model for the routes that read it). */
  model: string;
  /** The OpenAI(-compatible) host that stores it (the product's key for that host reads it). */
  baseUrl: string;
  /** Its input and output tokens: a continuation from it carries them as context. */
  tokens: number;
}

/**
 * The owner of what a principal creates: its user, within its kind of credential (a JWT's `sub`
 * that happens to equal an HMAC client's id is not that client).
 */
export function ownerOf(principal: Pick<Principal, 'kind' | 'user'>): string {
  return `${principal.kind}:${principal.user}`;
}

/** OpenAI's ids (`resp_…`); the path and the Redis key take nothing else. */
export const RESPONSE_ID = /^[A-Za-z0-9_-]{1,128}$/;

/** Records kept in memory: those made here (the only store without Redis; the fallback while Redis is away). */
const MAX_MEMORY_RECORDS = 20_000;
/** A failed Redis command is said at most this often (a Redis outage would otherwise log each response). */
const WARN_EVERY_MS = 60_000;

function redisKey(product: string, id: string): string {
  // The product's hash tag, as its counters: a Redis Cluster keeps a product's keys in one slot.
  return `kg:{${product}}:resp:${id}`;
}

function memoryKey(product: string, id: string): string {
  return `${product}\n${id}`;
}

function splitKey(key: string): [product: string, id: string] {
  const at = key.indexOf('\n');
  return [key.slice(0, at), key.slice(at + 1)];
}

function parseRecord(text: string): StoredResponse | undefined {
  try {
    const doc = JSON.parse(text) as Record<string, unknown>;
    const { owner, model, baseUrl, tokens } = doc;
    if (typeof owner !== 'string' || typeof model !== 'string' || typeof baseUrl !== 'string') return undefined;
    return { owner, model, baseUrl, tokens: typeof tokens === 'number' && Number.isFinite(tokens) && tokens >= 0 ? tokens : 0 };
  } catch {
    return undefined;
  }
}

/**
 * Who owns each response the Responses API stored through keygate. Every product's key is shared
 * by all its users, so OpenAI would hand any stored response to anyone holding its id; keygate
 * serves one (retrieve, delete, input items, `previous_response_id`) only to the product and user
 * that created it.
 *
 * With Redis, Redis is the record every replica reads (kept `API_KEY_SERVER_STORED_RESPONSE_DAYS`),
 * and a record is written before the answer that carries its id goes out, so the client's next
 * request finds it whichever replica takes it. Each replica also keeps the records it made in a
 * bounded map: the only store without Redis, and while Redis is away the fallback for those
 * (others are 503); records made and deletions done while Redis was away are sent when it returns.
 */
@Injectable()
export class StoredResponses {
  private readonly ttlMs: number;
  private readonly memory = new Map<string, { record: StoredResponse; expiresAt: number }>();
  /** Records made here that Redis has not taken yet (it was away), by memory key. */
  private readonly unsynced = new Set<string>();
  /** Deletions Redis has not taken yet, by memory key: refused here meanwhile, sent when it returns. */
  private readonly undeleted = new Set<string>();
  private warnedAt = 0;

  constructor(
    @Inject(GatewayConfig) config: GatewayConfig,
    @Inject(KEYGATE_REDIS) private readonly redis: Redis | undefined,
    @Inject(KEYGATE_LOGGER) private readonly logger: JsonLogger,
  ) {
    this.ttlMs = config.storedResponseDays * 86_400_000;
    redis?.on('ready', () => this.sync());
  }

  /**
   * Records a response as its owner's (again, with its final usage, when it ends). Resolves once
   * Redis has it, or once that has been tried (within the request path's wait for Redis): never
   * rejects, a record Redis did not take is kept here and sent when it can be.
   */
  async remember(product: string, id: string, record: StoredResponse): Promise<void> {
    if (!RESPONSE_ID.test(id)) return;
    const key = memoryKey(product, id);
    this.undeleted.delete(key);
    this.keep(key, record);
    if (!this.redis) return;
    if (this.redis.status !== 'ready') {
      this.unsynced.add(key);
      return;
    }
    await this.write(key, record, this.ttlMs);
  }

  /**
   * The response's record when `owner` of `product` may use it; undefined when it is not theirs (no
   * record, another user's, another product's: never said apart, so ids cannot be probed). 503
   * when Redis, which holds it, cannot be asked.
   */
  async find(product: string, owner: string, id: string): Promise<StoredResponse | undefined> {
    const record = await this.lookup(product, id);
    return record?.owner === owner ? record : undefined;
  }

  /** Forgets a response (deleted, or gone from the upstream) on every replica; a Redis that is away hears of it when it returns. */
  async forget(product: string, id: string): Promise<void> {
    const key = memoryKey(product, id);
    this.memory.delete(key);
    this.unsynced.delete(key);
    if (!this.redis) return;
    this.undeleted.add(key);
    if (this.undeleted.size > MAX_MEMORY_RECORDS) this.undeleted.delete(this.undeleted.values().next().value as string);
    if (this.redis.status === 'ready') await this.delete(key);
  }

  private async lookup(product: string, id: string): Promise<StoredResponse | undefined> {
    const key = memoryKey(product, id);
    if (this.undeleted.has(key)) return undefined;
    if (!this.redis || this.unsynced.has(key)) return this.kept(key);
    try {
      if (this.redis.status !== 'ready') throw new Error(`Redis is ${this.redis.status}`);
      const text = await withinRequestWait(this.redis.get(redisKey(product, id)));
      return text === null ? undefined : parseRecord(text);
    } catch (error) {
      // Redis cannot be asked: what this replica made it still serves, anything else it cannot tell.
      const kept = this.kept(key);
      if (kept) return kept;
      throw new GatewayError('service_unavailable', 'who owns stored responses is kept in Redis, which is unavailable; retry shortly', {
        retryAfterSeconds: 1,
        cause: error,
      });
    }
  }

  private kept(key: string): StoredResponse | undefined {
    const kept = this.memory.get(key);
    if (kept && kept.expiresAt > Date.now()) return kept.record;
    if (kept) this.memory.delete(key);
    return undefined;
  }

  private keep(key: string, record: StoredResponse): void {
    // Re-inserted so the map's order is the order of writes: the first key is the one to evict.
    this.memory.delete(key);
    this.memory.set(key, { record, expiresAt: Date.now() + this.ttlMs });
    if (this.memory.size > MAX_MEMORY_RECORDS) {
      const oldest = this.memory.keys().next().value as string;
      this.memory.delete(oldest);
      this.unsynced.delete(oldest);
    }
  }

  private async write(key: string, record: StoredResponse, ttlMs: number): Promise<void> {
    const [product, id] = splitKey(key);
    try {
      await withinRequestWait(
        (this.redis as Redis).set(redisKey(product, id), JSON.stringify(record), 'PX', Math.max(1, Math.round(ttlMs))),
      );
      this.unsynced.delete(key);
    } catch (error) {
      // Late or lost: sent again when Redis is next ready (a late write that landed is written twice, harmlessly).
      this.unsynced.add(key);
      this.warn('could not record a stored response in Redis: until it is written, only this replica serves it', error);
    }
  }

  private async delete(key: string): Promise<void> {
    const [product, id] = splitKey(key);
    try {
      await withinRequestWait((this.redis as Redis).del(redisKey(product, id)));
      this.undeleted.delete(key);
    } catch (error) {
      this.warn('could not delete a stored response record in Redis: it is sent again when Redis returns', error);
    }
  }

  /** Redis is back: the records made and the deletions done while it was away are sent (records with the time they have left). */
  private sync(): void {
    const now = Date.now();
    for (const key of [...this.unsynced]) {
      const kept = this.memory.get(key);
      if (!kept || kept.expiresAt <= now) {
        this.unsynced.delete(key);
        continue;
      }
      void this.write(key, kept.record, kept.expiresAt - now);
    }
    for (const key of [...this.undeleted]) void this.delete(key);
  }

  private warn(message: string, error: unknown): void {
    const now = Date.now();
    if (now - this.warnedAt < WARN_EVERY_MS) return;
    this.warnedAt = now;
    this.logger.write('WARNING', message, { error: error instanceof Error ? error.message : String(error) });
  }
}
