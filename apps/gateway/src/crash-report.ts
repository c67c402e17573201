import type { JsonLogger } from '@keygate/observability';

/** What {@link reportCrashes} listens on and ends: the process (a stand-in in tests). */
export interface CrashingProcess {
  on(event: 'uncaughtException' | 'unhandledRejection', listener: (error: unknown) => void): unknown;
  exit(code: number): never | void;
}

/**
 * A crash (an exception no code caught, a promise rejection no code handled) is one CRITICAL line
 * in Cloud Logging's format, masked as every line is, with the request's id and trace when it
 * happened while serving one; then `beforeExit` runs (the audit lines of the requests in flight),
 * and the process exits 1, as Node would. Node's own report is a plain-text stack on stderr, which
 * Cloud Logging splits into one entry per line, none of them found by the request id. The lines
 * reach stdout: pending lines are written on exit.
 */
export function reportCrashes(logger: JsonLogger, proc: CrashingProcess = process, beforeExit: () => void = () => undefined): void {
  const crash =
    (kind: string) =>
    (error: unknown): void => {
      const fields = error instanceof Error ? { error: error.name, stack: error.stack } : {};
      const what = error instanceof Error ? error.message : String(error);
      logger.write('CRITICAL', `crashed (${kind}): ${what}`, fields);
      try {
        beforeExit();
      } catch {
        // The process is exiting on the crash already reported: nothing more to do with a second failure.
      }
      proc.exit(1);
    };
  proc.on('uncaughtException', crash('uncaught exception'));
  proc.on('unhandledRejection', crash('unhandled promise rejection'));
}
