import type { Client } from 'pg';
import type { Logger } from '../logger';
import type { HeartbeatSequences } from './replay-input';

/** Column types whose values a sequence hands out directly (a text default like 'A-' || nextval() is not one). */
const NUMERIC_TYPES = `('pg_catalog.int2'::regtype, 'pg_catalog.int4'::regtype, 'pg_catalog.int8'::regtype, 'pg_catalog.numeric'::regtype)`;

/**
 * Sequence values are not transactional and not decoded: after a restore no sequence may hand out a
 * value the restored rows already hold, or one the source had handed out by the target instant. The
 * heartbeats carry every sequence's value every --heartbeat: the last one before the target (at most one
 * interval old) and the first one after it (never below the source's value at the target, unless a
 * sequence was set back in between). Each sequence is set to the furthest of those and of the values
 * its columns hold: owned (serial, identity) and those using it in a DEFAULT nextval(...) without being
 * owned. "Furthest" follows the increment: the largest for ascending sequences, the smallest for
 * descending ones. Gaps are allowed, as they are in PostgreSQL; repeats never.
 */
export async function setSequences(
  client: Client,
  heartbeats: { before: HeartbeatSequences | undefined; after: HeartbeatSequences | undefined },
  tables: Set<string> | undefined,
  log: Logger,
): Promise<void> {
  const fromHeartbeats = new Map<string, bigint[]>();
  for (const beat of [heartbeats.before, heartbeats.after])
    for (const [schema, name, value] of beat ?? []) {
      if (value === null) continue;
      const key = `${schema}\u0000${name}`;
      fromHeartbeats.set(key, [...(fromHeartbeats.get(key) ?? []), BigInt(value)]);
    }
  const { rows: sequences } = await client.query<{ oid: string; schema: string; name: string; sql: string; increment: string; min: string; max: string }>(
    `SELECT c.oid::text AS oid, n.nspname AS schema, c.relname AS name, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS sql,
            s.seqincrement::text AS increment, s.seqmin::text AS min, s.seqmax::text AS max
       FROM pg_catalog.pg_sequence s JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname <> 'pitr'`,
  );
  const users = await sequenceColumns(client);
  for (const seq of sequences) {
    const ascending = BigInt(seq.increment) > 0n;
    const furthest = (values: readonly bigint[]): bigint | undefined =>
      values.reduce<bigint | undefined>((a, b) => (a === undefined ? b : ascending ? (b > a ? b : a) : b < a ? b : a), undefined);
    const heartbeat = furthest(fromHeartbeats.get(`${seq.schema}\u0000${seq.name}`) ?? []);
    const held: bigint[] = [];
    for (const column of users.get(seq.oid) ?? []) {
      if (tables && !tables.has(`${column.schema}.${column.table}`)) continue;
      const extreme = await columnExtreme(client, column, ascending);
      if (extreme !== undefined) held.push(extreme);
    }
    const current = await currentValue(client, seq.sql);
    const wanted = furthest([...(heartbeat === undefined ? [] : [heartbeat]), ...held]);
    if (wanted === undefined) continue;
    // a heartbeat says where the source was; rows only say what it must be past
    if (heartbeat === undefined && current !== undefined && furthest([current, wanted]) === current) continue;
    const bounded = wanted > BigInt(seq.max) ? BigInt(seq.max) : wanted < BigInt(seq.min) ? BigInt(seq.min) : wanted;
    if (bounded !== wanted)
      log.warn({ event: 'sequence_bound', sequence: seq.sql }, `sequence ${seq.sql} would need ${wanted}, beyond its bounds: set to ${bounded}`);
    await client.query('SELECT pg_catalog.setval($1::regclass, $2::bigint, true)', [seq.sql, bounded.toString()]);
  }
}

interface SequenceColumn {
  schema: string;
  table: string;
  sql: string;
  column: string;
}

/** Sequence OID → the numeric columns it feeds: owned by (serial, identity), or named in a column's DEFAULT. */
async function sequenceColumns(client: Client): Promise<Map<string, SequenceColumn[]>> {
  const { rows } = await client.query<{ seq: string; schema: string; table: string; sql: string; column: string }>(
    `WITH uses AS (
       SELECT d.objid AS seq, d.refobjid AS rel, d.refobjsubid AS attnum
         FROM pg_catalog.pg_depend d
        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
       UNION
       SELECT d.refobjid, ad.adrelid, ad.adnum
         FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attrdef ad ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.objid = ad.oid
        WHERE d.refclassid = 'pg_catalog.pg_class'::regclass)
     SELECT u.seq::text AS seq, n.nspname AS schema, t.relname AS table, quote_ident(n.nspname) || '.' || quote_ident(t.relname) AS sql,
            quote_ident(a.attname) AS column
       FROM uses u JOIN pg_catalog.pg_class s ON s.oid = u.seq AND s.relkind = 'S'
       JOIN pg_catalog.pg_class t ON t.oid = u.rel AND t.relkind IN ('r', 'p') JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
       JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = u.attnum AND NOT a.attisdropped
      WHERE a.atttypid IN ${NUMERIC_TYPES}`,
  );
  const byOid = new Map<string, SequenceColumn[]>();
  for (const row of rows) byOid.set(row.seq, [...(byOid.get(row.seq) ?? []), row]);
  return byOid;
}

async function columnExtreme(client: Client, column: SequenceColumn, ascending: boolean): Promise<bigint | undefined> {
  const { rows } = await client.query<{ v: string | null }>(
    `SELECT trunc(${ascending ? 'max' : 'min'}(${column.column}))::numeric(1000, 0)::text AS v FROM ${column.sql}`,
  );
  const value = rows[0]?.v;
  return value === null || value === undefined ? undefined : BigInt(value);
}

/** The last value the sequence handed out, or undefined when it never did. */
async function currentValue(client: Client, sql: string): Promise<bigint | undefined> {
  const { rows } = await client.query<{ v: string; called: boolean }>(`SELECT last_value::text AS v, is_called AS called FROM ${sql}`);
  const row = rows[0];
  return row?.called ? BigInt(row.v) : undefined;
}
