import { Agent, createServer, request, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { UnusedConnections } from './unused-connections';

describe('UnusedConnections', () => {
  let server: Server;
  let unused: UnusedConnections;
  let now = 0;
  let port = 0;
  const sockets: Socket[] = [];
  /** The server's side of each connection. */
  const accepted: Socket[] = [];

  beforeEach(async () => {
    now = 1_000;
    server = createServer((_req, res) => res.end('ok'));
    unused = new UnusedConnections(server, () => now);
    accepted.length = 0;
    server.on('connection', (socket: Socket) => accepted.push(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  /** A raw connection that sends nothing, once the server has accepted it. */
  async function silentConnection(): Promise<Socket> {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    await new Promise((resolve) => socket.once('connect', resolve));
    await waitUntil(() => unused.size >= sockets.filter((s) => !s.destroyed).length);
    return socket;
  }

  it('closes a connection that has sent no request once it has been quiet long enough, and none younger', async () => {
    const socket = await silentConnection();
    const closed = new Promise((resolve) => socket.once('close', resolve));
    expect(unused.close(1_000)).toBe(0); // connected just now
    expect(socket.destroyed).toBe(false);
    now += 1_000;
    expect(unused.close(1_000)).toBe(1);
    await closed;
    expect(unused.size).toBe(0);
  });

  it('leaves a connection that has made a request to the idle-connection rules (Node closes those itself)', async () => {
    await silentConnection();
    const agentSocket = await new Promise<Socket>((resolve, reject) => {
      const req = request({ port, host: '127.0.0.1', path: '/', agent: new Agent({ keepAlive: true }) }, (res) => {
        res.resume();
        res.on('end', () => resolve(req.socket as Socket));
      });
      req.on('error', reject);
      req.end();
    });
    sockets.push(agentSocket);
    now += 5_000;
    expect(unused.close(1_000)).toBe(1); // the silent one only
    expect(agentSocket.destroyed).toBe(false);
  });

  it('leaves a connection whose first request is arriving, however long ago it connected, and answers it once complete', async () => {
    const socket = await silentConnection();
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    socket.write('GET / HT');
    await waitUntil(() => accepted[0]?.bytesRead > 0);
    now += 5_000;
    expect(unused.close(1_000)).toBe(0);
    expect(unused.size).toBe(0);
    expect(socket.destroyed).toBe(false);
    socket.write('TP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await new Promise((resolve) => socket.once('close', resolve));
    expect(answer).toMatch(/^HTTP\/1\.1 200 [^]*ok$/);
  });

  it('forgets a connection the client closed', async () => {
    const socket = await silentConnection();
    socket.destroy();
    await waitUntil(() => unused.size === 0);
    expect(unused.size).toBe(0);
  });
});

async function waitUntil(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
}
