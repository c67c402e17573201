import { Redis } from 'ioredis';
import {
  closeOnRefusedDatabase,
  createRequestPathRedis,
  REDIS_COOL_OFF_MS,
  REDIS_REQUEST_WAIT_MS,
  RedisWaitExceededError,
  redisMisconfiguration,
  redisSilent,
  withinRequestWait,
} from './redis.factory';
import { redisErrorReporter } from './redis.module';
import { JsonLogger } from '@keygate/observability';

// Integration spec: runs against the real Redis, writing nothing.
const REDIS_URL = process.env.API_KEY_SERVER_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** What the real Redis answers to SELECT `db`: the same reply ioredis reports when the URL names it. */
async function selectRefusal(db: number): Promise<Error> {
  // A plain client: the request-path one's command timeout would outlive the run by two seconds.
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 0 });
  redis.on('error', () => undefined); // the refusal is read from the command's rejection
  try {
    const error: unknown = await redis.select(db).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(error instanceof Error)) throw new Error(`Redis accepted database ${db}`);
    return error;
  } finally {
    redis.disconnect();
  }
}

/** The first error the request-path client reports; rejects after 5 s instead of hanging the run. */
function firstErrorOf(url: string): Promise<Error> {
  return new Promise<Error>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no Redis error after 5 s')), 5000);
    const redis = createRequestPathRedis(url, (error) => {
      clearTimeout(timer);
      redis.disconnect();
      resolve(error);
    });
  });
}

describe('redisMisconfiguration', () => {
  it.each([2147483647, 2147483648])(
    'names API_KEY_SERVER_REDIS_URL when Redis refuses database %s (the boot only checks the index is a whole number)',
    async (db) => {
      expect(redisMisconfiguration(await selectRefusal(db))).toMatch(/^API_KEY_SERVER_REDIS_URL selects a database this Redis refuses/);
    },
  );

  it('takes an unreachable Redis for an outage, not a misconfiguration', async () => {
    expect(redisMisconfiguration(await firstErrorOf('redis://127.0.0.1:1'))).toBeUndefined();
  });
});

describe('closeOnRefusedDatabase', () => {
  it('closes a client on Redis refusing its database, rather than let it work in database 0; an outage it leaves open', async () => {
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 0 });
    redis.on('error', () => undefined);
    closeOnRefusedDatabase(redis);
    try {
      await redis.ping();
      // What ioredis emits when the URL's database is refused at connect (the real reply, read here
      // from a SELECT: at connect, ioredis holds the process for 2 s after it).
      const ended = new Promise((resolve) => redis.once('end', resolve));
      redis.emit('error', await selectRefusal(2147483647));
      await ended;
      expect(redis.status).toBe('end');
      const other = new Redis(REDIS_URL, { maxRetriesPerRequest: 0 });
      other.on('error', () => undefined);
      closeOnRefusedDatabase(other);
      await other.ping();
      other.emit('error', await firstErrorOf('redis://127.0.0.1:1'));
      expect(other.status).toBe('ready');
      other.disconnect();
    } finally {
      redis.disconnect();
    }
  });
});

describe('withinRequestWait', () => {
  /** Holds the event loop as a burst of other requests on a busy replica does (loop delays of 300 ms were seen). */
  function busyPastTheWait(): void {
    const until = Date.now() + REDIS_REQUEST_WAIT_MS + 100;
    while (Date.now() < until);
  }

  /** The request path's client (auto-pipelined), ready. */
  async function requestPathRedis(): Promise<Redis> {
    const redis = createRequestPathRedis(REDIS_URL, () => undefined);
    await new Promise((resolve) => redis.once('ready', resolve)); // no offline queue: nothing is sent before
    return redis;
  }

  it('gives up on a command that does not answer within the wait', async () => {
    await expect(withinRequestWait(new Promise<never>(() => undefined))).rejects.toBeInstanceOf(RedisWaitExceededError);
  });

  it("takes a reply that arrived while the replica's own work held the event loop past the wait, not an outage", async () => {
    const redis = await requestPathRedis();
    try {
      const waited = withinRequestWait(redis.ping(), redis);
      await new Promise((resolve) => setImmediate(resolve)); // the command is on the wire
      busyPastTheWait();
      await expect(waited).resolves.toBe('PONG');
      // Nor is the connection taken for silent: the other users of it go on asking Redis.
      expect(redisSilent(redis)).toBe(false);
    } finally {
      redis.disconnect();
    }
  });

  it('marks the connection of a wait in vain silent for the cool-off, for every user of it; not another connection', async () => {
    const [redis, other] = await Promise.all([requestPathRedis(), requestPathRedis()]);
    try {
      // A command that never answers on `redis` (a hung Redis), as the limits' would.
      await expect(withinRequestWait(new Promise<never>(() => undefined), redis)).rejects.toBeInstanceOf(RedisWaitExceededError);
      expect(redisSilent(redis)).toBe(true);
      expect(redisSilent(other)).toBe(false);
      await expect(withinRequestWait(other.ping(), other)).resolves.toBe('PONG');
      expect(redisSilent(other)).toBe(false);
      // Asked again once the cool-off is over.
      await new Promise((resolve) => setTimeout(resolve, REDIS_COOL_OFF_MS + 50));
      expect(redisSilent(redis)).toBe(false);
    } finally {
      redis.disconnect();
      other.disconnect();
    }
  });

  it('counts from when the command is on the wire, not from when a request still holding the loop issued it', async () => {
    const redis = await requestPathRedis();
    try {
      const waited = withinRequestWait(redis.ping());
      busyPastTheWait(); // auto-pipelining has not written the command yet
      await expect(waited).resolves.toBe('PONG');
    } finally {
      redis.disconnect();
    }
  });
});

describe('redisErrorReporter', () => {
  it("says a refused database once for all of a logger's clients, while each still reports its own outage", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = new JsonLogger('info', undefined, (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
    const requestPath = redisErrorReporter(logger, 'request path down');
    const replayCache = redisErrorReporter(logger, 'replay cache down');
    const refusal = await selectRefusal(2147483647);
    requestPath(refusal);
    replayCache(refusal);
    expect(lines.map((l) => [l.severity, l.message])).toEqual([
      ['ERROR', expect.stringMatching(/^API_KEY_SERVER_REDIS_URL selects a database/)],
    ]);
    // Fresh reporters: each stays quiet a minute after its first line.
    const outage = new Error('connect ECONNREFUSED 127.0.0.1:1');
    redisErrorReporter(logger, 'request path down')(outage);
    redisErrorReporter(logger, 'replay cache down')(outage);
    expect(lines.slice(1).map((l) => [l.severity, l.message])).toEqual([
      ['WARNING', 'request path down'],
      ['WARNING', 'replay cache down'],
    ]);
  });
});
