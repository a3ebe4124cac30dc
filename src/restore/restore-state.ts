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
