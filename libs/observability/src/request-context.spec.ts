import { abortSignalOf, parseTrace, pickRequestId, RequestAbort } from './request-context';

describe('pickRequestId', () => {
  const gen = (): string => 'generated';
  it('keeps a sane caller id and replaces anything else', () => {
    expect(pickRequestId('abc-123_x.y:z', gen)).toBe('abc-123_x.y:z');
    expect(pickRequestId('has space', gen)).toBe('generated');
    expect(pickRequestId('x'.repeat(129), gen)).toBe('generated');
    expect(pickRequestId(['a', 'b'], gen)).toBe('generated');
    expect(pickRequestId(undefined, gen)).toBe('generated');
  });

  it('replaces an id shaped like a credential (a key pasted into the wrong header): the id is logged unmasked', () => {
    for (const key of [
      'sk-abcdefghijklmnop1234',
      'sk-ant-api03-abcdef',
      'AIzaSyA-abcdefghijklmnopqrstuvw',
      'ya29.a0AfH6SM',
      'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig',
    ])
      expect(pickRequestId(key, gen)).toBe('generated');
    // Ids that merely contain such letters are kept.
    expect(pickRequestId('task-sk-1', gen)).toBe('task-sk-1');
    expect(pickRequestId('req_AIza', gen)).toBe('req_AIza');
  });
});

describe('parseTrace', () => {
  it('reads W3C traceparent', () => {
    expect(parseTrace('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', undefined)).toEqual({
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      sampled: true,
    });
  });

  it('reads X-Cloud-Trace-Context with a decimal span id', () => {
    expect(parseTrace(undefined, '105445aa7843bc8bf206b12000100000/1;o=1')).toEqual({
      traceId: '105445aa7843bc8bf206b12000100000',
      spanId: '0000000000000001',
      sampled: true,
    });
    expect(parseTrace(undefined, '105445aa7843bc8bf206b12000100000')).toEqual({
      traceId: '105445aa7843bc8bf206b12000100000',
      spanId: undefined,
      sampled: undefined,
    });
  });

  it('leaves out a decimal span id that is no 64-bit span (zero, or above 2^64 - 1)', () => {
    for (const span of ['0', '18446744073709551616', '99999999999999999999'])
      expect(parseTrace(undefined, `105445aa7843bc8bf206b12000100000/${span};o=1`)?.spanId).toBeUndefined();
    expect(parseTrace(undefined, '105445aa7843bc8bf206b12000100000/18446744073709551615')?.spanId).toBe('ffffffffffffffff');
  });

  it('refuses version ff, and version 00 with more fields; reads a later version by its first four fields', () => {
    const ids = '4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7';
    // Trace Context §3.2.2.1: version ff is invalid; then X-Cloud-Trace-Context is read, if any.
    expect(parseTrace(`ff-${ids}-01`, undefined)).toBeNull();
    expect(parseTrace(`ff-${ids}-01`, '105445aa7843bc8bf206b12000100000/1;o=1')?.traceId).toBe('105445aa7843bc8bf206b12000100000');
    expect(parseTrace(`00-${ids}-01-extra`, undefined)).toBeNull();
    // §3.2.4: a higher version is parsed for the fields this version knows; after the flags, "-" or the end.
    expect(parseTrace(`01-${ids}-01-what-comes-next`, undefined)).toEqual({
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      sampled: true,
    });
    expect(parseTrace(`01-${ids}-01`, undefined)?.spanId).toBe('00f067aa0ba902b7');
    expect(parseTrace(`01-${ids}-01x`, undefined)).toBeNull();
    // Uppercase hex is not the W3C format.
    expect(parseTrace(`00-${ids.toUpperCase()}-01`, undefined)).toBeNull();
  });

  it('prefers traceparent and rejects all-zero or malformed ids', () => {
    expect(parseTrace('00-00000000000000000000000000000000-00f067aa0ba902b7-01', undefined)).toBeNull();
    expect(parseTrace('garbage', 'also garbage')).toBeNull();
    expect(parseTrace('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00', '105445aa7843bc8bf206b12000100000')?.traceId).toBe(
      '4bf92f3577b34da6a3ce929d0e0e4736',
    );
  });
});

describe('RequestAbort', () => {
  it('is not aborted until aborted, and then is, with its signal, whenever the signal is asked for', () => {
    const before = new RequestAbort();
    const early = before.signal;
    expect(before.aborted).toBe(false);
    before.abort();
    expect(before.aborted).toBe(true);
    expect(early.aborted).toBe(true);
    expect(early.reason).toMatchObject({ name: 'AbortError' });

    const after = new RequestAbort();
    const reason = new Error('ended');
    after.abort(reason);
    after.abort(new Error('again')); // once, as an AbortController
    expect(after.aborted).toBe(true);
    expect(after.signal.aborted).toBe(true);
    expect(after.signal.reason).toBe(reason);
    expect(abortSignalOf(after)).toBe(after.signal);
  });

  it('calls the listeners added to it and to its signal once, in the order they were added, when aborted', () => {
    const abort = new RequestAbort();
    const calls: string[] = [];
    const first = (): number => calls.push('first');
    const removed = (): number => calls.push('removed');
    abort.addEventListener('abort', first, { once: true });
    abort.addEventListener('abort', first, { once: true }); // added once only, as an EventTarget does
    abort.addEventListener('abort', removed);
    abort.removeEventListener('abort', removed);
    abort.addEventListener('abort', () => calls.push('second'));
    // The signal made now: the listeners waiting go onto it first.
    abort.signal.addEventListener('abort', () => calls.push('on the signal'));
    abort.addEventListener('abort', () => calls.push('after the signal was made'));
    abort.abort();
    abort.abort();
    expect(calls).toEqual(['first', 'second', 'on the signal', 'after the signal was made']);
  });

  it('calls a listener added before any signal was made when aborted, and not one removed', () => {
    const abort = new RequestAbort();
    const heard = jest.fn();
    const gone = jest.fn();
    abort.addEventListener('abort', heard, { once: true });
    abort.addEventListener('abort', gone);
    abort.removeEventListener('abort', gone);
    abort.abort();
    expect(heard).toHaveBeenCalledTimes(1);
    expect(gone).not.toHaveBeenCalled();
  });

  it('gives an AbortSignal itself as the signal of a source', () => {
    const signal = new AbortController().signal;
    expect(abortSignalOf(signal)).toBe(signal);
  });
});
