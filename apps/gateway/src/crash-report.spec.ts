import { EventEmitter } from 'node:events';
import { JsonLogger, requestContextStorage, RequestContext } from '@keygate/observability';
import { reportCrashes } from './crash-report';

function crashingProcess(beforeExit?: (lines: Record<string, unknown>[]) => void): {
  proc: EventEmitter & { exit: jest.Mock };
  lines: Record<string, unknown>[];
  logger: JsonLogger;
} {
  const lines: Record<string, unknown>[] = [];
  const proc = Object.assign(new EventEmitter(), { exit: jest.fn() });
  // The level does not silence a crash: CRITICAL passes every level.
  const logger = new JsonLogger('error', undefined, (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  reportCrashes(logger, proc, beforeExit && (() => beforeExit(lines)));
  return { proc, lines, logger };
}

describe('reportCrashes', () => {
  it('writes an uncaught exception as one CRITICAL line with its stack, masked, then exits 1', () => {
    const { proc, lines } = crashingProcess();
    proc.emit('uncaughtException', new TypeError('boom with sk-proj-abcdefghijklmnopqrstuvwxyz0123456789 inside'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ severity: 'CRITICAL', error: 'TypeError' });
    expect(lines[0].message).toMatch(/^crashed \(uncaught exception\): boom with /);
    expect(String(lines[0].stack)).toContain('crash-report.spec');
    expect(JSON.stringify(lines[0])).not.toContain('sk-proj-abcdefghijklmnopqrstuvwxyz0123456789');
    expect(proc.exit).toHaveBeenCalledWith(1);
  });

  it('writes an unhandled rejection of a non-error too, with the request id when it happened serving one', () => {
    const { proc, lines } = crashingProcess();
    const ctx = new RequestContext('req-crash-1', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
    requestContextStorage.run(ctx, () => proc.emit('unhandledRejection', 'a bare string'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      severity: 'CRITICAL',
      message: 'crashed (unhandled promise rejection): a bare string',
      requestId: 'req-crash-1',
    });
    expect(proc.exit).toHaveBeenCalledWith(1);
  });

  it('runs beforeExit (the audit lines of the requests in flight) after the CRITICAL line and before exiting, even when it throws', () => {
    const seen: Array<[number, boolean]> = [];
    const { proc, lines } = crashingProcess((written) => {
      seen.push([written.length, proc.exit.mock.calls.length > 0]);
      throw new Error('a second failure');
    });
    proc.emit('uncaughtException', new Error('boom'));
    expect(seen).toEqual([[1, false]]);
    expect(lines).toHaveLength(1);
    expect(proc.exit).toHaveBeenCalledWith(1);
  });
});
