import { randomUUID } from 'node:crypto';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import type { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { JsonLogger } from '@keygate/observability';
import { createRequestPathRedis, RedisWaitExceededError, withinRequestWait } from '@keygate/redis';
import { Redis } from 'ioredis';
import { ownerOf, StoredResponses, type StoredResponse } from './stored-responses';

// Integration spec: two "replicas" share the real Redis; keys are those of this run's products.
const REDIS_URL = process.env.API_KEY_SERVER_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** The database REDIS_URL names (its path, `/2`), which a client through a local proxy must use too. */
const DATABASE = new URL(REDIS_URL).pathname;
const RUN = `spec-${randomUUID()}`;
const config = { storedResponseDays: 2 } as GatewayConfig;
const record = (owner: string, tokens = 42): StoredResponse => ({
  owner,
  model: 'gpt-4o-mini',
  baseUrl: 'https://api.openai.com/v1',
  tokens,
});

function logger(): { logger: JsonLogger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { logger: new JsonLogger('debug', undefined, (line) => lines.push(JSON.parse(line) as Record<string, unknown>)), lines };
}

async function until(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 8_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function rejection(work: Promise<unknown>): Promise<unknown> {
  return work.then(
    () => undefined,
    (error: unknown) => error,
  );
}

let direct: Redis;
const clients: Redis[] = [];

function client(url = REDIS_URL): Redis {
  const redis = createRequestPathRedis(url, () => undefined);
  clients.push(redis);
  return redis;
}

beforeAll(async () => {
  direct = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  await direct.ping();
});

afterAll(async () => {
  const keys = await direct.keys(`kg:{${RUN}*`);
  if (keys.length) await direct.del(...keys);
  for (const c of clients) c.disconnect();
  direct.disconnect();
});

describe('StoredResponses with Redis (two replicas)', () => {
  const product = `${RUN}-a`;
  let one: StoredResponses;
  let two: StoredResponses;

  beforeAll(async () => {
    const [r1, r2] = [client(), client()];
    await until('both clients ready', () => r1.status === 'ready' && r2.status === 'ready');
    one = new StoredResponses(config, r1, logger().logger);
    two = new StoredResponses(config, r2, logger().logger);
  });

  it('serves a response to the user who made it, on any replica, and to no one else', async () => {
    // Resolves once Redis has it: the answer carrying the id goes out after that.
    await one.remember(product, 'resp_1', record('alice', 120));
    expect(await direct.exists(`kg:{${product}}:resp:resp_1`)).toBe(1);
    expect(await two.find(product, 'alice', 'resp_1')).toEqual(record('alice', 120));
    expect(await two.find(product, 'bob', 'resp_1')).toBeUndefined();
    expect(await two.find(`${RUN}-b`, 'alice', 'resp_1')).toBeUndefined();
    expect(await two.find(product, 'alice', 'resp_unknown')).toBeUndefined();
  });

  it('keeps an output item apart from a response: found as an item only, on any replica, by its user only', async () => {
    await one.remember(product, 'msg_item1', { ...record('alice', 0), kind: 'item' });
    expect(await two.findItem(product, 'alice', 'msg_item1')).toEqual({ ...record('alice', 0), kind: 'item' });
    expect(await two.findItem(product, 'bob', 'msg_item1')).toBeUndefined();
    // An item is no response (the stored-response routes and previous_response_id), nor a response an item.
    expect(await two.find(product, 'alice', 'msg_item1')).toBeUndefined();
    await one.remember(product, 'resp_items', record('alice'));
    expect(await two.findItem(product, 'alice', 'resp_items')).toBeUndefined();
  });

  it('finds a fingerprinted Anthropic answer, or a thread answer, as a message of its user only; no other kind', async () => {
    await one.remember(product, 'msg_fp1', { ...record('alice', 0), kind: 'message' });
    await one.remember(product, 'msg_thread1', { ...record('alice', 0), kind: 'thread' });
    await one.remember(product, 'msg_item2', { ...record('alice', 0), kind: 'item' });
    expect(await two.findMessage(product, 'alice', 'msg_fp1')).toEqual({ ...record('alice', 0), kind: 'message' });
    expect(await two.findMessage(product, 'alice', 'msg_thread1')).toEqual({ ...record('alice', 0), kind: 'thread' });
    expect(await two.findMessage(product, 'bob', 'msg_fp1')).toBeUndefined();
    expect(await two.findMessage(product, 'alice', 'msg_item2')).toBeUndefined();
    // A message is no thread to continue, nor a response.
    expect(await two.findThread(product, 'alice', 'msg_fp1')).toBeUndefined();
    expect(await two.find(product, 'alice', 'msg_fp1')).toBeUndefined();
  });

  it('reads a record of a kind it does not know (a newer replica wrote it) as no record at all, not as a response', async () => {
    await direct.set(`kg:{${product}}:resp:resp_future`, JSON.stringify({ ...record('alice', 1), kind: 'future' }));
    expect(await two.find(product, 'alice', 'resp_future')).toBeUndefined();
  });

  it('keeps a record in Redis for API_KEY_SERVER_STORED_RESPONSE_DAYS, renewed when written again (the usage at the end)', async () => {
    await one.remember(product, 'resp_ttl', record('alice', 5));
    await one.remember(product, 'resp_ttl', record('alice', 50));
    const ttl = await direct.pttl(`kg:{${product}}:resp:resp_ttl`);
    expect(ttl).toBeGreaterThan(2 * 86_400_000 - 60_000);
    expect(ttl).toBeLessThanOrEqual(2 * 86_400_000);
    expect((await two.find(product, 'alice', 'resp_ttl'))?.tokens).toBe(50);
  });

  it('forgets a response on every replica, the one that made it included', async () => {
    await one.remember(product, 'resp_gone', record('alice'));
    expect(await two.find(product, 'alice', 'resp_gone')).toBeDefined();
    await two.forget(product, 'resp_gone');
    expect(await direct.exists(`kg:{${product}}:resp:resp_gone`)).toBe(0);
    expect(await two.find(product, 'alice', 'resp_gone')).toBeUndefined();
    // Replica one still holds the record it made, but Redis is what it reads while Redis answers.
    expect(await one.find(product, 'alice', 'resp_gone')).toBeUndefined();
  });

  it('refuses to record an id that is not an id', async () => {
    await one.remember(product, 'resp_1/../x', record('alice'));
    await one.remember(product, '', record('alice'));
    expect(await direct.keys(`kg:{${product}}:resp:resp_1/*`)).toEqual([]);
    expect(await one.find(product, 'alice', 'resp_1/../x')).toBeUndefined();
  });

  it('ignores a record it cannot read (written by hand, or by another version)', async () => {
    await direct.set(`kg:{${product}}:resp:resp_bad`, '{"owner": 7}', 'PX', 60_000);
    expect(await one.find(product, '7', 'resp_bad')).toBeUndefined();
  });
});

describe('StoredResponses without Redis', () => {
  it('keeps the records in memory, for their user only', async () => {
    const store = new StoredResponses(config, undefined, logger().logger);
    await store.remember('p', 'resp_m', record('alice'));
    expect(await store.find('p', 'alice', 'resp_m')).toEqual(record('alice'));
    expect(await store.find('p', 'bob', 'resp_m')).toBeUndefined();
    await store.forget('p', 'resp_m');
    expect(await store.find('p', 'alice', 'resp_m')).toBeUndefined();
  });

  it('keeps the newest 20 000 records, one written again counting as new', async () => {
    const store = new StoredResponses(config, undefined, logger().logger);
    await store.remember('p', 'resp_first', record('alice'));
    await store.remember('p', 'resp_second', record('alice'));
    for (let i = 0; i < 19_998; i++) void store.remember('p', `resp_${i}`, record('alice'));
    // Full: writing the first again (its usage at the end) moves it to the back; the next record evicts the second.
    await store.remember('p', 'resp_first', record('alice'));
    await store.remember('p', 'resp_last', record('alice'));
    expect(await store.find('p', 'alice', 'resp_first')).toBeDefined();
    expect(await store.find('p', 'alice', 'resp_second')).toBeUndefined();
    expect(await store.find('p', 'alice', 'resp_last')).toBeDefined();
    expect(await store.find('p', 'alice', 'resp_0')).toBeDefined();
  });
});

describe('StoredResponses while Redis is away', () => {
  let gate: Server;
  const sockets = new Set<Socket>();
  let port: number;

  beforeAll(async () => {
    // A port nothing listens on yet: the client keeps reconnecting until the gate opens.
    gate = createServer((socket) => {
      const target = new URL(REDIS_URL);
      const upstream = connect(Number(target.port || 6379), target.hostname);
      sockets.add(socket).add(upstream);
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    await new Promise<void>((done) => gate.listen(0, '127.0.0.1', done));
    port = (gate.address() as AddressInfo).port;
    await new Promise<void>((done) => gate.close(() => done()));
  });

  let away: Redis | undefined;

  afterAll(async () => {
    // The client first: it would go on reconnecting through the gate after it closed.
    away?.disconnect();
    for (const s of sockets) s.destroy();
    await new Promise<void>((done) => (gate.listening ? gate.close(() => done()) : done()));
  });

  it('answers 503 for a record it cannot ask Redis for, serves those made here, and sends what it made and deleted when Redis returns', async () => {
    const product = `${RUN}-away`;
    // Made earlier, by another replica.
    await direct.set(`kg:{${product}}:resp:resp_old`, JSON.stringify(record('alice', 3)), 'PX', 60_000);
    const redis = (away = client(`redis://127.0.0.1:${port}${DATABASE}`));
    const { logger: log } = logger();
    const store = new StoredResponses(config, redis, log);
    expect(redis.status).not.toBe('ready');

    const error = await rejection(store.find(product, 'alice', 'resp_old'));
    expect(error).toBeInstanceOf(GatewayError);
    expect((error as GatewayError).code).toBe('service_unavailable');
    expect((error as GatewayError).options.retryAfterSeconds).toBe(1);

    await store.remember(product, 'resp_here', record('alice', 7));
    expect(await store.find(product, 'alice', 'resp_here')).toEqual(record('alice', 7));
    expect(await direct.exists(`kg:{${product}}:resp:resp_here`)).toBe(0);
    // Deleted while away: refused here at once, deleted in Redis once it returns.
    await store.forget(product, 'resp_old');
    expect(await store.find(product, 'alice', 'resp_old')).toBeUndefined();

    await new Promise<void>((done) => gate.listen(port, '127.0.0.1', done));
    await until('the record written once Redis is back', async () => (await direct.exists(`kg:{${product}}:resp:resp_here`)) === 1);
    await until('the deletion sent once Redis is back', async () => (await direct.exists(`kg:{${product}}:resp:resp_old`)) === 0);
    expect(JSON.parse((await direct.get(`kg:{${product}}:resp:resp_here`)) as string)).toEqual(record('alice', 7));
    const ttl = await direct.pttl(`kg:{${product}}:resp:resp_here`);
    expect(ttl).toBeGreaterThan(2 * 86_400_000 - 60_000);
    // Redis answers again: it is what this replica reads.
    expect(await store.find(product, 'alice', 'resp_here')).toEqual(record('alice', 7));
    expect(await store.find(product, 'alice', 'resp_old')).toBeUndefined();
  });
});

describe('StoredResponses with a Redis slower than a request waits', () => {
  let proxy: Server;
  const sockets = new Set<Socket>();
  /** How late Redis's replies are delivered (they stay in order: Redis has run the command). */
  let lateMs = 0;

  beforeAll(async () => {
    const target = new URL(REDIS_URL);
    proxy = createServer((socket) => {
      const upstream = connect(Number(target.port || 6379), target.hostname);
      sockets.add(socket).add(upstream);
      socket.pipe(upstream);
      let chain = Promise.resolve();
      upstream.on('data', (chunk: Buffer) => {
        const wait = lateMs;
        chain = chain.then(() => new Promise<void>((r) => setTimeout(r, wait))).then(() => void socket.write(chunk));
      });
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    await new Promise<void>((done) => proxy.listen(0, '127.0.0.1', done));
  });

  let slow: Redis | undefined;

  afterAll(async () => {
    slow?.disconnect();
    for (const s of sockets) s.destroy();
    await new Promise<void>((done) => proxy.close(() => done()));
  });

  it('stops waiting, and stops asking for a second; a write that lands late is then read from Redis like any', async () => {
    const product = `${RUN}-slow`;
    const redis = (slow = client(`redis://127.0.0.1:${(proxy.address() as AddressInfo).port}${DATABASE}`));
    await until('the client ready', () => redis.status === 'ready');
    const { logger: log, lines } = logger();
    const store = new StoredResponses(config, redis, log);
    lateMs = 400;

    // Not waited on past the request's wait: resolves, the record still on its way.
    await store.remember(product, 'resp_late', record('alice'));
    expect(lines.some((l) => l.severity === 'WARNING')).toBe(true);
    // Cooling off: this replica serves what it made, and cannot tell about the rest.
    expect(await store.find(product, 'alice', 'resp_late')).toEqual(record('alice'));
    const error = await rejection(store.find(product, 'alice', 'resp_elsewhere'));
    expect((error as GatewayError).code).toBe('service_unavailable');

    // The late write landed: once the cool-off is over, Redis is what this replica reads, so a
    // deletion through another replica is seen here too.
    await until('the late write in Redis', async () => (await direct.exists(`kg:{${product}}:resp:resp_late`)) === 1);
    lateMs = 0;
    await direct.del(`kg:{${product}}:resp:resp_late`);
    await until('the cool-off over and Redis read again', async () => {
      try {
        return (await store.find(product, 'alice', 'resp_late')) === undefined;
      } catch {
        return false;
      }
    });
    store.onApplicationShutdown();
  });

  it('does not ask a Redis the limits have just waited on in vain on the same connection (a continuation waits once, not twice)', async () => {
    const product = `${RUN}-silenced`;
    const redis = client(`redis://127.0.0.1:${(proxy.address() as AddressInfo).port}${DATABASE}`);
    await until('the client ready', () => redis.status === 'ready');
    const store = new StoredResponses(config, redis, logger().logger);
    lateMs = 0;
    await direct.set(`kg:{${product}}:resp:resp_other`, JSON.stringify(record('alice')), 'PX', 60_000);
    expect(await store.find(product, 'alice', 'resp_other')).toEqual(record('alice'));
    // The limits' command for the same request waited in vain on this connection.
    await expect(withinRequestWait(new Promise<never>(() => undefined), redis)).rejects.toBeInstanceOf(RedisWaitExceededError);
    // Not asked again meanwhile: a record made elsewhere cannot be told (as after a wait of its own).
    const error = await rejection(store.find(product, 'alice', 'resp_other'));
    expect((error as GatewayError).code).toBe('service_unavailable');
    // What this replica made it still serves.
    await store.remember(product, 'resp_here', record('alice'));
    expect(await store.find(product, 'alice', 'resp_here')).toEqual(record('alice'));
    store.onApplicationShutdown();
  });
});

describe('ownerOf', () => {
  it('keeps a user within its kind of credential', () => {
    expect(ownerOf({ kind: 'jwt', user: 'demo-client' })).not.toBe(ownerOf({ kind: 'hmac', user: 'demo-client' }));
    expect(ownerOf({ kind: 'iap', user: 'a@example.com' })).toBe('iap:a@example.com');
  });
});
