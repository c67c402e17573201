import { randomUUID } from 'node:crypto';
import { buildPolicyBook, type GatewayConfig } from '@keygate/config';
import { JsonLogger } from '@keygate/observability';
import { closeOnRefusedDatabase, refusedDatabase } from '@keygate/redis';
import { Redis } from 'ioredis';
import { AutoBlocker } from './auto-blocker';
import { ANNOUNCE_CONFIRM_MS, BLOCKS_BOOT_GRACE_MS, BLOCKS_POLL_MS, BlocksService, type Block } from './blocks.service';

// Integration spec against the real Redis: two BlocksService instances on two connections stand in
// for two replicas. Every block names a product of this run; all of them are removed afterwards.
const REDIS_URL = process.env.API_KEY_SERVER_REDIS_URL ?? 'redis://127.0.0.1:6379';
const RUN = `spec-${randomUUID().slice(0, 8)}`;
const BLOCKS_KEY = 'kg:blocks';
/** The field of the blocks hash that marks Redis's data as not lost (blocks.service.ts). */
const EPOCH_FIELD = '\nepoch';
/** The field of the blocks hash counting the changes made through keygate (blocks.service.ts). */
const VERSION_FIELD = '\nversion';

let seq = 0;
function product(label: string): string {
  return `${RUN}-${label}-${++seq}`;
}

function capture(): { logger: JsonLogger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { logger: new JsonLogger('info', undefined, (line) => lines.push(JSON.parse(line) as Record<string, unknown>)), lines };
}

function block(p: string, user: string | null, expiresInMs: number | null = null): Block {
  const now = Date.now();
  return {
    product: p,
    user,
    reason: 'spec',
    createdAt: new Date(now).toISOString(),
    expiresAt: expiresInMs === null ? null : new Date(now + expiresInMs).toISOString(),
    createdBy: 'spec-admin',
  };
}

/** Milliseconds until `probe` is true, or throws after `timeoutMs`. */
async function msUntil(what: string, probe: () => boolean, timeoutMs: number): Promise<number> {
  const start = performance.now();
  while (!probe()) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return performance.now() - start;
}

const connections: Redis[] = [];
const services: BlocksService[] = [];

/**
 * `disconnectTimeout`: disconnecting a connection whose socket already closed (a test dropped it)
 * leaves ioredis's 2 s "still open, destroy it" timer running, which kept Jest from exiting.
 */
const TEST_CONNECTION = { maxRetriesPerRequest: 1, enableOfflineQueue: false, disconnectTimeout: 100 } as const;

function connect(): Redis {
  const redis = new Redis(REDIS_URL, TEST_CONNECTION);
  connections.push(redis);
  return redis;
}

/**
 * A started BlocksService: on `redis` (a new connection by default), or on none for `null`. (Not
 * `undefined`: an argument left undefined takes the default, a connection.)
 */
async function replica(redis: Redis | null = connect(), logger: JsonLogger = capture().logger): Promise<BlocksService> {
  if (redis && redis.status !== 'ready') await new Promise((r) => redis.once('ready', r));
  const service = new BlocksService(redis ?? undefined, logger);
  await service.onModuleInit();
  services.push(service);
  return service;
}

afterAll(async () => {
  for (const s of services) s.onApplicationShutdown();
  const cleanup = connections[0] ?? connect();
  if (cleanup.status !== 'ready') await new Promise((r) => cleanup.once('ready', r));
  const fields = (await cleanup.hkeys(BLOCKS_KEY)).filter((f) => f.startsWith(RUN));
  if (fields.length) await cleanup.hdel(BLOCKS_KEY, ...fields);
  const keys = await cleanup.keys(`kg:{${RUN}-*`);
  if (keys.length) await cleanup.del(...keys);
  // A connection a test disconnected for good cannot quit.
  await Promise.all(connections.map((c) => c.quit().catch(() => c.disconnect())));
});

