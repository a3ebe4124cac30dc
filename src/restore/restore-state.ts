import type { Client } from 'pg';
import { PITR_SCHEMA } from '../capture/in-band-sql';

/** Progress of a restore, kept in the target so an interrupted restore resumes where it stopped. */
export interface RestoreState {
  backupId: string;
  target: string;
  phase: 'load' | 'replay' | 'done';
  lastCommitLsn: string | null;
  lastCommitTime: string | null;
  lastXid: string | null;
  transactions: number;
  changes: number;
}

const TABLE = `${PITR_SCHEMA}.restore_state`;
/**
 * Per source table, the last commit applied to it. Parallel replay commits each connection's share of
 * a segment on its own, so after an interruption some tables can be ahead of restore_state.
 */
const TABLES_TABLE = `${PITR_SCHEMA}.restore_tables`;
/**
 * Per source relation id, the target table its changes go to (by OID, so that it follows renames the
 * replayed schema changes made: a Relation message may still carry a table's old schema name).
 */
const ROUTES_TABLE = `${PITR_SCHEMA}.restore_relations`;
/**
 * Per part of a table split among the connections (SegmentReplay), the last commit applied to it, and
 * how many parts the table is split into: a resumed replay keeps that number, whatever its --jobs.
 */
const PARTS_TABLE = `${PITR_SCHEMA}.restore_parts`;
/**
 * Values an update left unchanged (TOASTed, not sent) of rows whose key it moved to another part of a
 * split table: read back by the old part's connection as it deleted the old row, in the same
 * transaction, for the new part's insert. Kept until the restore's progress passes the update.
 */
const MOVES_TABLE = `${PITR_SCHEMA}.restore_moves`;
export const RESTORE_MOVES = MOVES_TABLE;
const MOVES_DDL = `CREATE TABLE IF NOT EXISTS ${MOVES_TABLE} (relation_id oid, commit_lsn pg_lsn, seq int, vals text[] NOT NULL, PRIMARY KEY (relation_id, commit_lsn, seq))`;
const PARTS_DDL = `CREATE TABLE IF NOT EXISTS ${PARTS_TABLE} (relation_id oid, part int, parts int NOT NULL, last_commit_lsn pg_lsn NOT NULL, PRIMARY KEY (relation_id, part))`;

/** The last transaction applied: its commit LSN (X/Y), commit time (ISO, microseconds) and xid. */
export interface AppliedCommit {
  commitLsn: string;
  commitTime: string;
  xid: number;
}

export async function createStateTable(client: Client, backupId: string, target: string): Promise<void> {
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${PITR_SCHEMA}`);
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${TABLE} (id int PRIMARY KEY DEFAULT 1 CHECK (id = 1), backup_id text NOT NULL, target text NOT NULL, phase text NOT NULL,
       last_commit_lsn pg_lsn, last_commit_time text, last_xid bigint, transactions bigint NOT NULL DEFAULT 0, changes bigint NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now())`,
  );
  await client.query(`CREATE TABLE IF NOT EXISTS ${TABLES_TABLE} (relation_id oid PRIMARY KEY, last_commit_lsn pg_lsn NOT NULL)`);
  await client.query(`CREATE TABLE IF NOT EXISTS ${ROUTES_TABLE} (relation_id oid PRIMARY KEY, target_oid oid NOT NULL)`);
  await client.query(PARTS_DDL);
  await client.query(MOVES_DDL);
  await client.query(`INSERT INTO ${TABLE} (backup_id, target, phase) VALUES ($1, $2, 'load') ON CONFLICT (id) DO NOTHING`, [backupId, target]);
}

/** Source relation id → last commit LSN applied to that table (X/Y). */
export async function readTableProgress(client: Client): Promise<Map<number, string>> {
  const exists = await client.query(`SELECT to_regclass('${TABLES_TABLE}') IS NOT NULL AS ok`);
  if (!(exists.rows[0] as { ok: boolean }).ok) return new Map();
  const { rows } = await client.query<{ id: string; lsn: string }>(`SELECT relation_id::text AS id, last_commit_lsn::text AS lsn FROM ${TABLES_TABLE}`);
  return new Map(rows.map((r) => [Number(r.id), r.lsn]));
}

/** Called inside the transaction that applied these tables' changes up to `commitLsn`. */
export async function recordTableProgress(client: Client, relationIds: number[], commitLsn: string): Promise<void> {
  await client.query(
    `INSERT INTO ${TABLES_TABLE} (relation_id, last_commit_lsn) SELECT unnest($1::oid[]), $2::pg_lsn
       ON CONFLICT (relation_id) DO UPDATE SET last_commit_lsn = excluded.last_commit_lsn`,
    [relationIds, commitLsn],
  );
}

/** How a table was split, and the last commit applied to each of its parts (X/Y). */
export interface PartProgress {
  parts: number;
  lastCommitLsn: Map<number, string>;
}

/** Source relation id → its parts' progress (the table is made for restores begun before tables were split). */
export async function readPartProgress(client: Client): Promise<Map<number, PartProgress>> {
  await client.query(PARTS_DDL);
  await client.query(MOVES_DDL);
  const { rows } = await client.query<{ id: string; part: number; parts: number; lsn: string }>(
    `SELECT relation_id::text AS id, part, parts, last_commit_lsn::text AS lsn FROM ${PARTS_TABLE}`,
  );
  const progress = new Map<number, PartProgress>();
  for (const r of rows) {
    const id = Number(r.id);
    const entry = progress.get(id) ?? { parts: r.parts, lastCommitLsn: new Map<number, string>() };
    entry.lastCommitLsn.set(r.part, r.lsn);
    progress.set(id, entry);
  }
  return progress;
}

