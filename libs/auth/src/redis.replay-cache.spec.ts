import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Redis } from 'ioredis';
import {
  REPLAY_KEY_PREFIX,
  REPLAY_LOST_KEY,
  REPLAY_SEQ_KEY,
  RedisReplayCache,
  type ReplayCacheLog,
  createReplayRedis,
} from './redis.replay-cache';
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
    expect(await redis.get(REPLAY_KEY_PREFIX + key)).toEqual(expect.any(String));
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

  describe('when Redis answers late (a SET that timed out here runs on Redis afterwards)', () => {
    /** A TCP proxy to the real Redis that, while `holding`, keeps what the client sends and delivers it, in order, on release. */
    let proxy: Server;
    const proxySockets = new Set<Socket>();
    let holding = false;
    const held: Array<() => void> = [];
    let proxyUrl: string;

    beforeAll(async () => {
      const target = new URL(REDIS_URL);
      proxy = createServer((client) => {
        const upstream = connect(Number(target.port || 6379), target.hostname);
        proxySockets.add(client).add(upstream);
        client.on('data', (chunk) => (holding ? held.push(() => upstream.write(chunk)) : upstream.write(chunk)));
        upstream.on('data', (chunk) => client.write(chunk));
        const close = (): void => {
          client.destroy();
          upstream.destroy();
        };
        client.on('close', close).on('error', close);
        upstream.on('close', close).on('error', close);
      });
      await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
      const address = proxy.address();
      if (!address || typeof address === 'string') throw new Error('no port');
      proxyUrl = `redis://127.0.0.1:${address.port}${target.pathname === '/' ? '' : target.pathname}`;
    });

    afterAll(async () => {
      proxySockets.forEach((s) => s.destroy());
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    });

    it('leaves the signature of the refused request usable: its retry is accepted once, then refused as a replay', async () => {
      const slow = createReplayRedis(proxyUrl, ignore);
      const key = `${RUN}:late`;
      try {
        await whenReady(slow);
        const slowCache = new RedisReplayCache(slow);
        holding = true;
        await expect(slowCache.remember(key, 600)).rejects.toBeInstanceOf(ReplayCacheUnavailableError);
        // Redis gets the SET (and whatever followed it) only now, after the request was refused.
        holding = false;
        held.splice(0).forEach((deliver) => deliver());
        // A command on the same connection is answered after everything sent before it.
        await slow.ping();
        await expect(cache.remember(key, 600)).resolves.toBe(true);
        await expect(cache.remember(key, 600)).resolves.toBe(false);
      } finally {
        holding = false;
        slow.disconnect();
      }
    });

    it('never releases a key another request wrote (a served signature stays spent)', async () => {
      const slow = createReplayRedis(proxyUrl, ignore);
      const key = `${RUN}:late-served`;
      try {
        await whenReady(slow);
        const slowCache = new RedisReplayCache(slow);
        holding = true;
        const late = slowCache.remember(key, 600);
        // Another replica serves the same signature while this one's SET is held up.
        await expect(cache.remember(key, 600)).resolves.toBe(true);
        await expect(late).rejects.toBeInstanceOf(ReplayCacheUnavailableError);
        holding = false;
        held.splice(0).forEach((deliver) => deliver());
        await slow.ping();
        await expect(cache.remember(key, 600)).resolves.toBe(false);
      } finally {
        holding = false;
        slow.disconnect();
      }
    });
  });

  it('refuses a ttl that is not a positive whole number of seconds', async () => {
    await expect(cache.remember(`${RUN}:bad`, 0)).rejects.toBeInstanceOf(RangeError);
    await expect(cache.remember(`${RUN}:bad`, 1.5)).rejects.toBeInstanceOf(RangeError);
  });
});

