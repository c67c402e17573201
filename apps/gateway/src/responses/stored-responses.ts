import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { JsonLogger, KEYGATE_LOGGER } from '@keygate/observability';
import { KEYGATE_REDIS, REDIS_COOL_OFF_MS, redisSilent, withinRequestWait } from '@keygate/redis';
import type { Redis } from 'ioredis';
import type { Principal } from '@keygate/auth';
import { RESPONSE_ID } from './response-id';

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
  /**
   * `item`: the record of an output item of a stored response (a message, reasoning, a tool call),
   * which an `item_reference` may name; `thread`: an answer of Anthropic's Messages API that holds a
   * thread (a later request continues from its id: `thread.previous_message_id`); `container`: a code
   * execution container an answer ran in (Anthropic's, OpenAI's code interpreter's), which a later
   * request may name to reuse it; `message`: an answer of Anthropic's Messages API whose request
   * Anthropic fingerprinted for cache diagnostics (sent with a `cache-diagnosis-*` beta), which a
   * later request may compare itself with (`diagnostics.previous_message_id`); absent for a
   * response's own record.
   */
  kind?: 'item' | 'thread' | 'container' | 'message';
}

/**
 * The owner of what a principal creates: its user, within its kind of credential (a JWT's `sub`
 * that happens to equal an HMAC client's id is not that client).
 */
export function ownerOf(principal: Pick<Principal, 'kind' | 'user'>): string {
  return `${principal.kind}:${principal.user}`;
}

/** Records kept in memory: those made here (the only store without Redis; the fallback while Redis is away). */
const MAX_MEMORY_RECORDS = 20_000;
/** A failed Redis command is said at most this often (a Redis outage would otherwise log each response). */
const WARN_EVERY_MS = 60_000;
/** How often records and deletions Redis has not taken yet are sent again. */
const RESEND_EVERY_MS = 1_000;

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
    const { owner, model, baseUrl, tokens, kind } = doc;
    if (typeof owner !== 'string' || typeof model !== 'string' || typeof baseUrl !== 'string') return undefined;
    const record: StoredResponse = {
      owner,
      model,
      baseUrl,
      tokens: typeof tokens === 'number' && Number.isFinite(tokens) && tokens >= 0 ? tokens : 0,
    };
    if (kind === 'item' || kind === 'thread' || kind === 'container' || kind === 'message') record.kind = kind;
    // A kind this version does not know (a newer replica's, mid-rollout) is no response's record.
    else if (kind !== undefined) return undefined;
    return record;
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
export class StoredResponses implements OnApplicationShutdown {
  private readonly ttlMs: number;
  private readonly memory = new Map<string, { record: StoredResponse; expiresAt: number }>();
  /** Records made here that Redis has not taken yet (away, late or failing), by memory key. */
  private readonly unsynced = new Set<string>();
  /** Deletions Redis has not taken yet, by memory key: refused here meanwhile, sent until it takes them. */
  private readonly undeleted = new Set<string>();
  private warnedAt = 0;
  private coolOffUntil = 0;
  private readonly resend: NodeJS.Timeout | undefined;

  constructor(
    @Inject(GatewayConfig) config: GatewayConfig,
    @Inject(KEYGATE_REDIS) private readonly redis: Redis | undefined,
    @Inject(KEYGATE_LOGGER) private readonly logger: JsonLogger,
  ) {
    this.ttlMs = config.storedResponseDays * 86_400_000;
    if (redis) {
      redis.on('ready', () => this.sync(redis));
      this.resend = setInterval(() => {
        if (this.reachable(redis) && (this.unsynced.size || this.undeleted.size)) this.sync(redis);
      }, RESEND_EVERY_MS).unref();
    }
  }

  /** At exit, what Redis never took is lost (those responses are refused elsewhere): said, not silently dropped. */
  onApplicationShutdown(): void {
    clearInterval(this.resend);
    if (this.unsynced.size || this.undeleted.size)
      this.logger.write('WARNING', 'stored response records and deletions not sent to Redis before exit', {
        records: this.unsynced.size,
        deletions: this.undeleted.size,
      });
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
    this.unsynced.add(key);
    if (this.reachable(this.redis)) await this.write(this.redis, key, record, this.ttlMs);
  }

  /**
   * The response's record when `owner` of `product` may use it; undefined when it is not theirs (no
   * record, another user's, another product's: never said apart, so ids cannot be probed). 503
   * when Redis, which holds it, cannot be asked.
   */
  async find(product: string, owner: string, id: string): Promise<StoredResponse | undefined> {
    const record = await this.lookup(product, id);
    return record?.owner === owner && record.kind === undefined ? record : undefined;
  }

  /** The same for an output item of a stored response (what an `item_reference` names). */
  async findItem(product: string, owner: string, id: string): Promise<StoredResponse | undefined> {
    const record = await this.lookup(product, id);
    return record?.owner === owner && record.kind === 'item' ? record : undefined;
  }

