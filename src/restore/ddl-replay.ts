import type { Client } from 'pg';
import { PitrError } from '../errors';
import { capturedStatement } from './sql-statements';

/**
 * Runs one captured DDL statement at its position, with the search_path it ran under. For a string
 * of several statements only the one that fired the capture trigger runs. With `--tables`, DDL on a
 * table that is not restored fails with "undefined table": it is skipped, inside a savepoint.
 */
export async function replayDdl(client: Client, content: Buffer, someTables: boolean): Promise<void> {
  const ddl = JSON.parse(content.toString('utf8')) as { query: string; index?: number; search_path: string };
  const statement = capturedStatement(ddl.query, ddl.index ?? 0);
  await client.query("SELECT set_config('search_path', $1, true)", [ddl.search_path]);
  if (someTables) await client.query('SAVEPOINT pitr_ddl');
  try {
    await client.query(statement);
    if (someTables) await client.query('RELEASE SAVEPOINT pitr_ddl');
  } catch (error) {
    if (someTables && (error as { code?: string }).code === '42P01') {
      await client.query('ROLLBACK TO SAVEPOINT pitr_ddl');
      return;
    }
    throw new PitrError('Internal', `replaying DDL failed: ${(error as Error).message}: ${statement.slice(0, 200)}`, undefined, { cause: error });
  } finally {
    await client.query("SELECT set_config('search_path', 'pg_catalog, public', true)").catch(() => undefined);
  }
}
