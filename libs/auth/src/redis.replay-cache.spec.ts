import { randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { Redis } from 'ioredis';
import { REPLAY_KEY_PREFIX, RedisReplayCache, createReplayRedis } from './redis.replay-cache';
import { ReplayCacheUnavailableError } from './replay-cache';

// Integration spec: runs against the real Redis, touching only keys of this run.
const REDIS_URL = process.env.API_KEY_SERVER_REDIS_URL ?? 'redis://127.0.0.1:6379';
const RUN = `spec-${randomUUID()}`;
const ignore = (): void => undefined;

/** Resolves once the connection is ready; rejects after 5 s instead of hanging the run. */
async function whenReady(redis: Redis): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis not ready after 5 s (status ${redis.status})`)), 5000);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Resolves once the connection has ended for good; rejects after 5 s instead of hanging the run. */
function whenEnded(redis: Redis): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (redis.status === 'end') return resolve();
    const timer = setTimeout(() => reject(new Error(`redis still ${redis.status} after 5 s`)), 5000);
    redis.once('end', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function elapsedMs(work: () => Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const start = performance.now();
  const error = await work().then(
    () => undefined,
    (e: unknown) => e,
  );
  return { ms: performance.now() - start, error };
}

describe('RedisReplayCache (real Redis)', () => {
  let redis: Redis;
  let cache: RedisReplayCache;

  beforeAll(async () => {
    redis = createReplayRedis(REDIS_URL);
    await whenReady(redis);
    cache = new RedisReplayCache(redis);
  });

  afterAll(async () => {
    const keys = await redis.keys(`${REPLAY_KEY_PREFIX}${RUN}:*`);
    if (keys.length) await redis.del(...keys);
    const ended = whenEnded(redis);
    await cache.onApplicationShutdown();
    await ended;
  });

  it('remembers a key once, under the keygate prefix, with the given ttl', async () => {
    const key = `${RUN}:client:1800000000:${'a'.repeat(64)}`;
    await expect(cache.remember(key, 600)).resolves.toBe(true);
    await expect(cache.remember(key, 600)).resolves.toBe(false);
    expect(await redis.get(REPLAY_KEY_PREFIX + key)).toBe('1');
    const ttl = await redis.ttl(REPLAY_KEY_PREFIX + key);
    expect(ttl).toBeGreaterThan(590);
    expect(ttl).toBeLessThanOrEqual(600);
  });

  it('does not extend the ttl of a key already seen', async () => {
    const key = `${RUN}:ttl`;
    await cache.remember(key, 5);
    await expect(cache.remember(key, 600)).resolves.toBe(false);
    expect(await redis.ttl(REPLAY_KEY_PREFIX + key)).toBeLessThanOrEqual(5);
  });

  it('lets exactly one of 20 concurrent callers win the same key', async () => {
    const key = `${RUN}:race`;
    const answers = await Promise.all(Array.from({ length: 20 }, () => cache.remember(key, 600)));
    expect(answers.filter(Boolean)).toHaveLength(1);
  });

  it('sends the SETs of concurrent requests to Redis in one write, each still answered on its own', async () => {
    const socket = (redis as unknown as { stream: { write: (...args: unknown[]) => boolean } }).stream;
    const write = jest.spyOn(socket, 'write');
    try {
      const keys = Array.from({ length: 20 }, (_, i) => `${RUN}:batch:${i}`);
      const answers = await Promise.all([...keys, keys[0]].map((key) => cache.remember(key, 600)));
      expect(answers).toEqual([...keys.map(() => true), false]);
      expect(write.mock.calls.length).toBeLessThanOrEqual(2);
    } finally {
      write.mockRestore();
    }
  });

  it('answers ReplayCacheUnavailableError at once when Redis is unreachable', async () => {
    const down = createReplayRedis('redis://127.0.0.1:1', ignore);
    const downCache = new RedisReplayCache(down);
    try {
      const { ms, error } = await elapsedMs(() => downCache.remember(`${RUN}:down`, 600));
      expect(error).toBeInstanceOf(ReplayCacheUnavailableError);
      expect(ms).toBeLessThan(1000);
    } finally {
      // Shutting down a cache whose Redis never connected must not throw or keep reconnecting.
      const ended = whenEnded(down);
      await downCache.onApplicationShutdown();
      await ended;
    }
  });

  describe('when Redis accepts the connection but never answers SET', () => {
    let server: Server;
    const sockets = new Set<Socket>();
    let url: string;
    const INFO = '# Server\r\nloading:0\r\n';

    beforeAll(async () => {
      // Answers the connection handshake (INFO ready check, CLIENT ...) and then goes silent.
      server = createServer((socket) => {
        sockets.add(socket);
        socket.on('data', (chunk) => {
          for (const [, name] of chunk.toString('latin1').matchAll(/\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n/g)) {
            const command = name.toUpperCase();
            if (command === 'INFO') socket.write(`$${INFO.length}\r\n${INFO}\r\n`);
            else if (command !== 'SET') socket.write('+OK\r\n');
          }
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const address = server.address();
      if (!address || typeof address === 'string') throw new Error('no port');
      url = `redis://127.0.0.1:${address.port}`;
    });

    afterAll(async () => {
      sockets.forEach((s) => s.destroy());
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    it('times the command out and answers ReplayCacheUnavailableError within ~1 s', async () => {
      const silent = createReplayRedis(url, ignore);
      try {
        await whenReady(silent);
        const { ms, error } = await elapsedMs(() => new RedisReplayCache(silent).remember(`${RUN}:silent`, 600));
        expect(error).toBeInstanceOf(ReplayCacheUnavailableError);
        expect((error as Error).cause).toBeInstanceOf(Error);
        expect(ms).toBeGreaterThanOrEqual(200);
        expect(ms).toBeLessThan(1000);
      } finally {
        silent.disconnect();
      }
    });
  });

  it('refuses a ttl that is not a positive whole number of seconds', async () => {
    await expect(cache.remember(`${RUN}:bad`, 0)).rejects.toBeInstanceOf(RangeError);
    await expect(cache.remember(`${RUN}:bad`, 1.5)).rejects.toBeInstanceOf(RangeError);
  });
});