describe('BlocksService across replicas (real Redis)', () => {
  let a: BlocksService;
  let b: BlocksService;

  beforeAll(async () => {
    [a, b] = await Promise.all([replica(), replica()]);
  });

  it('enforces a block on the creating replica at once and on another replica within one second', async () => {
    const p = product('user-block');
    await a.create(block(p, 'mallory'));
    expect(a.find(p, 'mallory')).toMatchObject({ product: p, user: 'mallory', reason: 'spec' });
    const ms = await msUntil('replica b to see the block', () => b.find(p, 'mallory') !== undefined, 1_000);
    expect(ms).toBeLessThan(1_000);
    // A user block leaves the product's other users alone.
    expect(b.find(p, 'alice')).toBeUndefined();
  });

  it('blocks every user of a product with a product block', async () => {
    const p = product('product-block');
    await b.create(block(p, null));
    await msUntil('replica a to see the product block', () => a.find(p, 'anyone') !== undefined, 1_000);
    expect(a.find(p, 'someone-else')).toMatchObject({ product: p, user: null });
    expect(a.list().some((x) => x.product === p)).toBe(true);
  });

  it('lifts a block on every replica within one second of its deletion', async () => {
    const p = product('lift');
    await a.create(block(p, 'oscar'));
    await msUntil('b to see it', () => b.find(p, 'oscar') !== undefined, 1_000);
    expect(await b.remove(p, 'oscar')).toBe(true);
    expect(b.find(p, 'oscar')).toBeUndefined();
    const ms = await msUntil('a to drop it', () => a.find(p, 'oscar') === undefined, 1_000);
    expect(ms).toBeLessThan(1_000);
    expect(await a.remove(p, 'oscar')).toBe(false);
  });

  it('tells its listeners each time a block comes into force, however it arrived: made here, announced, or found by a read of the hash', async () => {
    const p = product('listeners');
    // What each replica's listener saw in force when called (other specs' blocks call it too).
    const seen = { a: [] as string[], b: [] as string[] };
    const watch = (service: BlocksService, into: string[]): void =>
      service.onBlocked(() => {
        for (const user of ['made', 'byhand']) if (service.find(p, user)) into.push(user);
      });
    watch(a, seen.a);
    watch(b, seen.b);
    await a.create(block(p, 'made'));
    // Made here: told before create() resolves; announced: told as b applies it.
    expect(seen.a).toContain('made');
    await msUntil('b to be told of the announced block', () => seen.b.includes('made'), BLOCKS_POLL_MS);
    // Written by hand, unannounced: told by the next read of the hash.
    await connections[0].hset(BLOCKS_KEY, `${p}\nbyhand`, JSON.stringify(block(p, 'byhand')));
    await msUntil('a to be told of the block found by its read', () => seen.a.includes('byhand'), 2 * BLOCKS_POLL_MS);
    await msUntil('b to be told of the block found by its read', () => seen.b.includes('byhand'), 2 * BLOCKS_POLL_MS);
    await a.remove(p, 'made');
    await a.remove(p, 'byhand');
  });

  it('applies the changes another replica announces as they arrive, not at its next read of the hash', async () => {
    const p = product('announced');
    const redis = connections[0];
    const field = `${p}\nrhea`;
    // Each change is undone in the hash by hand right after (unannounced): b's reads of the hash
    // cannot bring it, only the announcement can (until b's next read undoes it again).
    const rhea = block(p, 'rhea');
    await a.create(rhea);
    await redis.hdel(BLOCKS_KEY, field);
    await msUntil('b to apply the announced block', () => b.find(p, 'rhea') !== undefined, BLOCKS_POLL_MS);
    await redis.hset(BLOCKS_KEY, field, JSON.stringify(rhea));
    expect(await a.remove(p, 'rhea')).toBe(true);
    await redis.hset(BLOCKS_KEY, field, JSON.stringify(rhea));
    await msUntil('b to apply the announced lift', () => b.find(p, 'rhea') === undefined, BLOCKS_POLL_MS);
    await redis.hdel(BLOCKS_KEY, field);
  });

  it("answers the operator's change once every replica has applied it, a slow one included: the next request anywhere sees it", async () => {
    // c hears announcements 150 ms late (its subscriber connection's messages are delivered late).
    const redis = connect();
    const duplicate = redis.duplicate.bind(redis);
    redis.duplicate = (...args: Parameters<Redis['duplicate']>) => {
      const subscriber = duplicate(...args);
      connections.push(subscriber);
      const emit = subscriber.emit.bind(subscriber);
      subscriber.emit = (event: string | symbol, ...rest: unknown[]) => {
        if (event !== 'message') return emit(event, ...rest);
        setTimeout(() => emit(event, ...rest), 150);
        return true;
      };
      return subscriber;
    };
    const c = await replica(redis);
    const { logger, lines } = capture();
    const d = await replica(connect(), logger);
    const p = product('confirmed');
    await d.create(block(p, 'yan'));
    expect([a, b, c].map((r) => r.find(p, 'yan')?.user)).toEqual(['yan', 'yan', 'yan']);
    expect(await d.remove(p, 'yan')).toBe(true);
    expect([a, b, c].map((r) => r.find(p, 'yan'))).toEqual([undefined, undefined, undefined]);
    expect(lines.filter((l) => /not confirmed/.test(String(l.message)))).toEqual([]);
  });

  it('stops waiting for a receiver that never confirms after ANNOUNCE_CONFIRM_MS, and says how many did', async () => {
    // A subscriber of the channel that is no replica (a redis-cli, or a replica of a version that does not confirm).
    const listener = connect();
    if (listener.status !== 'ready') await new Promise((r) => listener.once('ready', r));
    const db = Number(connections[0].options.db ?? 0);
    await listener.subscribe(db ? `kg:blocks:changes:${db}` : 'kg:blocks:changes');
    const { logger, lines } = capture();
    const e = await replica(connect(), logger);
    const p = product('unconfirmed');
    try {
      await e.create(block(p, 'zed'));
      // Every replica has it all the same (the others confirmed), and the operator had an answer.
      expect([a, b, e].map((r) => r.find(p, 'zed')?.user)).toEqual(['zed', 'zed', 'zed']);
      const said = lines.filter((l) => /not confirmed by every replica/.test(String(l.message)));
      expect(said).toHaveLength(1);
      expect(said[0]).toMatchObject({ severity: 'WARNING' });
      expect(said[0].message).toContain(`${ANNOUNCE_CONFIRM_MS} ms`);
      expect(Number(said[0].received) - Number(said[0].confirmed)).toBe(1);
    } finally {
      await listener.unsubscribe();
      await e.remove(p, 'zed');
    }
  });

  it('keeps a change announced while a read of the hash is in flight, and takes the rest of that read', async () => {
    const redis = connect();
    const c = await replica(redis);
    const p = product('mid-read');
    const admin = connections[0];
    // c's next read of the hash waits at a gate, and reads the hash only once it opens.
    const original = redis.hgetall.bind(redis);
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let held = false;
    (redis as unknown as { hgetall: (key: string) => Promise<Record<string, string>> }).hgetall = async (key) => {
      held = true;
      await gate;
      return original(key);
    };
    try {
      await msUntil('a read of c to be in flight', () => held, 2 * BLOCKS_POLL_MS);
      // Announced while the read waits: c applies it at once.
      await a.create(block(p, 'vic'));
      await msUntil('c to apply the announced block', () => c.find(p, 'vic') !== undefined, 2_000);
      // Then the hash changes by hand, unannounced: the read will miss vic's block and find wes's.
      await admin.hdel(BLOCKS_KEY, `${p}\nvic`);
      await admin.hset(BLOCKS_KEY, `${p}\nwes`, JSON.stringify(block(p, 'wes')));
      open();
      await msUntil('c to take the read', () => c.find(p, 'wes') !== undefined, BLOCKS_POLL_MS);
      // The announced change is applied over what the read found, not undone by it.
      expect(c.find(p, 'vic')).toBeDefined();
    } finally {
      (redis as unknown as { hgetall: typeof original }).hgetall = original;
      await admin.hdel(BLOCKS_KEY, `${p}\nvic`, `${p}\nwes`);
    }
  });

  it('creates and lifts blocks as a Redis ACL user without the channel (Redis 7 grants none by default), the others learning them at their next read', async () => {
    const admin = connections[0];
    const name = `${RUN}-nochannel`;
    // Every key and command, no channel: PUBLISH and SUBSCRIBE are refused (NOPERM).
    await admin.call('ACL', 'SETUSER', name, 'reset', 'on', '>test-password', '~*', '+@all', 'resetchannels');
    const url = new URL(REDIS_URL);
    url.username = name;
    url.password = 'test-password';
    const restricted = new Redis(url.toString(), TEST_CONNECTION);
    connections.push(restricted);
    const { logger, lines } = capture();
    try {
      const c = await replica(restricted, logger);
      const p = product('no-channel');
      await c.create(block(p, 'una'));
      expect(c.find(p, 'una')).toBeDefined();
      await msUntil('b to read the block', () => b.find(p, 'una') !== undefined, 2 * BLOCKS_POLL_MS + 500);
      expect(await c.remove(p, 'una')).toBe(true);
      await msUntil('b to read the lift', () => b.find(p, 'una') === undefined, 2 * BLOCKS_POLL_MS + 500);
      const refused = lines.filter((l) => /refused to announce a block change/.test(String(l.message)));
      expect(refused).toHaveLength(1);
      expect(refused[0]).toMatchObject({ severity: 'WARNING', reason: expect.stringMatching(/NOPERM/) });
    } finally {
      await admin.call('ACL', 'DELUSER', name);
    }
  });

  it('applies no change announced by a deployment that shares this Redis through another database (pub/sub ignores databases)', async () => {
    const url = new URL(REDIS_URL);
    url.pathname = url.pathname === '/7' ? '/8' : '/7';
    const otherDb = (): Redis => {
      const redis = new Redis(url.toString(), TEST_CONNECTION);
      connections.push(redis);
      return redis;
    };
    // Two replicas of another deployment (say stage, beside dev), in database 7 of the same Redis.
    const [other, otherPeer] = await Promise.all([replica(otherDb()), replica(otherDb())]);
    const p = product('other-db');
    const q = product('other-db-own');
    try {
      // This deployment blocks p; then the other deployment blocks q. The announcements reach a
      // subscriber in order, so once `other` has q, it has been sent whatever came before it.
      await a.create(block(p, 'sam'));
      await otherPeer.create(block(q, 'tia'));
      await msUntil('the other deployment to apply its own block', () => other.find(q, 'tia') !== undefined, 2_000);
      expect(other.find(p, 'sam')).toBeUndefined();
      // Nor a lift: the other deployment's own block of p stays in force when this one lifts its own.
      await otherPeer.create(block(p, 'sam'));
      await msUntil('the other deployment to apply it', () => other.find(p, 'sam') !== undefined, 2_000);
      expect(await a.remove(p, 'sam')).toBe(true);
      await otherPeer.remove(q, 'tia');
      await msUntil('the other deployment to apply its own lift', () => other.find(q, 'tia') === undefined, 2_000);
      expect(other.find(p, 'sam')).toMatchObject({ product: p, user: 'sam' });
    } finally {
      await otherPeer.remove(p, 'sam').catch(() => undefined);
      await otherPeer.remove(q, 'tia').catch(() => undefined);
    }
  });

  it('says a lift deleted nothing when another replica lifted it first, or it had expired, though this copy still showed it', async () => {
    const p = product('lifted-twice');
    await a.create(block(p, 'pia'));
    await msUntil('b to see it', () => b.find(p, 'pia') !== undefined, 1_000);
    expect(await a.remove(p, 'pia')).toBe(true);
    // b's copy is not refreshed yet: the block is gone all the same.
    expect(await b.remove(p, 'pia')).toBe(false);
    await a.create(block(p, 'quinn', 150));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await a.remove(p, 'quinn')).toBe(false);
  });

  it('honours an expiry on every replica and removes the expired entry from Redis', async () => {
    const p = product('expiry');
    await a.create(block(p, 'peggy', 700));
    await msUntil('b to see it', () => b.find(p, 'peggy') !== undefined, 1_000);
    await msUntil('the block to expire on a', () => a.find(p, 'peggy') === undefined, 1_500);
    expect(b.find(p, 'peggy')).toBeUndefined();
    expect(b.list().some((x) => x.product === p)).toBe(false);
    const redis = connections[0];
    const deadline = Date.now() + 2 * BLOCKS_POLL_MS + 500;
    while ((await redis.hexists(BLOCKS_KEY, `${p}\npeggy`)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await redis.hexists(BLOCKS_KEY, `${p}\npeggy`)).toBe(0);
  });

  it('sees a block that existed before it started (a replica that boots later)', async () => {
    const p = product('boot');
    await a.create(block(p, null));
    const late = await replica();
    expect(late.find(p, 'x')).toBeDefined();
  });

  it('has the blocks in force once started, though its connection was still being made (a replica booting)', async () => {
    const p = product('boot-connecting');
    await a.create(block(p, 'sam'));
    // As at boot: the Redis module has just created the connection when the service starts.
    const redis = connect();
    expect(redis.status).not.toBe('ready');
    const booting = new BlocksService(redis, capture().logger);
    services.push(booting);
    await booting.onModuleInit();
    expect(booting.find(p, 'sam')).toMatchObject({ product: p, user: 'sam' });
  });

  it('matches an email address whatever its case on either side, and opaque ids exactly', async () => {
    const p = product('case');
    await a.create(block(p, 'Alice.Smith@Corp.example'));
    await a.create(block(p, 'User-7'));
    await msUntil('b to see both blocks', () => b.find(p, 'User-7') !== undefined, 1_000);
    // IAP hands keygate the address in lower case; an operator copied it from a directory.
    expect(b.find(p, 'alice.smith@corp.example')).toMatchObject({ user: 'Alice.Smith@Corp.example' });
    expect(b.find(p, 'ALICE.SMITH@CORP.EXAMPLE')).toBeDefined();
    // A JWT `sub` is compared exactly (RFC 7519): another case is another user.
    expect(b.find(p, 'user-7')).toBeUndefined();
    expect(await b.remove(p, 'alice.smith@corp.example')).toBe(true);
    await msUntil('a to drop the email block', () => a.find(p, 'Alice.Smith@Corp.example') === undefined, 1_000);
    expect(await a.remove(p, 'user-7')).toBe(false);
    expect(a.find(p, 'User-7')).toBeDefined();
  });

  it('finds and lifts a block whose hash field spells the email in another case (written by an older version)', async () => {
    const p = product('legacy');
    const legacy = block(p, 'Bob@Corp.example');
    await connections[0].hset(BLOCKS_KEY, `${p}\nBob@Corp.example`, JSON.stringify(legacy));
    await msUntil('a to see the legacy block', () => a.find(p, 'bob@corp.example') !== undefined, 1_000);
    expect(await a.remove(p, 'BOB@corp.example')).toBe(true);
    expect(await connections[0].hexists(BLOCKS_KEY, `${p}\nBob@Corp.example`)).toBe(0);
    // It stays lifted: the next refresh must not bring it back.
    await new Promise((r) => setTimeout(r, 2 * BLOCKS_POLL_MS + 100));
    expect(a.find(p, 'bob@corp.example')).toBeUndefined();
  });

  it('ignores a malformed entry in the hash instead of failing the refresh', async () => {
    const p = product('garbage');
    await connections[0].hset(BLOCKS_KEY, `${RUN}-garbage-entry`, '{not json');
    await a.create(block(p, 'quentin'));
    await msUntil('b to see the good block', () => b.find(p, 'quentin') !== undefined, 1_000);
  });
});

