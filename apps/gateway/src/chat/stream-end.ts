import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';

/** How long a stream's last bytes may take to reach a client that stopped reading before its connection is closed. */
export const STREAM_END_GRACE_MS = 5_000;

/**
 * Ends a streamed response with its last bytes (`[DONE]`, or the error event). A client that
 * stopped reading would hold the response open for ever: the bytes never flush, so it never
 * finishes, and a stream cut at `max_stream_seconds` would stay open past it with no audit line.
 * Such a response is destroyed after the grace, which closes the connection; its close event then
 * writes the audit line (the failure recorded first stands, else a client abort). The connection
 * is reset (RST), not closed: a FIN would queue behind the megabytes the client left unread, and
 * the kernel would hold them, and the socket, for minutes of retries after keygate let go.
 */
export function endStream(res: Writable & { socket?: Socket | null }, last: string, graceMs = STREAM_END_GRACE_MS): void {
  if (res.destroyed) return;
  res.end(last);
  if (res.writableFinished) return;
  const timer = setTimeout(() => {
    if (res.writableFinished) return;
    res.socket?.resetAndDestroy();
    res.destroy();
  }, graceMs);
  timer.unref();
  const clear = (): void => clearTimeout(timer);
  res.once('finish', clear);
  res.once('close', clear);
}