  /** The same for an Anthropic answer that holds a thread (what `thread.previous_message_id` names). */
  async findThread(product: string, owner: string, id: string): Promise<StoredResponse | undefined> {
    const record = await this.lookup(product, id);
    return record?.owner === owner && record.kind === 'thread' ? record : undefined;
  }

  /**
   * The same for an Anthropic answer whose request Anthropic fingerprinted for cache diagnostics (what
   * `diagnostics.previous_message_id` names): one sent with the beta, or one that holds a thread.
   */
  async findMessage(product: string, owner: string, id: string): Promise<StoredResponse | undefined> {
    const record = await this.lookup(product, id);
    return record?.owner === owner && (record.kind === 'message' || record.kind === 'thread') ? record : undefined;
  }

  /** The same for a code execution container an answer ran in (what a later request's `container` names). */
  async findContainer(product: string, owner: string, id: string): Promise<StoredResponse | undefined> {
    const record = await this.lookup(product, id);
    return record?.owner === owner && record.kind === 'container' ? record : undefined;
  }

  /** Forgets a response (deleted, or gone from the upstream) on every replica; a Redis that is away hears of it when it returns. */
  async forget(product: string, id: string): Promise<void> {
    const key = memoryKey(product, id);
    this.memory.delete(key);
    this.unsynced.delete(key);
    if (!this.redis) return;
    this.undeleted.add(key);
    if (this.undeleted.size > MAX_MEMORY_RECORDS) this.undeleted.delete(this.undeleted.values().next().value as string);
    if (this.reachable(this.redis)) await this.delete(this.redis, key);
  }

  /**
   * Whether Redis may be asked: connected, not cooling off after a failed command here, and not
   * silent (a wait in vain here or by another user of the connection, such as the limits: a hung
   * Redis costs a request one wait, not one per lookup).
   */
  private reachable(redis: Redis): boolean {
    return redis.status === 'ready' && Date.now() >= this.coolOffUntil && !redisSilent(redis);
  }

  private async lookup(product: string, id: string): Promise<StoredResponse | undefined> {
    const key = memoryKey(product, id);
    if (this.undeleted.has(key)) return undefined;
    if (!this.redis || this.unsynced.has(key)) return this.kept(key);
    try {
      if (!this.reachable(this.redis)) throw new Error(`Redis is ${this.redis.status === 'ready' ? 'not answering' : this.redis.status}`);
      const text = await this.waited(this.redis.get(redisKey(product, id)));
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

  /**
   * Writes a record, waiting on Redis as a request does. A reply that comes after the wait still
   * counts: the record is then no longer resent; a failure leaves it to be resent.
   */
  private async write(redis: Redis, key: string, record: StoredResponse, ttlMs: number): Promise<void> {
    const [product, id] = splitKey(key);
    const command = redis.set(redisKey(product, id), JSON.stringify(record), 'PX', Math.max(1, Math.round(ttlMs))).then(() => {
      // Taken, unless the record was written again (or forgotten) meanwhile: that write decides.
      if (this.memory.get(key)?.record === record) this.unsynced.delete(key);
    });
    try {
      await this.waited(command);
    } catch (error) {
      command.catch(() => undefined);
      this.warn('could not record a stored response in Redis in time: until it is, only this replica serves it', error);
    }
  }

  private async delete(redis: Redis, key: string): Promise<void> {
    const [product, id] = splitKey(key);
    const command = redis.del(redisKey(product, id)).then(() => {
      this.undeleted.delete(key);
    });
    try {
      await this.waited(command);
    } catch (error) {
      command.catch(() => undefined);
      this.warn('could not delete a stored response record in Redis in time: it is sent again', error);
    }
  }

  /** A command waited on as a request waits (REDIS_REQUEST_WAIT_MS); a failure or a wait in vain starts a cool-off. */
  private async waited<T>(command: Promise<T>): Promise<T> {
    try {
      return await withinRequestWait(command, this.redis);
    } catch (error) {
      this.coolOffUntil = Date.now() + REDIS_COOL_OFF_MS;
      throw error;
    }
  }

  /** Sends the records made and the deletions done that Redis has not taken (records with the time they have left). */
  private sync(redis: Redis): void {
    const now = Date.now();
    for (const key of [...this.unsynced]) {
      const kept = this.memory.get(key);
      if (!kept || kept.expiresAt <= now) {
        this.unsynced.delete(key);
        continue;
      }
      void this.write(redis, key, kept.record, kept.expiresAt - now);
    }
    for (const key of [...this.undeleted]) void this.delete(redis, key);
  }

  private warn(message: string, error: unknown): void {
    const now = Date.now();
    if (now - this.warnedAt < WARN_EVERY_MS) return;
    this.warnedAt = now;
    this.logger.write('WARNING', message, { error: error instanceof Error ? error.message : String(error) });
  }
}