describe('BlocksService when Redis loses its data', () => {
  it("writes back the blocks the replicas held, keeps an operator's deletion, and says so once per replica", async () => {
    const lines = [capture(), capture()];
    const [one, two] = await Promise.all(lines.map(({ logger }) => replica(connect(), logger)));
    const p = product('data-loss');
    await one.create(block(p, 'victor'));
    await one.create(block(p, null, 60_000));
    await one.create(block(p, 'walter'));
    await msUntil('two to see the blocks', () => two.find(p, 'walter') !== undefined, 1_000);
    // An operator's DELETE: no data loss, nothing written back.
    expect(await two.remove(p, 'walter')).toBe(true);
    // (The product block answers `find` for every user, so the lists tell.)
    const holds = (service: BlocksService, user: string | null): boolean => service.list().some((x) => x.product === p && x.user === user);
    await msUntil('one to drop it', () => !holds(one, 'walter'), 1_000);
    await new Promise((r) => setTimeout(r, BLOCKS_POLL_MS + 100));
    expect(lines.flatMap((c) => c.lines).filter((l) => l.severity === 'ERROR')).toEqual([]);

    // Redis restarts empty (no persistence), as far as this test's blocks go: they and the epoch
    // marker are gone (other tests' blocks are left alone; their replicas write them back anyway).
    const redis = connections[0];
    await redis.hdel(BLOCKS_KEY, EPOCH_FIELD, ...(await redis.hkeys(BLOCKS_KEY)).filter((f) => f === p || f.startsWith(`${p}\n`)));
    const deadline = Date.now() + 3 * BLOCKS_POLL_MS + 500;
    let stored: Record<string, string> = {};
    while (Date.now() < deadline) {
      stored = await redis.hgetall(BLOCKS_KEY);
      if (`${p}\nvictor` in stored && p in stored) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(JSON.parse(stored[`${p}\nvictor`])).toMatchObject({ product: p, user: 'victor' });
    expect(JSON.parse(stored[p])).toMatchObject({ product: p, user: null });
    expect(`${p}\nwalter` in stored).toBe(false);
    expect(await redis.hget(BLOCKS_KEY, EPOCH_FIELD)).toEqual(expect.any(String));
    // Both replicas still enforce them, and each said what happened once.
    await new Promise((r) => setTimeout(r, 2 * BLOCKS_POLL_MS));
    for (const service of [one, two]) {
      expect(holds(service, 'victor')).toBe(true);
      expect(holds(service, null)).toBe(true);
      expect(holds(service, 'walter')).toBe(false);
    }
    for (const { lines: said } of lines) {
      const errors = said.filter((l) => l.severity === 'ERROR');
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ message: expect.stringMatching(/^Redis lost its data/), restored: expect.any(Number) });
    }
  });
});

