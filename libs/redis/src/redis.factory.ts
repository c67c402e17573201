import { Redis } from 'ioredis';

/**
 * Longest a request waits on Redis (issue: no request waits more than ~250 ms): the limits store
 * races each request's command against this and counts in memory when it loses.
 */
export const REDIS_REQUEST_WAIT_MS = 250;

/**
 * When the client gives a command up. Longer than {@link REDIS_REQUEST_WAIT_MS} on purpose: a reply
 * that comes after the request moved on is still read, so a token reservation Redis took late can
 * be given back instead of staying charged for the rest of the day.
 */
export const REDIS_COMMAND_TIMEOUT_MS = 2_000;

/**
 * A Redis connection for the request path: no offline queue, so during an outage a command fails
 * at once instead of waiting for a reconnect, and a command timeout; reconnects keep going in the
 * background (capped backoff) so shared counting resumes by itself.
 */
export function createRequestPathRedis(url: string, onError: (error: Error) => void): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    // Commands issued in the same tick (many concurrent requests) go out in one write.
    enableAutoPipelining: true,
    maxRetriesPerRequest: 0,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    connectTimeout: 2_000,
    retryStrategy: (times) => Math.min(200 * times, 2_000),
    lazyConnect: false,
  });
  redis.on('error', onError);
  closeOnRefusedDatabase(redis);
  return redis;
}

/**
 * Closes a client whose database Redis refused: ioredis would carry on in database 0, beside
 * whatever else uses it (another environment's keys), which is worse than the outage keygate
 * handles (limits counted per replica, HMAC refused). No reconnect cures it; a restart with the
 * URL fixed does.
 */
export function closeOnRefusedDatabase(redis: Redis): void {
  redis.on('error', (error: Error) => {
    if (!redisMisconfiguration(error)) return;
    refused.add(redis);
    redis.disconnect();
  });
}

/** Clients closed by {@link closeOnRefusedDatabase}. */
const refused = new WeakSet<Redis>();

/** Whether `redis` was closed because Redis refused its database: it will not answer until a restart. */
export function refusedDatabase(redis: Redis): boolean {
  return refused.has(redis);
}

/**
 * What an operator must fix when `error` is Redis refusing the database the URL selects (an index
 * past the server's `databases`; any SELECT on a cluster), or undefined for any other error. No
 * reconnect cures it (see {@link closeOnRefusedDatabase}), so an outage's "until it returns" would
 * be wrong; the boot only checks that the index is a whole number.
 */
export function redisMisconfiguration(error: Error): string | undefined {
  const command = (error as { command?: { name?: unknown } }).command;
  return command?.name === 'select'
    ? "API_KEY_SERVER_REDIS_URL selects a database this Redis refuses (Redis's reply is the reason): keygate stops using this Redis, so limits count per replica, no block set through Redis is in force and HMAC requests are refused (503), until the URL is fixed (an index from 0 to the server's databases setting minus 1; none on a cluster) and keygate restarted"
    : undefined;
}

/**
 * An error listener for a Redis client that reports the first error of an outage and then stays
 * quiet for `quietMs`: ioredis emits one per reconnect attempt, several a second while Redis is down.
 */
export function reportOncePer(quietMs: number, report: (error: Error) => void): (error: Error) => void {
  let reported = false;
  return (error) => {
    if (reported) return;
    reported = true;
    report(error);
    setTimeout(() => (reported = false), quietMs).unref();
  };
}

/** A request stopped waiting on Redis; the command itself may still complete. */
export class RedisWaitExceededError extends Error {
  constructor() {
    super(`Redis did not answer within ${REDIS_REQUEST_WAIT_MS} ms`);
    this.name = 'RedisWaitExceededError';
  }
}

/**
 * Settles like `command`, or rejects with {@link RedisWaitExceededError} once a request has waited
 * {@link REDIS_REQUEST_WAIT_MS} on Redis. The command is not cancelled (Redis may still run it):
 * callers that must know its outcome keep their own handle on `command`.
 *
 * Only Redis's time counts, not the replica's own: a burst on a cold or CPU-throttled pod holds the
 * event loop for hundreds of milliseconds (200-400 ms measured with 200 concurrent requests on two
 * replicas of a 2-core VM), and a Redis that answered in a millisecond was taken for an outage, so
 * limits counted per replica. So the clock starts once the command is on the wire (auto-pipelining
 * writes it from a `setImmediate` queued when the command was issued, before this one), and gives up
 * from a `setImmediate` too, which runs after the loop has read the replies that arrived meanwhile
 * (timers run before sockets are read). A Redis that is really silent still costs one wait.
 *
 * With `redis`, the connection `command` was sent on, a wait in vain marks that connection silent
 * for {@link REDIS_COOL_OFF_MS} ({@link redisSilent}): every user of it on the request path (the
 * limits, the stored responses, the admin throttle) then skips it, so a request that needs several
 * of them waits once, not once per user (a Responses continuation waited 500 ms, two waits, when
 * Redis hung).
 */
export function withinRequestWait<T>(command: Promise<T>, redis?: Redis): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    // A reply read in the last pass has settled the promise already: no rejection, no silence.
    const giveUp = (): void => {
      setImmediate(() => {
        if (settled) return;
        if (redis) silentUntil.set(redis, Date.now() + REDIS_COOL_OFF_MS);
        reject(new RedisWaitExceededError());
      });
    };
    const sent = setImmediate(() => {
      timer = setTimeout(giveUp, REDIS_REQUEST_WAIT_MS);
    });
    command.then(
      (value) => {
        settled = true;
        clearImmediate(sent);
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        settled = true;
        clearImmediate(sent);
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

/** After a request waited on a connection in vain, the request path does not ask it again for this long. */
export const REDIS_COOL_OFF_MS = 1_000;

/** Until when each connection is taken for silent (see {@link withinRequestWait}). */
const silentUntil = new WeakMap<Redis, number>();

/**
 * Whether a request waited on `redis` in vain less than {@link REDIS_COOL_OFF_MS} ago, whichever
 * user of the connection it was: the request path skips it meanwhile (a hung Redis costs one wait).
 */
export function redisSilent(redis: Redis): boolean {
  const until = silentUntil.get(redis);
  return until !== undefined && Date.now() < until;
}