describe('RedisReplayCache after Redis lost data (private redis-server)', () => {
  const WINDOW = 300;
  let server: ChildProcess;
  let url: string;
  let admin: Redis;
  let now = 1_800_000_000;
  const clock = (): number => now;
  const opened: Redis[] = [];
  /** A replica, booted (Nest runs onApplicationBootstrap before the gateway listens). */
  const replica = async (log: ReplayCacheLog = ignore): Promise<RedisReplayCache> => {
    const redis = createReplayRedis(url, ignore);
    opened.push(redis);
    await whenReady(redis);
    const cache = new RedisReplayCache(redis, WINDOW, log, clock);
    await cache.onApplicationBootstrap();
    return cache;
  };
  const refusal = async (work: Promise<unknown>): Promise<ReplayCacheUnavailableError> => {
    const error = await work.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ReplayCacheUnavailableError);
    return error as ReplayCacheUnavailableError;
  };

  beforeAll(async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const address = probe.address();
        probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
    });
    server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    url = `redis://127.0.0.1:${port}`;
    admin = createReplayRedis(url, ignore);
    // redis-server takes a moment to listen: ioredis reconnects until it does (whenReady waits 5 s).
    await whenReady(admin);
  });

  beforeEach(async () => {
    await admin.flushall();
    now += 10_000;
  });

  afterAll(async () => {
    for (const redis of [...opened, admin]) redis.disconnect();
    server.kill('SIGKILL');
    await new Promise((resolve) => server.once('exit', resolve));
  });

  it('after a wipe, refuses on every replica (an idle one, one started since) the signatures made before the loss plus the window', async () => {
    const errors: Array<[string, Record<string, unknown>]> = [];
    const a = await replica();
    const idle = await replica((_, message, fields) => errors.push([message, fields]));
    await expect(a.remember('c:1:used', 600, now)).resolves.toBe(true);
    await expect(a.remember('c:1:used', 600, now)).resolves.toBe(false);

    // Redis restarts empty (a flush leaves it the same): the used signature is forgotten. The
    // replica that has served nothing yet finds it with its first signature.
    await admin.flushall();
    now += 10;
    const lostAt = now;
    const first = await refusal(idle.remember('c:2:fresh', 600, now));
    expect(first.retryAfterSeconds).toBe(WINDOW);
    expect(first.clientMessage).toMatch(/lost its record of used signatures .* sign again after that time \(in 300 s\)/);
    expect(errors).toEqual([
      [
        expect.stringMatching(/^Redis lost data: the HMAC replay cache/),
        expect.objectContaining({ lostAt: new Date(lostAt * 1000).toISOString() }),
      ],
    ]);
    // The refused signature is not spent: no key is left for it.
    await admin.ping();
    expect(await admin.get(`${REPLAY_KEY_PREFIX}c:2:fresh`)).toBeNull();

    // The replica that used the signature refuses its replay (it finds the loss too, or learns it).
    now += 5;
    expect((await refusal(a.remember('c:1:used', 600, lostAt - 10))).retryAfterSeconds).toBeGreaterThanOrEqual(WINDOW - 5);
    // So does one started after the loss, which only learns it from Redis.
    const later = await replica();
    // A signature made after the loss plus the window (a clock ahead, or simply later) is accepted, once.
    expect((await refusal(later.remember('c:3:fresh', 600, now))).retryAfterSeconds).toBeGreaterThanOrEqual(WINDOW - 5);
    const after = Number(await admin.get(REPLAY_LOST_KEY)) + WINDOW;
    await expect(later.remember('c:3:later', 600, after)).resolves.toBe(true);
    await expect(a.remember('c:3:later', 600, after)).resolves.toBe(false);
    // The idle replica said it once (and a second time only for a later loss another replica dated).
    expect(errors.length).toBeLessThanOrEqual(2);
  });

  it('finds a Redis gone back in time (an older snapshot, a failover to a replica behind): the counter answers no higher than before', async () => {
    const a = await replica();
    await expect(a.remember('d:1:used', 600, now)).resolves.toBe(true);
    await expect(a.remember('d:2:used', 600, now)).resolves.toBe(true);
    // What a restore of a snapshot taken before both would hold: the counter lower, the keys gone.
    const seq = Number(await admin.get(REPLAY_SEQ_KEY));
    await admin.set(REPLAY_SEQ_KEY, String(seq - 2));
    await admin.del(`${REPLAY_KEY_PREFIX}d:1:used`, `${REPLAY_KEY_PREFIX}d:2:used`);
    await refusal(a.remember('d:1:used', 600, now));
    expect(await admin.get(REPLAY_LOST_KEY)).toBe(String(now));
    // Nothing lost, nothing refused: a counter that only rises, a later signature.
    await expect(a.remember('d:3:new', 600, now + WINDOW)).resolves.toBe(true);
  });

  it('refuses (503) and says once why when Redis refuses its commands (a key of the wrong type)', async () => {
    const errors: string[] = [];
    const a = await replica((_, message) => errors.push(message));
    await admin.del(REPLAY_SEQ_KEY);
    await admin.lpush(REPLAY_SEQ_KEY, 'x');
    await refusal(a.remember('e:1', 600, now));
    await refusal(a.remember('e:2', 600, now));
    expect(errors).toEqual([expect.stringMatching(/^the replay cache Redis refused a command/)]);
  });
});