describe('BlocksService when Redis goes back to older data', () => {
  it('writes back the blocks made since (a restart from a snapshot, a failover to a replica that missed the last writes), and says so once per replica', async () => {
    const lines = [capture(), capture()];
    const [one, two] = await Promise.all(lines.map(({ logger }) => replica(connect(), logger)));
    const p = product('went-back');
    const redis = connect();
    if (redis.status !== 'ready') await new Promise((r) => redis.once('ready', r));
    await one.create(block(p, 'before'));
    const snapshotVersion = await redis.hget(BLOCKS_KEY, VERSION_FIELD);
    expect(Number(snapshotVersion)).toBeGreaterThan(0);
    await one.create(block(p, 'after'));
    await msUntil('two to see the block made after the snapshot', () => two.find(p, 'after') !== undefined, 1_000);
    // Both have read the hash since (its version with it).
    await new Promise((r) => setTimeout(r, BLOCKS_POLL_MS + 100));
    expect(lines.flatMap((c) => c.lines).filter((l) => l.severity === 'ERROR')).toEqual([]);

    // Redis comes back with the older data: the block made since is gone, the epoch marker is not.
    await redis
      .multi()
      .hdel(BLOCKS_KEY, `${p}\nafter`)
      .hset(BLOCKS_KEY, VERSION_FIELD, snapshotVersion as string)
      .exec();
    const deadline = Date.now() + 3 * BLOCKS_POLL_MS + 500;
    while (Date.now() < deadline && (await redis.hexists(BLOCKS_KEY, `${p}\nafter`)) === 0) await new Promise((r) => setTimeout(r, 50));
    expect(JSON.parse((await redis.hget(BLOCKS_KEY, `${p}\nafter`)) ?? 'null')).toMatchObject({ product: p, user: 'after' });
    // Still in force on both replicas, and each said what happened, once.
    await new Promise((r) => setTimeout(r, 2 * BLOCKS_POLL_MS));
    for (const service of [one, two]) {
      expect(service.find(p, 'after')).toMatchObject({ user: 'after' });
      expect(service.find(p, 'before')).toMatchObject({ user: 'before' });
    }
    for (const { lines: said } of lines) {
      const errors = said.filter((l) => l.severity === 'ERROR');
      expect(errors).toHaveLength(1);
      // (Or "lost its data (found by another replica)": the first replica to find it replaces the epoch for the others.)
      expect(errors[0]).toMatchObject({ message: expect.stringMatching(/^Redis (went back to older data|lost its data)/) });
    }
  });
});

