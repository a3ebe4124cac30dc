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
