import { AnswerBudget } from './answer-budget';

const signal = (): AbortSignal => new AbortController().signal;
/** Lets pending promise callbacks run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('AnswerBudget', () => {
  it('takes chunks while they fit, and counts what each answer holds until it is released', () => {
    const budget = new AnswerBudget(100);
    const a = budget.open(signal());
    const b = budget.open(signal());
    expect(a.tryTake(60)).toBe(true);
    expect(b.tryTake(40)).toBe(true);
    expect(budget.held).toBe(100);
    a.release();
    expect(budget.held).toBe(40);
    b.release();
    b.release(); // twice is harmless
    expect(budget.held).toBe(0);
  });

  it('never stops the oldest reader, so one answer larger than the budget still completes', () => {
    const budget = new AnswerBudget(10);
    const first = budget.open(signal());
    expect(first.tryTake(50)).toBe(true);
    expect(first.tryTake(50)).toBe(true);
    expect(budget.held).toBe(100);
  });

  it('makes a later answer wait past the budget until one ahead is released, then lets it on', async () => {
    const budget = new AnswerBudget(100);
    const first = budget.open(signal());
    const second = budget.open(signal());
    expect(first.tryTake(80)).toBe(true);
    expect(second.tryTake(30)).toBe(false);
    let admitted = false;
    const waiting = second.waitFor(30).then(() => (admitted = true));
    await settle();
    expect(admitted).toBe(false);
    expect(budget.waits).toBe(1);
    first.release();
    await waiting;
    expect(admitted).toBe(true);
    expect(budget.held).toBe(30);
  });

  it('lets a waiting reader on once the readers ahead are gone, even when it alone passes the budget', async () => {
    const budget = new AnswerBudget(100);
    const first = budget.open(signal());
    const second = budget.open(signal());
    first.tryTake(90);
    expect(second.tryTake(150)).toBe(false);
    const waiting = second.waitFor(150);
    first.release();
    await waiting;
    expect(budget.held).toBe(150);
  });

  it('keeps an answer read whole held until released, and the oldest reader past the budget waits for it', async () => {
    const budget = new AnswerBudget(100);
    const first = budget.open(signal());
    const second = budget.open(signal());
    first.tryTake(90);
    expect(second.tryTake(20)).toBe(false);
    let admitted = false;
    const waiting = second.waitFor(20).then(() => (admitted = true));
    first.doneReading();
    await settle();
    // The second is the oldest reader now, but the first answer's 90 bytes are still in memory.
    expect(admitted).toBe(false);
    expect(budget.held).toBe(90);
    first.release();
    await waiting;
    expect(budget.held).toBe(20);
    second.release();
    expect(budget.held).toBe(0);
  });

  it('serves readers in turn: a later one that would fit waits behind an earlier one that waits', async () => {
    const budget = new AnswerBudget(100);
    const done = budget.open(signal());
    done.tryTake(50);
    done.doneReading();
    const big = budget.open(signal());
    expect(big.tryTake(80)).toBe(false);
    const bigWaits = big.waitFor(80);
    const small = budget.open(signal());
    expect(small.tryTake(10)).toBe(false);
    done.release();
    await bigWaits;
    expect(budget.held).toBe(80);
    expect(small.tryTake(10)).toBe(true);
  });

  it('lets a request that holds an answer read whole read its next ones at once, over the budget', () => {
    const budget = new AnswerBudget(100);
    const request = {};
    const firstBatch = budget.open(signal(), request);
    firstBatch.tryTake(90);
    firstBatch.doneReading();
    const secondBatch = budget.open(signal(), request);
    expect(secondBatch.tryTake(90)).toBe(true);
    // Another request's answer does not fit, and waits.
    expect(budget.open(signal(), {}).tryTake(1)).toBe(false);
  });

  it('never deadlocks two requests that each read several answers', async () => {
    const budget = new AnswerBudget(100);
    const a = {};
    const b = {};
    const bFirst = budget.open(signal(), b);
    bFirst.tryTake(80);
    bFirst.doneReading();
    // A's first answer is first in line but over the budget: it waits for B's answer to be released.
    const aFirst = budget.open(signal(), a);
    expect(aFirst.tryTake(50)).toBe(false);
    let aGoes = false;
    const aWaits = aFirst.waitFor(50).then(() => (aGoes = true));
    // B's next answer, behind A's in line, is not held up by it: B can finish, and release.
    const bSecond = budget.open(signal(), b);
    expect(bSecond.tryTake(80)).toBe(true);
    bSecond.doneReading();
    await settle();
    expect(aGoes).toBe(false);
    bFirst.release();
    bSecond.release();
    await aWaits;
    expect(budget.held).toBe(50);
  });

  it('stops waiting, without taking the chunk, when the request is aborted', async () => {
    const budget = new AnswerBudget(100);
    const first = budget.open(signal());
    const abort = new AbortController();
    const second = budget.open(abort.signal);
    first.tryTake(100);
    const waiting = second.waitFor(10);
    abort.abort();
    await waiting;
    expect(budget.held).toBe(100);
    expect(budget.waits).toBe(1);
    // A chunk already buffered when the abort came: no second wait, none counted.
    await second.waitFor(10);
    expect(budget.waits).toBe(1);
    second.release();
    first.release();
    expect(budget.held).toBe(0);
  });

  it('counts each reader that had to wait once, however many releases it waited through', async () => {
    const budget = new AnswerBudget(100);
    const holders = [budget.open(signal()), budget.open(signal())];
    holders[0].tryTake(60);
    holders[1].tryTake(40);
    const late = budget.open(signal());
    expect(late.tryTake(50)).toBe(false);
    const waiting = late.waitFor(50);
    holders[1].release(); // 60 + 50 still over: waits on
    await settle();
    holders[0].release();
    await waiting;
    expect(budget.waits).toBe(1);
    expect(budget.held).toBe(50);
  });
});