describe('BlocksService when Redis loses its data while a replica cannot read it', () => {
  it('writes nothing back from a replica cut off while Redis kept running (a block may have been lifted meanwhile), and says so', async () => {
    const said = capture();
    const operator = await replica();
    const staleRedis = connect();
    const stale = { service: await replica(staleRedis, said.logger), redis: staleRedis };
    const p = product('stale-view');
    await operator.create(block(p, 'yvonne'));
    await msUntil('the stale replica to see the block', () => stale.service.list().some((x) => x.product === p), 1_000);
    // The stale replica stops reading (its commands fail while the connection stays up)...
    const hgetall = stale.redis.hgetall.bind(stale.redis);
    (stale.redis as unknown as { hgetall: () => Promise<never> }).hgetall = () => Promise.reject(new Error('LOADING Redis is loading'));
    // ...an operator lifts the block through another replica, then Redis loses this test's data.
    expect(await operator.remove(p, 'yvonne')).toBe(true);
    await new Promise((r) => setTimeout(r, 3 * BLOCKS_POLL_MS));
    const redis = connections[0];
    await redis.hdel(BLOCKS_KEY, EPOCH_FIELD);
    await new Promise((r) => setTimeout(r, 2 * BLOCKS_POLL_MS));
    (stale.redis as unknown as { hgetall: typeof hgetall }).hgetall = hgetall;
    await msUntil('the stale replica to report the loss', () => said.lines.some((l) => l.severity === 'ERROR'), 2_000);
    expect(said.lines.filter((l) => l.severity === 'ERROR')).toEqual([
      expect.objectContaining({
        message: expect.stringMatching(/nothing written back from this replica \(Redis kept running/),
        restored: 0,
      }),
    ]);
    // The lifted block stays lifted everywhere.
    await new Promise((r) => setTimeout(r, 2 * BLOCKS_POLL_MS));
    expect(await redis.hexists(BLOCKS_KEY, `${p}\nyvonne`)).toBe(0);
    expect(stale.service.list().some((x) => x.product === p)).toBe(false);
  });
});

describe('BlocksService when Redis stops answering', () => {
  it('says once that the blocks in force may be stale, keeps them, and says when refreshing works again', async () => {
    const redis = connect();
    const { logger, lines } = capture();
    const service = await replica(redis, logger);
    const p = product('stale');
    await service.create(block(p, 'ursula'));
    // The connection stays "ready" while its commands fail (a hung or refusing Redis).
    const hgetall = redis.hgetall.bind(redis);
    (redis as unknown as { hgetall: () => Promise<never> }).hgetall = () => Promise.reject(new Error('LOADING Redis is loading'));
    await new Promise((r) => setTimeout(r, 3 * BLOCKS_POLL_MS));
    const failing = lines.filter((l) => /blocks refresh failed/.test(String(l.message)));
    expect(failing).toHaveLength(1);
    expect(failing[0]).toMatchObject({ severity: 'WARNING', reason: 'LOADING Redis is loading', inForce: expect.any(Number) });
    expect(service.find(p, 'ursula')).toBeDefined();
    (redis as unknown as { hgetall: typeof hgetall }).hgetall = hgetall;
    await msUntil(
      'the recovery line',
      () => lines.some((l) => l.message === 'blocks refreshed from Redis again'),
      2 * BLOCKS_POLL_MS + 500,
    );
    expect(lines.filter((l) => l.severity === 'NOTICE')).toHaveLength(1);
  });
});

describe('BlocksService when Redis is connected but silent', () => {
  it('answers an operator’s change 503 after a bounded wait, saying it may still be applied (the command was sent)', async () => {
    const redis = connect();
    const service = await replica(redis);
    const p = product('silent');
    // A write (the block and the version, one transaction) that never answers, as a paused or
    // overloaded Redis does: no rejection to wait for.
    const multi = redis.multi.bind(redis);
    const silent = { hset: () => silent, hincrby: () => silent, exec: () => new Promise<never>(() => undefined) };
    (redis as unknown as { multi: () => typeof silent }).multi = () => silent;
    try {
      const error = await service.create(block(p, 'zed')).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ code: 'service_unavailable', message: expect.stringMatching(/may still be applied/) });
    } finally {
      (redis as unknown as { multi: typeof multi }).multi = multi;
    }
    expect(service.find(p, 'zed')).toBeUndefined();
  });
});

