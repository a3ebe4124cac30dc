import type { Client } from 'pg';
import type { RelationMessage } from '../archive/pgoutput-decoder';
import { qualifiedName } from '../pg/sql-quote';

/** A table as replay sees it: the archived Relation message and what follows from it. */
export interface ReplayRelation {
  message: RelationMessage;
  /** Quoted schema-qualified name for SQL. */
  sql: string;
  /** schema.name, as `--tables` names tables. */
  name: string;
  /** Columns of the replica identity key (flag bit 1), in column order. */
  keyIndexes: number[];
  /** No usable key (REPLICA IDENTITY FULL, or none): changed one row at a time, by ctid. */
  rowByRow: boolean;
  /** False when `--tables` leaves the table out. */
  wanted: boolean;
  /**
   * The target's only unique index is the key's and it has no exclusion constraint: changes to
   * different keys commute, so batches may gather changes across kinds and transactions.
   */
  reorderable: boolean;
}

/**
 * @param keyOnlyUnique tables (schema.name) of the target whose only unique index is their key's
 */
export function replayRelation(message: RelationMessage, tables: Set<string> | undefined, keyOnlyUnique: ReadonlySet<string>): ReplayRelation {
  const keyIndexes = message.columns.map((c, i) => ((c.flags & 1) === 1 ? i : -1)).filter((i) => i >= 0);
  const name = `${message.namespace}.${message.name}`;
  const rowByRow = message.replicaIdentity === 'f' || keyIndexes.length === 0;
  return {
    message,
    sql: qualifiedName(message.namespace, message.name),
    name,
    keyIndexes,
    rowByRow,
    wanted: !tables || tables.has(name),
    reorderable: !rowByRow && keyOnlyUnique.has(name),
  };
}

/** Tables of the target whose unique indexes are at most one (their key's) and that have no exclusion constraint. */
export async function tablesUniqueOnlyByKey(client: Client): Promise<Set<string>> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT n.nspname || '.' || c.relname AS name FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r'
        AND (SELECT count(*) FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisunique) <= 1
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint x WHERE x.conrelid = c.oid AND x.contype = 'x')`,
  );
  return new Set(rows.map((r) => r.name));
}
