import { appendFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PgCluster } from './harness/pg-cluster';
test('cluster starts with logical wal', async () => {
  const c = await PgCluster.start({ password: 'se cret' });
  try {
    const rows = await c.query<{ wal_level: string }>('show wal_level');
    expect(rows[0]?.wal_level).toBe('logical');
    await c.restart();
    expect((await c.query('select 1 as x'))[0]).toEqual({ x: 1 });
  } finally {
    await c.destroy();
  }
});

test('a cluster whose port another process took moves to a free one when it starts', async () => {
  const c = await PgCluster.start();
  const squatter = net.createServer();
  try {
    await c.stopServer();
    const taken = c.port;
    await new Promise<void>((resolve) => squatter.listen(taken, '127.0.0.1', resolve));
    await c.startServer();
    expect(c.port).not.toBe(taken);
    expect((await c.query('select 1 as x'))[0]).toEqual({ x: 1 });
  } finally {
    squatter.close();
    await c.destroy();
  }
});

test('a cluster that cannot start says why, from the server log', async () => {
  const c = await PgCluster.start();
  try {
    await c.stopServer();
    appendFileSync(path.join(c.dataDir, 'postgresql.conf'), 'shared_buffers = nonsense\n');
    await expect(c.startServer()).rejects.toThrow(/server log:[\s\S]*shared_buffers/);
  } finally {
    await c.destroy();
  }
});