describe('BlocksService when its Redis connection drops', () => {
  it('says once that the blocks in force may be stale, and nothing before its first refresh', async () => {
    // Reconnects only after 10 s, so the outage lasts the whole test.
    const redis = new Redis(REDIS_URL, { ...TEST_CONNECTION, retryStrategy: () => 10_000 });
    connections.push(redis);
    const { logger, lines } = capture();
    // Not ready yet at boot: a connection being made is no outage.
    const service = new BlocksService(redis, logger);
    services.push(service);
    await service.onModuleInit();
    if (redis.status !== 'ready') await new Promise((r) => redis.once('ready', r));
    await new Promise((r) => setTimeout(r, 2 * BLOCKS_POLL_MS));
    expect(lines.filter((l) => /blocks refresh failed/.test(String(l.message)))).toHaveLength(0);
    redis.disconnect(true);
    await new Promise((r) => setTimeout(r, 3 * BLOCKS_POLL_MS));
    const failing = lines.filter((l) => /blocks refresh failed/.test(String(l.message)));
    // One line, whichever the refresh met first: the dropped connection, or a command failing as it dropped.
    expect(failing).toEqual([expect.objectContaining({ severity: 'WARNING', reason: expect.any(String) as unknown })]);
  });
});

describe('BlocksService booting while Redis is away', () => {
  it('says after the boot grace that no block is in force on this replica', async () => {
    // Nothing listens on port 1: the client keeps reconnecting.
    const redis = new Redis('redis://127.0.0.1:1', {
      ...TEST_CONNECTION,
      maxRetriesPerRequest: 0,
      retryStrategy: () => 200,
      lazyConnect: false,
    });
    redis.on('error', () => undefined);
    connections.push(redis);
    const { logger, lines } = capture();
    const service = new BlocksService(redis, logger);
    services.push(service);
    await service.onModuleInit();
    expect(lines).toHaveLength(0);
    await msUntil(
      'the not-loaded WARNING',
      () => lines.some((l) => /blocks not loaded/.test(String(l.message))),
      BLOCKS_BOOT_GRACE_MS + 1_500,
    );
    expect(lines.filter((l) => /blocks not loaded/.test(String(l.message)))).toEqual([
      expect.objectContaining({ severity: 'WARNING', waitedMs: BLOCKS_BOOT_GRACE_MS }),
    ]);
  });
});

describe('BlocksService on a database Redis refuses', () => {
  it('leaves the not-loaded WARNING out: the refusal has its own ERROR line, and no outage will end', async () => {
    // Past any server's `databases`: Redis refuses the SELECT ioredis sends on connecting.
    const redis = new Redis(`${REDIS_URL.replace(/\/\d*$/, '')}/2147483647`, {
      ...TEST_CONNECTION,
      maxRetriesPerRequest: 0,
      lazyConnect: false,
    });
    redis.on('error', () => undefined);
    closeOnRefusedDatabase(redis);
    connections.push(redis);
    const { logger, lines } = capture();
    const service = new BlocksService(redis, logger);
    services.push(service);
    await service.onModuleInit();
    await msUntil('the client closed', () => refusedDatabase(redis), 2_000);
    await new Promise((r) => setTimeout(r, BLOCKS_BOOT_GRACE_MS + 500));
    expect(lines.filter((l) => /blocks not loaded/.test(String(l.message)))).toEqual([]);
  });
});

