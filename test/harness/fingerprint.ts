/**
 * Table fingerprints: a cheap, exact way to say "these two databases hold the same rows".
 *
 * A table's fingerprint is its row count plus the md5 of every row's text (`t::text`, which covers
 * every column, in column order) sorted and joined by newlines. Two tables have the same fingerprint
 * exactly when they hold the same multiset of rows (duplicates count), the same columns in the same
 * order, and the same values as the server prints them. Values are printed under pinned session
 * settings, so fingerprints taken from different sessions, clients or databases compare.
 */
import { Client } from 'pg';
import { quoteIdent } from '../../src/pg/sql-quote';

export interface TableFingerprint {
  rows: number;
  /** null for an empty table (md5 of nothing) */
  md5: string | null;
}

/** Per table (schema-qualified name): its fingerprint, or null when the table does not exist. */
export type Fingerprints = Record<string, TableFingerprint | null>;

/** The settings under which values are printed (the archive's own, docs/format.md). */
const PINNED_SETTINGS: [string, string][] = [
  ['DateStyle', 'ISO, YMD'],
  ['TimeZone', 'UTC'],
  ['IntervalStyle', 'postgres'],
  ['extra_float_digits', '3'],
  ['bytea_output', 'hex'],
  ['lc_monetary', 'C'],
];

/** Schemas that never hold user data: the system's and pitr's own bookkeeping. */
const NOT_USER_SCHEMAS = ['pg_catalog', 'information_schema', 'pitr'];

/** "schema.table" or a bare "table" (public) → quoted SQL name. */
export function sqlName(table: string): string {
  const dot = table.indexOf('.');
  const [schema, name] = dot < 0 ? ['public', table] : [table.slice(0, dot), table.slice(dot + 1)];
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/** "schema.table", public spelled out. */
export function qualified(table: string): string {
  return table.includes('.') ? table : `public.${table}`;
}

/** Runs `fn` in one read-only repeatable-read transaction with the pinned settings, so all tables are read from one snapshot. */
async function inSnapshot<T>(client: Client, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    for (const [name, value] of PINNED_SETTINGS) await client.query('SELECT set_config($1, $2, true)', [name, value]);
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/** Ordinary and partitioned tables outside the system's and pitr's schemas, as "schema.table", sorted. */
export async function listUserTables(client: Client): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT n.nspname || '.' || c.relname AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
        AND n.nspname <> ALL($1::text[]) AND n.nspname NOT LIKE 'pg\\_%'
      ORDER BY (n.nspname || '.' || c.relname) COLLATE "C"`,
    [NOT_USER_SCHEMAS],
  );
  return rows.map((r) => r.name);
}

async function tableExists(client: Client, table: string): Promise<boolean> {
  const { rows } = await client.query<{ oid: string | null }>('SELECT to_regclass($1)::oid::text AS oid', [sqlName(table)]);
  return rows[0]?.oid != null;
}

async function fingerprintOne(client: Client, table: string): Promise<TableFingerprint | null> {
  if (!(await tableExists(client, table))) return null;
  const { rows } = await client.query<{ n: string; md5: string | null }>(
    `SELECT count(*)::text AS n, md5(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE "C")) AS md5 FROM ${sqlName(table)} t`,
  );
  const row = rows[0] as { n: string; md5: string | null };
  return { rows: Number(row.n), md5: row.md5 };
}

/** Fingerprints of `tables` ("schema.table" or bare names, reported schema-qualified), read in one snapshot. */
export async function fingerprint(client: Client, tables: readonly string[]): Promise<Fingerprints> {
  return inSnapshot(client, async () => {
    const out: Fingerprints = {};
    for (const table of tables) out[qualified(table)] = await fingerprintOne(client, table);
    return out;
  });
}

/** Fingerprints of `tables`, or of every user table when `tables` is omitted. */
export async function fingerprintDatabase(url: string, tables?: readonly string[]): Promise<Fingerprints> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await fingerprint(client, tables ?? (await listUserTables(client)));
  } finally {
    await client.end();
  }
}

/**
 * Every row of a table, for diagnostics: sorted "md5 <first 160 characters of the row>" lines, so two
 * versions of a table can be diffed row by row without holding megabytes of TOASTed text.
 */
export async function rowDigests(client: Client, table: string): Promise<string[] | null> {
  return inSnapshot(client, async () => {
    if (!(await tableExists(client, table))) return null;
    const { rows } = await client.query<{ line: string }>(
      `SELECT md5(t::text) || ' ' || left(t::text, 160) AS line FROM ${sqlName(table)} t ORDER BY t::text COLLATE "C"`,
    );
    return rows.map((r) => r.line).sort();
  });
}

/** Rows only in `expected` (missing) and only in `actual` (extra), as multisets of digest lines. */
export function diffRows(expected: readonly string[], actual: readonly string[]): { missing: string[]; extra: string[] } {
  const counts = new Map<string, number>();
  for (const line of expected) counts.set(line, (counts.get(line) ?? 0) + 1);
  const extra: string[] = [];
  for (const line of actual) {
    const n = counts.get(line) ?? 0;
    if (n > 0) counts.set(line, n - 1);
    else extra.push(line);
  }
  const missing: string[] = [];
  for (const [line, n] of counts) for (let i = 0; i < n; i++) missing.push(line);
  return { missing, extra };
}
