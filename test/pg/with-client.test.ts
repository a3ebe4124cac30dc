/**
 * The resource scopes against a real PostgreSQL: a session opened for a unit of work is closed whatever
 * the work does, and a transaction is committed or rolled back with the work's own error rethrown.
 */
import { withClient, withClients, withTransaction } from '../../src/pg/with-client';
import { PgCluster } from '../harness/pg-cluster';
import { pollUntil } from '../harness/poll-until';

let cluster: PgCluster;
beforeAll(async () => {
  cluster = await PgCluster.start();
  await cluster.query('CREATE TABLE t (i int)');
});
afterAll(async () => cluster?.destroy());

const endpoint = () => ({ config: { connectionString: cluster.url('postgres') }, display: 'scope test' });
const sessions = async (name: string): Promise<number> =>
  Number((await cluster.query<{ n: string }>('SELECT count(*)::text AS n FROM pg_stat_activity WHERE application_name = $1', [name]))[0]?.n);

test('withClient and withClients close their sessions when the work fails', async () => {
  const failure = new Error('the work failed');
  await expect(
    withClient(endpoint(), { application_name: 'scope_one' }, async (client) => {
      expect(await sessions('scope_one')).toBe(1);
      await client.query('SELECT 1');
      throw failure;
    }),
  ).rejects.toBe(failure);
  await expect(
    withClients(endpoint(), { application_name: 'scope_many' }, 3, async (clients) => {
      expect(clients).toHaveLength(3);
      expect(await sessions('scope_many')).toBe(3);
      throw failure;
    }),
  ).rejects.toBe(failure);
  // a backend leaves pg_stat_activity a moment after its client has gone
  await pollUntil(
    async () => (await sessions('scope_one')) + (await sessions('scope_many')),
    (open) => open === 0,
    'the sessions to close',
  );
});

test('withTransaction commits what the work did, rolls back when it throws, and rethrows its error', async () => {
  await withClient(endpoint(), async (client) => {
    await withTransaction(client, async () => {
      await client.query('INSERT INTO t VALUES (1)');
    });
    const failure = new Error('changed my mind');
    await expect(
      withTransaction(client, 'BEGIN ISOLATION LEVEL REPEATABLE READ', async () => {
        await client.query('INSERT INTO t VALUES (2)');
        throw failure;
      }),
    ).rejects.toBe(failure);
    // the session is usable again: no transaction left open
    expect((await client.query<{ i: number }>('SELECT i FROM t ORDER BY i')).rows).toEqual([{ i: 1 }]);
  });
});