describe('BlocksService removing expired blocks', () => {
  it('does not delete a block created again under the same key after its refresh read the expired one', async () => {
    const redis = connect();
    if (redis.status !== 'ready') await new Promise((r) => redis.once('ready', r));
    const service = new BlocksService(redis, capture().logger);
    services.push(service);
    const p = product('recreated');
    const field = `${p}\nvera`;
    const expired = JSON.stringify(block(p, 'vera', -1_000));
    const fresh = JSON.stringify(block(p, 'vera', 60_000));
    // Redis holds the new block (another replica wrote it) while this replica's read still saw the expired one.
    await redis.hset(BLOCKS_KEY, field, fresh);
    const hgetall = redis.hgetall.bind(redis);
    (redis as unknown as { hgetall: () => Promise<Record<string, string>> }).hgetall = () => Promise.resolve({ [field]: expired });
    await service.onModuleInit();
    (redis as unknown as { hgetall: typeof hgetall }).hgetall = hgetall;
    expect(await redis.hget(BLOCKS_KEY, field)).toBe(fresh);
    // An entry that is still the expired one is deleted.
    await redis.hset(BLOCKS_KEY, field, expired);
    await new Promise((r) => setTimeout(r, 2 * BLOCKS_POLL_MS));
    expect(await redis.hget(BLOCKS_KEY, field)).toBeNull();
  });
});

describe('BlocksService without Redis', () => {
  it('keeps blocks in the process', async () => {
    const s = await replica(null);
    const p = product('local');
    await s.create(block(p, 'rob'));
    expect(s.find(p, 'rob')).toBeDefined();
    expect(s.find(p, 'other')).toBeUndefined();
    expect(await s.remove(p, 'rob')).toBe(true);
    expect(s.find(p, 'rob')).toBeUndefined();
  });
});

/** Two refusals of `user` by their per-second limit. */
async function refuseTwice(blocker: AutoBlocker, p: string, user: string): Promise<void> {
  await blocker.refused(p, user, 'user_qps');
  await blocker.refused(p, user, 'user_qps');
}

