import 'reflect-metadata';
import { ConfigError, loadGatewayConfig } from '@keygate/config';
import { LifecycleState } from '@keygate/health';
import { JsonLogger, KEYGATE_LOGGER, SERVICE_LOG_LABELS } from '@keygate/observability';
import { createGateway } from './bootstrap';
import { reportCrashes } from './crash-report';
import { RequestLifecycle } from './http/request-lifecycle';
import { UnusedConnections } from './http/unused-connections';

/** How long the drain leaves a connection that has sent no request before closing it. */
const UNUSED_CONNECTION_GRACE_MS = 1_000;

/**
 * Prints a boot failure as one structured line and exits non-zero. Never prints secret values: a
 * configuration error says what is wrong and where, and only an unexpected error (a bug, a port in
 * use) carries its stack.
 */
function die(error: unknown): never {
  const line =
    error instanceof ConfigError
      ? { message: error.message }
      : error instanceof Error
        ? { message: `boot failed: ${error.message}`, error: error.name, stack: error.stack }
        : { message: `boot failed: ${String(error)}` };
  process.stderr.write(JSON.stringify({ severity: 'CRITICAL', time: new Date().toISOString(), ...line, ...SERVICE_LOG_LABELS }) + '\n');
  process.exit(1);
}

/**
 * Boot allocates far more than it keeps (module scanning, the OpenAPI document, the tokenizer's
 * tables, the secrets and policy files parsed): one full collection before listening hands that
 * memory back, which V8 would otherwise hold for as long as the gateway idles (it collects only
 * when something allocates). Node must run with `--expose-gc`, as the image and `npm run
 * start:prod` start it; without it nothing is done.
 */
function collectBootGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc === 'function') gc();
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadGatewayConfig(process.env);
  } catch (error) {
    die(error);
  }
  // SIGTERM or Ctrl-C while the gateway is still being built (secrets read, which waits up to 30 s
  // for a Secret Manager that does not answer; Redis connected): no request is in flight, so there
  // is nothing to drain. One line and exit 0, as a drained shutdown ends, rather than the signal's
  // default action (killed, exit 143 or 130, without a line).
  const bootLogger = new JsonLogger(config.logLevel, config.secretManager.project);
  const stopDuringBoot = (signal: NodeJS.Signals): void => {
    bootLogger.write('NOTICE', 'shutdown during start-up: no request was in flight', { signal });
    process.exit(0);
  };
  process.on('SIGTERM', stopDuringBoot);
  process.on('SIGINT', stopDuringBoot);
  const app = await createGateway(config).catch(die);
  process.off('SIGTERM', stopDuringBoot);
  process.off('SIGINT', stopDuringBoot);
  const logger = app.get<JsonLogger>(KEYGATE_LOGGER);
  for (const warning of config.warnings) logger.write('WARNING', warning);
  const lifecycle = app.get(LifecycleState);
  const requests = app.get(RequestLifecycle);
  reportCrashes(logger, process, () => requests.auditUnfinished());
  const unused = new UnusedConnections(app.getHttpServer());
  let stopping = false;
  /** Exits without waiting for the requests still unfinished, each audited first (one line each, whatever happens). */
  const exitAudited = (code: number): void => {
    requests.auditUnfinished();
    process.exit(code);
  };
  /** A second Ctrl-C came: the drain was cut short (exit 130, see stopNow). */
  let forced = false;
  /**
   * SIGTERM: readiness flips at once, the listener closes (new connections are refused), requests
   * and streams in flight may finish for the drain period; at its end the rest are ended (streams
   * with an SSE error event), every audit line is written, Redis is closed, and the process exits 0.
   */
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    lifecycle.startDrain();
    logger.write('NOTICE', 'shutdown started', { signal, drainSeconds: config.shutdownDrainSeconds, inFlight: requests.active });
    // Connections that go idle during the drain (a stream finished, a keep-alive client) would hold
    // the close open until the client hangs up; they are closed as soon as they are idle. So are
    // those that have sent no request for a second (Node's own closing leaves them open).
    const server = app.getHttpServer();
    const reaper = setInterval(() => {
      server.closeIdleConnections();
      unused.close(UNUSED_CONNECTION_GRACE_MS);
    }, 100);
    reaper.unref();
    const deadline = setTimeout(() => {
      logger.write('WARNING', 'drain period over; ending the requests still open', { inFlight: requests.active });
      void requests.endAll().then(() => server.closeAllConnections());
      // Whatever happens, the pod must not outlive its termination grace period.
      setTimeout(() => exitAudited(0), 5_000).unref();
    }, config.shutdownDrainSeconds * 1000);
    deadline.unref();
    app
      .close()
      .then(async () => {
        clearTimeout(deadline);
        await requests.endAll();
        logger.write('NOTICE', 'shutdown complete');
        process.exit(forced ? 130 : 0);
      })
      .catch((error: unknown) => {
        logger.error(error instanceof Error ? error : String(error), undefined, 'shutdown');
        exitAudited(1);
      });
  };
  /**
   * A second Ctrl-C: no more waiting for the drain. The requests still open are ended now (streams
   * with an SSE error event) and audited, one line each as ever, then the process exits 130; within
   * about a second (a client that stopped reading is cut), whatever happens.
   */
  const stopNow = (): void => {
    if (forced) return;
    forced = true;
    logger.write('WARNING', 'interrupted again; ending the requests still open now', { inFlight: requests.active });
    void requests.endAll().finally(() => process.exit(130));
    setTimeout(() => exitAudited(130), 2_000).unref();
  };
  // Installed before listening, and kept: a second SIGTERM during the drain is ignored (Kubernetes
  // sends one, then SIGKILL after the grace period); a second Ctrl-C ends the drain at once
  // (through process.exit, so the log lines still pending are written).
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => (stopping ? stopNow() : stop('SIGINT')));

  collectBootGarbage();
  try {
    await app.listen({ port: config.port, host: config.listenAddress });
  } catch (error) {
    // A signal during start-up already closes the application; only a real failure is one (a
    // port in use, say): one structured line and exit 1, not an unhandled rejection's stack.
    if (stopping) return;
    die(error);
  }
  logger.write('INFO', 'keygate listening', { address: config.listenAddress, port: config.port });
}

void main();
