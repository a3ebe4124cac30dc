import type { RelationMessage } from '../archive/pgoutput-decoder';
import type { TargetTable } from './target-catalog';

/** A table as replay sees it: the archived Relation message, and the target table its changes go to. */
export interface ReplayRelation {
  message: RelationMessage;
  /** The target table (routed by relation id); undefined while the target has none, e.g. before CREATE TABLE AS's record. */
  target: TargetTable | undefined;
  /** Quoted schema-qualified name of the target table, for SQL ('' without a target). */
  sql: string;
  /** schema.name as archived, for messages. */
  name: string;
  /**
   * Columns rows are matched on: the replica identity key's (flag bit 1), in column order; with
   * REPLICA IDENTITY FULL, the target's primary key, whose values the full old row carries.
   */
  keyIndexes: number[];
  /** No usable key (REPLICA IDENTITY FULL without a primary key on the target, or none): changed one row at a time, by ctid. */
  rowByRow: boolean;
  /** False when `--tables` leaves the table out. */
  wanted: boolean;
  /** Changes to different keys commute on the target (see TargetTable.keysCommute), so batches may reorder them. */
  reorderable: boolean;
  /**
   * Reorderable, and every key column of a fixed-width type (integers, oid, uuid, bool, dates and
   * times: never TOASTed, so every change carries its key): with several lanes, the table's keys are
   * shared out among them by a hash of the key (see SegmentReplay), each lane applying its part.
   */
  splittable: boolean;
}

/** The fixed-width types among the exact ones (target-catalog.ts), by OID: a split table's key columns are of these. */
export const FIXED_WIDTH_TYPE_NAMES = new Map([
  [21, 'int2'],
  [23, 'int4'],
  [20, 'int8'],
  [26, 'oid'],
  [16, 'bool'],
  [2950, 'uuid'],
  [1082, 'date'],
  [1083, 'time'],
  [1114, 'timestamp'],
  [1184, 'timestamptz'],
]);

export function replayRelation(message: RelationMessage, target: TargetTable | undefined, wanted: boolean): ReplayRelation {
  const full = message.replicaIdentity === 'f';
  const primaryKey = full ? (target?.primaryKey ?? []).map((name) => message.columns.findIndex((c) => c.name === name)) : [];
  const byPrimaryKey = primaryKey.length > 0 && primaryKey.every((i) => i >= 0);
  const keyIndexes = byPrimaryKey ? primaryKey.sort((a, b) => a - b) : message.columns.map((c, i) => ((c.flags & 1) === 1 ? i : -1)).filter((i) => i >= 0);
  const rowByRow = (full && !byPrimaryKey) || keyIndexes.length === 0;
  const reorderable = !rowByRow && target?.keysCommute === true;
  return {
    message,
    target,
    sql: target?.sql ?? '',
    name: `${message.namespace}.${message.name}`,
    keyIndexes,
    rowByRow,
    wanted,
    reorderable,
    splittable: reorderable && keyIndexes.every((i) => FIXED_WIDTH_TYPE_NAMES.has(message.columns[i]?.typeOid ?? 0)),
  };
}
