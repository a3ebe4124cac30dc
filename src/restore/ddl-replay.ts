import type { Client } from 'pg';
import type { MissingValue } from '../archive/ddl-record';
import { PitrError } from '../errors';
import type { Logger } from '../logger';
import type { DdlAction } from '../archive/ddl-action';

/** Where a change sits in the archive: how errors and logs name it. */
export interface ChangePosition {
  commitLsn: string;
  commitTime: string;
  xid: number;
}

export function positionText(position: ChangePosition): string {
  return `committed at ${position.commitLsn} (${position.commitTime}, xid ${position.xid})`;
}

const UNDEFINED_TABLE = '42P01';
const UNDEFINED_OBJECT = '42704';

/**
 * Runs one schema change at its position, inside the replay's transaction, under the session settings
 * it ran under on the source (then back to the replay's own). Function bodies are not checked at
 * creation (as pg_dump's output does: a function may name a table created later). A savepoint keeps a
 * tolerated failure from aborting the transaction: with `--tables`, DDL on a table that is not restored;
 * a GRANT or owner change naming a role the target server does not have (roles are not in the archive).
 */
export async function replayDdl(
  client: Client,
  action: Extract<DdlAction, { kind: 'run' }>,
  position: ChangePosition,
  options: { someTables: boolean; log: Logger },
): Promise<void> {
  const names = Object.keys(action.settings);
  const saved = names.length
    ? ((await client.query<{ values: string[] }>('SELECT array_agg(current_setting(n)) AS values FROM unnest($1::text[]) n', [names])).rows[0]?.values ?? [])
    : [];
  await applySettings(client, { ...action.settings, check_function_bodies: 'off' });
  await client.query('SAVEPOINT pitr_ddl');
  let failed = false;
  try {
    const before = action.missing.length ? await columnsOf(client, action.missing) : undefined;
    const partitionConstraint = action.detachedConcurrently === undefined ? undefined : await partitionConstraintOf(client, action.detachedConcurrently);
    await client.query(action.statement);
    if (partitionConstraint) await client.query(`ALTER TABLE ${action.detachedConcurrently as string} ADD CHECK (${partitionConstraint})`);
    if (before) await fixMissingValues(client, action.missing, before);
    await client.query('RELEASE SAVEPOINT pitr_ddl');
  } catch (error) {
    const e = error as { code?: string; message?: string };
    const tolerated = (options.someTables && e.code === UNDEFINED_TABLE) || (e.code === UNDEFINED_OBJECT && /^role ".*" does not exist$/.test(e.message ?? ''));
    if (!tolerated) {
      failed = true; // the transaction is aborted: it is rolled back, settings and all
      throw new PitrError(
        'Replay',
        `cannot replay the schema change ${positionText(position)}: ${e.message ?? String(error)}; it ran ${clip(action.statement)} (${action.how})`,
        `restore to a point before it (--to lsn:${position.commitLsn} --exclusive), or report this with the statement`,
        { cause: error },
      );
    }
    await client.query('ROLLBACK TO SAVEPOINT pitr_ddl');
    await client.query('RELEASE SAVEPOINT pitr_ddl');
    if (e.code === UNDEFINED_OBJECT)
      options.log.warn(
        { event: 'ddl_role_missing', commitLsn: position.commitLsn, statement: clip(action.statement) },
        `schema change ${positionText(position)} left out: ${e.message} on the target server (roles are not archived): ${clip(action.statement)}`,
      );
  } finally {
    if (!failed) await applySettings(client, Object.fromEntries(names.map((name, i) => [name, saved[i] ?? ''])));
  }
}

async function applySettings(client: Client, settings: Record<string, string>): Promise<void> {
  const names = Object.keys(settings);
  if (names.length === 0) return;
  await client.query('SELECT set_config(n, v, true) FROM unnest($1::text[], $2::text[]) AS s(n, v)', [names, names.map((n) => settings[n] ?? '')]);
}

function clip(statement: string): string {
  const oneLine = statement.replace(/\s+/g, ' ').trim();
  return oneLine.length > 300 ? `${oneLine.slice(0, 300)}…` : oneLine;
}

/** "table\0column" of every column of the tables the record's missing values name. */
async function columnsOf(client: Client, missing: readonly MissingValue[]): Promise<Set<string>> {
  const tables = [...new Set(missing.map((m) => m.table))];
  const { rows } = await client.query<{ table: string; column: string }>(
    `SELECT t.name AS table, a.attname AS column FROM unnest($1::text[]) AS t(name)
       JOIN pg_catalog.pg_attribute a ON a.attrelid = to_regclass(t.name) AND a.attnum > 0 AND NOT a.attisdropped`,
    [tables],
  );
  return new Set(rows.map((r) => `${r.table}\u0000${r.column}`));
}

/**
 * A column just added with a default: the rows that existed read the default's value as the source
 * computed it then (now() at the source's ALTER, not at the replay's). Where the target's stored value
 * differs, the existing rows get the source's; rows inserted later carry their own values in the stream.
 */
async function fixMissingValues(client: Client, missing: readonly MissingValue[], before: Set<string>): Promise<void> {
  for (const m of missing) {
    if (m.array || before.has(`${m.table}\u0000${m.column}`)) continue;
    const { rows } = await client.query<{ type: string; value: string | null; has: boolean }>(
      `SELECT format_type(a.atttypid, a.atttypmod) AS type, a.atthasmissing AS has,
              CASE WHEN a.atthasmissing THEN (SELECT x FROM unnest(a.attmissingval::text::text[]) x LIMIT 1) END AS value
         FROM pg_catalog.pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped`,
      [m.table, m.column],
    );
    const target = rows[0];
    // both texts are printed under the archive's settings (the replay session's own)
    if (!target || target.value === m.value) continue;
    const quoted = (await client.query<{ q: string }>('SELECT quote_ident($1) AS q', [m.column])).rows[0]?.q ?? m.column;
    await client.query(`UPDATE ${m.table} SET ${quoted} = $1::${target.type}`, [m.value]);
  }
}

/**
 * DETACH PARTITION … CONCURRENTLY leaves the detached table its partition constraint as a CHECK
 * (unnamed, so named by the same rule as ALTER TABLE … ADD CHECK), unless a CHECK of its own already
 * says the same; the plain DETACH replay runs does not. Read before detaching.
 */
async function partitionConstraintOf(client: Client, partition: string): Promise<string | undefined> {
  const { rows } = await client.query<{ expr: string | null; present: boolean }>(
    `SELECT pg_catalog.pg_get_partition_constraintdef(c.oid) AS expr,
            EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'c'
                       AND pg_catalog.pg_get_constraintdef(k.oid) = 'CHECK (' || pg_catalog.pg_get_partition_constraintdef(c.oid) || ')') AS present
       FROM pg_catalog.pg_class c WHERE c.oid = $1::regclass`,
    [partition],
  );
  const row = rows[0];
  return row?.expr && !row.present ? row.expr : undefined;
}