/** A part of a split table, as a connection records its progress. */
export interface TablePart {
  relationId: number;
  part: number;
  parts: number;
}

/** Called inside the transaction that applied these parts' changes up to `commitLsn` (each part is one connection's). */
export async function recordPartProgress(client: Client, parts: readonly TablePart[], commitLsn: string): Promise<void> {
  await client.query(
    `INSERT INTO ${PARTS_TABLE} (relation_id, part, parts, last_commit_lsn) SELECT unnest($1::oid[]), unnest($2::int[]), unnest($3::int[]), $4::pg_lsn
       ON CONFLICT (relation_id, part) DO UPDATE SET last_commit_lsn = excluded.last_commit_lsn`,
    [parts.map((p) => p.relationId), parts.map((p) => p.part), parts.map((p) => p.parts), commitLsn],
  );
}

/**
 * Deletes the old row of a key moved between parts (`deleteSql`: a DELETE … RETURNING the unchanged
 * columns as c0, c1, …, its key bound as $1…$n) and keeps what it returned, in one statement (`seq`
 * numbers the transaction's moves). Undefined when there was no such row.
 */
export async function deleteMovedRow(
  client: Client,
  deleteSql: string,
  keys: readonly string[],
  columns: number,
  move: { relationId: number; commitLsn: string; seq: number },
): Promise<(string | null)[] | undefined> {
  const n = keys.length;
  const vals = Array.from({ length: columns }, (_, u) => `c${u}`).join(', ');
  const { rows } = await client.query<Record<string, string | null>>(
    `WITH moved AS (${deleteSql}),
          kept AS (INSERT INTO ${MOVES_TABLE} (relation_id, commit_lsn, seq, vals) SELECT $${n + 1}, $${n + 2}, $${n + 3}, ARRAY[${vals}]::text[] FROM moved)
     SELECT * FROM moved`,
    [...keys, move.relationId, move.commitLsn, move.seq],
  );
  const row = rows[0];
  return row ? Array.from({ length: columns }, (_, u) => row[`c${u}`] ?? null) : undefined;
}

/** The values recorded for a move, or undefined when its update found no row. */
export async function readMovedValues(client: Client, relationId: number, commitLsn: string, seq: number): Promise<(string | null)[] | undefined> {
  const { rows } = await client.query<{ vals: (string | null)[] }>(`SELECT vals FROM ${MOVES_TABLE} WHERE relation_id = $1 AND commit_lsn = $2 AND seq = $3`, [
    relationId,
    commitLsn,
    seq,
  ]);
  return rows[0]?.vals;
}

/** Once the restore's progress is past `commitLsn`: its moves are never replayed again. */
export async function forgetMovedValues(client: Client, commitLsn: string): Promise<void> {
  await client.query(`DELETE FROM ${MOVES_TABLE} WHERE commit_lsn <= $1`, [commitLsn]);
}

/** Source relation id → target table OID, as recorded (the table is made for restores begun before routes were recorded). */
export async function prepareRoutes(client: Client): Promise<Map<number, number>> {
  await client.query(`CREATE TABLE IF NOT EXISTS ${ROUTES_TABLE} (relation_id oid PRIMARY KEY, target_oid oid NOT NULL)`);
  const { rows } = await client.query<{ id: string; oid: string }>(`SELECT relation_id::text AS id, target_oid::text AS oid FROM ${ROUTES_TABLE}`);
  return new Map(rows.map((r) => [Number(r.id), Number(r.oid)]));
}

/** Records routes, inside the transaction that first applied changes through them (or before replay starts). */
export async function recordRoutes(client: Client, routes: readonly (readonly [number, number])[]): Promise<void> {
  if (routes.length === 0) return;
  await client.query(
    `INSERT INTO ${ROUTES_TABLE} (relation_id, target_oid) SELECT * FROM unnest($1::oid[], $2::oid[])
       ON CONFLICT (relation_id) DO UPDATE SET target_oid = excluded.target_oid`,
    [routes.map((r) => r[0]), routes.map((r) => r[1])],
  );
}

export async function readState(client: Client): Promise<RestoreState | null> {
  const exists = await client.query(`SELECT to_regclass('${TABLE}') IS NOT NULL AS ok`);
  if (!(exists.rows[0] as { ok: boolean }).ok) return null;
  const { rows } = await client.query<{
    backup_id: string;
    target: string;
    phase: RestoreState['phase'];
    lsn: string | null;
    time: string | null;
    xid: string | null;
    transactions: string;
    changes: string;
  }>(
    `SELECT backup_id, target, phase, last_commit_lsn::text AS lsn, last_commit_time AS time, last_xid::text AS xid, transactions::text, changes::text FROM ${TABLE}`,
  );
  const row = rows[0];
  if (!row) return null;
  return {
    backupId: row.backup_id,
    target: row.target,
    phase: row.phase,
    lastCommitLsn: row.lsn,
    lastCommitTime: row.time,
    lastXid: row.xid,
    transactions: Number(row.transactions),
    changes: Number(row.changes),
  };
}

export async function setPhase(client: Client, phase: RestoreState['phase']): Promise<void> {
  await client.query(`UPDATE ${TABLE} SET phase = $1, updated_at = now()`, [phase]);
}

/** Called inside the transaction that applied the changes, so state and data commit together. */
export async function recordProgress(client: Client, last: AppliedCommit, transactions: number, changes: number): Promise<void> {
  await client.query(
    `UPDATE ${TABLE} SET last_commit_lsn = $1::pg_lsn, last_commit_time = $2, last_xid = $3, transactions = transactions + $4, changes = changes + $5, updated_at = now()`,
    [last.commitLsn, last.commitTime, last.xid, transactions, changes],
  );
}
