import { Redis } from 'ioredis';
import { createRequestPathRedis, redisMisconfiguration } from './redis.factory';

// Integration spec: runs against the real Redis, writing nothing.
const REDIS_URL = process.env.API_KEY_SERVER_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** What the real Redis answers to SELECT `db`: the same reply ioredis reports when the URL names it. */
async function selectRefusal(db: number): Promise<Error> {
  // A plain client: the request-path one's command timeout would outlive the run by two seconds.
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 0 });
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
function firstError(url: string): Promise<Error> {
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
      expect(redisMisconfiguration(await selectRefusal(db))).toMatch(
        /^API_KEY_SERVER_REDIS_URL selects a database this Redis does not have/,
      );
    },
  );

  it('takes an unreachable Redis for an outage, not a misconfiguration', async () => {
    expect(redisMisconfiguration(await firstError('redis://127.0.0.1:1'))).toBeUndefined();
  });
});
