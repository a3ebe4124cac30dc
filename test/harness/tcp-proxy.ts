import net from 'node:net';

/**
 * A loopback TCP proxy in front of a server. `holdNewConnections` makes it accept new connections and
 * never answer them (a source that stops taking sessions) while the established ones keep flowing.
 */
export class TcpProxy {
  holdNewConnections = false;
  private readonly sockets = new Set<net.Socket>();
  private readonly held = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<TcpProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port);
    server.on('connection', (client) => proxy.accept(client, targetPort));
    return proxy;
  }

  private accept(client: net.Socket, targetPort: number): void {
    this.track(client);
    if (this.holdNewConnections) {
      this.held.add(client); // accepted, never answered
      return;
    }
    const upstream = net.connect(targetPort, '127.0.0.1');
    this.track(upstream);
    client.pipe(upstream).pipe(client);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
  }

  /** Stops holding: connections held so far are cut, new ones flow again. */
  release(): void {
    this.holdNewConnections = false;
    for (const socket of this.held) socket.destroy();
    this.held.clear();
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
