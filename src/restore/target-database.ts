import type { Client } from 'pg';
import { PitrError } from '../errors';
import { DECODING_SESSION_OPTIONS } from '../pg/session-settings';
import { quoteIdent } from '../pg/sql-quote';
import { withClient, type PgEndpoint } from '../pg/with-client';
import { readState } from './restore-state';

/**
 * What the target database holds, and so what a restore does with it:
 * - missing: create it;
 * - empty (no restore state, no relations): restore into it;
 * - resumable: the same restore (same backup and target) stopped after loading the backup: continue it;
 * - interrupted-load: the same restore stopped while loading the backup: drop the database and start again;
 * - other-restore: a restore to another point: replace it only with --force;
 * - holds-data: anything else: replace it only with --force, and never for --tables.
 */
export type TargetDatabaseState = 'missing' | 'empty' | 'resumable' | 'interrupted-load' | 'other-restore' | 'holds-data';

/** The restore about to run, as far as the choice of what to do with its target database goes. */
export interface TargetDatabaseRestore {
  backupId: string;
  /** The restore's target as its state table records it (describeTarget, plus " exclusive"). */
  targetKey: string;
  /** --tables: restore only some tables. */
  someTables: boolean;
  force: boolean;
}

/**
 * Leaves `database` ready for the restore: created, kept for the restore to continue in, or replaced;
 * or refuses to replace what it holds (see TargetDatabaseState). `admin` is a session of another
 * database of the same server, `endpoint` where the target database's own sessions connect.
 */
export async function prepareTargetDatabase(admin: Client, endpoint: PgEndpoint, database: string, restore: TargetDatabaseRestore): Promise<void> {
  const state = await targetDatabaseState(admin, endpoint, database, restore);
  switch (state) {
    case 'missing':
      await createDatabase(admin, database);
      return;
    case 'empty':
    case 'resumable':
      return;
    case 'interrupted-load':
      await replaceDatabase(admin, database);
      return;
    case 'other-restore':
    case 'holds-data':
      refuseToReplace(state, database, restore);
      await replaceDatabase(admin, database);
      return;
    default: {
      const never: never = state;
      throw new PitrError('Internal', `unknown target database state ${String(never)}`);
    }
  }
}

async function targetDatabaseState(admin: Client, endpoint: PgEndpoint, database: string, restore: TargetDatabaseRestore): Promise<TargetDatabaseState> {
  if (!(await databaseExists(admin, database))) return 'missing';
  return withClient(endpoint, { options: DECODING_SESSION_OPTIONS }, async (client) => {
    const state = await readState(client);
    if (!state) return (await isEmpty(client)) ? 'empty' : 'holds-data';
    if (state.backupId !== restore.backupId || state.target !== restore.targetKey) return 'other-restore';
    return state.phase === 'load' ? 'interrupted-load' : 'resumable';
  });
}

function refuseToReplace(state: 'other-restore' | 'holds-data', database: string, restore: TargetDatabaseRestore): void {
  if (state === 'holds-data' && restore.someTables) {
    // --force replaces the whole database: never a live one for the sake of some of its tables
    throw new PitrError(
      'Usage',
      `target database "${database}" is not empty: --tables restores into a database of its own, and --force would replace all of "${database}"`,
      'restore the tables into a new side database and copy the rows back (docs/runbooks/recover-deleted-rows.md)',
    );
  }
  if (!restore.force) {
    throw new PitrError(
      'Repository',
      `target database "${database}" is not empty${state === 'other-restore' ? ' (it holds a restore to another point)' : ''}`,
      'restore into a new database name, or add --force to replace this database',
    );
  }
}

async function databaseExists(admin: Client, database: string): Promise<boolean> {
  return (await admin.query('SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1', [database])).rowCount === 1;
}

async function isEmpty(client: Client): Promise<boolean> {
  const { rows } = await client.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'`,
  );
  return rows[0]?.n === '0';
}

async function createDatabase(admin: Client, database: string): Promise<void> {
  await admin.query(`CREATE DATABASE ${quoteIdent(database)} TEMPLATE template0 ENCODING 'UTF8'`);
}

async function replaceDatabase(admin: Client, database: string): Promise<void> {
  await admin.query(`DROP DATABASE ${quoteIdent(database)} WITH (FORCE)`);
  await createDatabase(admin, database);
}