describe('AutoBlocker', () => {
  const config = (p: string, autoBlock: Record<string, number>): GatewayConfig =>
    ({ policy: buildPolicyBook({ products: { [p]: { auto_block: autoBlock } } }) }) as unknown as GatewayConfig;

  /** A replica's blocks and an auto-blocker for product `p`, on `redis` or (null) on none, with its log lines. */
  async function autoBlocking(
    p: string,
    autoBlock: Record<string, number>,
    redis: Redis | null,
  ): Promise<{ blocks: BlocksService; blocker: AutoBlocker; lines: Array<Record<string, unknown>> }> {
    const blocks = await replica(redis);
    const { logger, lines } = capture();
    return { blocks, blocker: new AutoBlocker(config(p, autoBlock), redis ?? undefined, blocks, logger), lines };
  }

  it('blocks a user after `rejections` refusals within the window, on every replica, with one ALERT line', async () => {
    const p = product('auto');
    const redis = connect();
    const [blocks, other] = await Promise.all([replica(redis), replica()]);
    const { logger, lines } = capture();
    const blocker = new AutoBlocker(config(p, { rejections: 3, window_seconds: 60, block_seconds: 30 }), redis, blocks, logger);

    await refuseTwice(blocker, p, 'trudy');
    expect(blocks.find(p, 'trudy')).toBeUndefined();
    expect(lines.filter((l) => l.severity === 'ALERT')).toHaveLength(0);

    await blocker.refused(p, 'trudy', 'user_qps');
    const found = blocks.find(p, 'trudy');
    expect(found).toMatchObject({ product: p, user: 'trudy', createdBy: 'auto-block' });
    const lifetime = Date.parse(found!.expiresAt!) - Date.parse(found!.createdAt);
    expect(lifetime).toBe(30_000);
    // Only that user.
    expect(blocks.find(p, 'victor')).toBeUndefined();
    await msUntil('the other replica to enforce the auto-block', () => other.find(p, 'trudy') !== undefined, 1_000);

    const alerts = lines.filter((l) => l.severity === 'ALERT');
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ product: p, user: 'trudy', reason: 'user_qps', refusals: 3 });
    // The refusal counter lives in Redis with the window as its TTL.
    const ttl = await redis.ttl(`kg:{${p}}:refusals:trudy`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60);

    // More refusals in the same window do not raise another alert.
    await blocker.refused(p, 'trudy', 'user_qps');
    expect(lines.filter((l) => l.severity === 'ALERT')).toHaveLength(1);
  });

  it('counts refusals across replicas (two blockers sharing Redis)', async () => {
    const p = product('auto-shared');
    const r1 = connect();
    const r2 = connect();
    const [b1, b2] = await Promise.all([replica(r1), replica(r2)]);
    const log1 = capture();
    const log2 = capture();
    const cfg = config(p, { rejections: 4, window_seconds: 60, block_seconds: 60 });
    const one = new AutoBlocker(cfg, r1, b1, log1.logger);
    const two = new AutoBlocker(cfg, r2, b2, log2.logger);
    await Promise.all([
      one.refused(p, 'wendy', 'user_daily'),
      two.refused(p, 'wendy', 'user_daily'),
      one.refused(p, 'wendy', 'user_daily'),
    ]);
    expect(b1.find(p, 'wendy') ?? b2.find(p, 'wendy')).toBeUndefined();
    await two.refused(p, 'wendy', 'user_daily');
    expect(b2.find(p, 'wendy')).toBeDefined();
    expect([...log1.lines, ...log2.lines].filter((l) => l.severity === 'ALERT')).toHaveLength(1);
  });

  it('does nothing when auto_block.rejections is 0', async () => {
    const p = product('auto-off');
    const { blocks, blocker, lines } = await autoBlocking(p, { rejections: 0, window_seconds: 60, block_seconds: 60 }, null);
    for (let i = 0; i < 20; i++) await blocker.refused(p, 'xena', 'user_qps');
    expect(blocks.find(p, 'xena')).toBeUndefined();
    expect(lines).toHaveLength(0);
  });

  it('blocks a user again who keeps hitting the limit after an auto-block expired (same window)', async () => {
    // block_seconds (1) is shorter than window_seconds (60). While blocked, refusals are not counted
    // (the block answers first), so the counter stays at `rejections`; after the block lifts, the
    // next refusals count 3, 4, … and `count !== rejections` never blocks again until the window ends.
    const p = product('auto-again');
    const { blocks, blocker, lines } = await autoBlocking(p, { rejections: 2, window_seconds: 60, block_seconds: 1 }, null);
    await refuseTwice(blocker, p, 'zoe');
    expect(blocks.find(p, 'zoe')).toBeDefined();
    await msUntil('the auto-block to expire', () => blocks.find(p, 'zoe') === undefined, 2_000);
    await refuseTwice(blocker, p, 'zoe');
    expect(blocks.find(p, 'zoe')).toBeDefined();
    expect(lines.filter((l) => l.severity === 'ALERT')).toHaveLength(2);
  });

  it('auto-blocks a user again after an operator lifted their auto-block, though its lock would still hold (real Redis)', async () => {
    const p = product('auto-lifted');
    const redis = connect();
    const { blocks, blocker, lines } = await autoBlocking(p, { rejections: 2, window_seconds: 60, block_seconds: 900 }, redis);
    await refuseTwice(blocker, p, 'yuri');
    expect(blocks.find(p, 'yuri')).toBeDefined();
    expect(await redis.exists(`kg:{${p}}:autoblocked:yuri`)).toBe(1);
    expect(await blocks.remove(p, 'yuri')).toBe(true);
    expect(await redis.exists(`kg:{${p}}:autoblocked:yuri`, `kg:{${p}}:refusals:yuri`)).toBe(0);
    await refuseTwice(blocker, p, 'yuri');
    expect(blocks.find(p, 'yuri')).toBeDefined();
    expect(lines.filter((l) => l.severity === 'ALERT')).toHaveLength(2);
  });

  it('auto-blocks a user again after an operator lifted their auto-block, without Redis too (per-replica lock and count)', async () => {
    const p = product('auto-lifted-local');
    const { blocks, blocker, lines } = await autoBlocking(p, { rejections: 2, window_seconds: 60, block_seconds: 900 }, null);
    await refuseTwice(blocker, p, 'xavi');
    expect(blocks.find(p, 'xavi')).toBeDefined();
    expect(await blocks.remove(p, 'xavi')).toBe(true);
    await refuseTwice(blocker, p, 'xavi');
    expect(blocks.find(p, 'xavi')).toBeDefined();
    expect(lines.filter((l) => l.severity === 'ALERT')).toHaveLength(2);
  });

  it('blocks on this replica while a configured Redis is away, and writes the block to Redis when it returns', async () => {
    const p = product('auto-outage');
    const redis = connect();
    const { blocks, blocker, lines } = await autoBlocking(p, { rejections: 2, window_seconds: 60, block_seconds: 30 }, redis);
    redis.disconnect();
    await msUntil('the client to be disconnected', () => redis.status !== 'ready', 2_000);
    // An operator's change needs every replica, so it is refused while Redis is away…
    await expect(blocks.create(block(p, 'op-user'))).rejects.toMatchObject({ code: 'service_unavailable' });
    await refuseTwice(blocker, p, 'vic');
    // …but an auto-block is in force here at once.
    expect(blocks.find(p, 'vic')?.createdBy).toBe('auto-block');
    expect(lines.filter((l) => l.severity === 'ALERT')).toHaveLength(1);
    expect(lines.filter((l) => l.severity === 'ERROR')).toHaveLength(0);
    // An operator's lift is refused too, and changes nothing: the auto-block is still written back.
    await expect(blocks.remove(p, 'vic')).rejects.toMatchObject({
      code: 'service_unavailable',
      message: expect.stringMatching(/nothing was changed/),
    });
    expect(blocks.find(p, 'vic')).toBeDefined();
    await redis.connect();
    const other = connect();
    await replica(other); // waits for its connection
    let stored: string | null = null;
    for (let i = 0; i < 30 && stored === null; i++) {
      stored = await other.hget(BLOCKS_KEY, `${p}\nvic`);
      if (stored === null) await new Promise((r) => setTimeout(r, 100));
    }
    expect(JSON.parse(stored ?? 'null')).toMatchObject({ product: p, user: 'vic', createdBy: 'auto-block' });
    // Still in force after the refreshes that now read Redis.
    await new Promise((r) => setTimeout(r, BLOCKS_POLL_MS * 2));
    expect(blocks.find(p, 'vic')).toBeDefined();
  });

  it('counts in memory without Redis and still blocks', async () => {
    const p = product('auto-local');
    const { blocks, blocker, lines } = await autoBlocking(p, { rejections: 2, window_seconds: 60, block_seconds: 5 }, null);
    await blocker.refused(p, 'yuri', 'product_qps');
    expect(blocks.find(p, 'yuri')).toBeUndefined();
    await blocker.refused(p, 'yuri', 'product_qps');
    expect(blocks.find(p, 'yuri')).toBeDefined();
    expect(lines.filter((l) => l.severity === 'ALERT')).toHaveLength(1);
  });
});
