import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/**
 * The connections that have not begun a request, for the drain to close. Node's
 * `closeIdleConnections()` closes a kept-alive connection between requests but not one that has
 * sent nothing yet: its parser counts as busy from the moment it connects (to time out its first
 * request's headers). Clients open such connections ahead of need (connection pools, load
 * balancers' spares, browsers' preconnect; undici after an aborted response), and one of them held
 * every shutdown to its drain deadline, with nothing in flight. A connection counts as used from
 * the first byte of its first request on.
 */
export class UnusedConnections {
  /** Each unused connection and when it connected. */
  private readonly since = new Map<Socket, number>();

  constructor(
    server: Server,
    private readonly now: () => number = Date.now,
  ) {
    server.on('connection', (socket: Socket) => {
      this.since.set(socket, this.now());
      socket.once('close', () => this.since.delete(socket));
    });
    server.on('request', (request: { socket: Socket }) => {
      this.since.delete(request.socket);
    });
  }

  /** How many connections have sent no request yet. */
  get size(): number {
    return this.since.size;
  }

  /**
   * Closes the connections that have sent no request for at least `quietMs` (a client that
   * connected a moment ago may be sending its first request right now), and says how many. One
   * whose first request has begun to arrive (its headers are read only once complete) is in use:
   * left to the drain, which answers it, or ends it at the deadline.
   */
  close(quietMs: number): number {
    const before = this.now() - quietMs;
    let closed = 0;
    for (const [socket, at] of this.since) {
      if (socket.bytesRead > 0) {
        this.since.delete(socket);
        continue;
      }
      if (at > before) continue;
      this.since.delete(socket);
      socket.destroy();
      closed++;
    }
    return closed;
  }
}
