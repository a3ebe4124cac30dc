import net from 'node:net';

/**
 * Ports below Linux's default ephemeral range (32768-60999): a port taken from that range can be
 * handed to some client's outgoing connection between this check and the server's bind.
 */
const LOW = 20_000;
const HIGH = 32_767;
const TRIES = 20;

function tryListen(port: number, host: string): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE' || error.code === 'EACCES') resolve(undefined);
      else reject(error);
    });
    server.listen(port, host, () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : undefined));
    });
  });
}

/**
 * A TCP port free on the loopback interface at the moment of asking, preferably outside the
 * ephemeral range; whoever binds it still has to handle losing the race (see `PgCluster.startServer`).
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < TRIES; i++) {
    const port = await tryListen(LOW + Math.floor(Math.random() * (HIGH - LOW)), host);
    if (port !== undefined) return port;
  }
  const port = await tryListen(0, host);
  if (port === undefined) throw new Error(`no free TCP port on ${host}`);
  return port;
}
