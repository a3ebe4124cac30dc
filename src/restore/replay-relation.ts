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
  /** Columns of the replica identity key (flag bit 1), in column order. */
  keyIndexes: number[];
  /** No usable key (REPLICA IDENTITY FULL, or none): changed one row at a time, by ctid. */
  rowByRow: boolean;
  /** False when `--tables` leaves the table out. */
  wanted: boolean;
  /** Changes to different keys commute on the target (see TargetTable.keyOnlyUnique), so batches may reorder them. */
  reorderable: boolean;
}

export function replayRelation(message: RelationMessage, target: TargetTable | undefined, wanted: boolean): ReplayRelation {
  const keyIndexes = message.columns.map((c, i) => ((c.flags & 1) === 1 ? i : -1)).filter((i) => i >= 0);
  const rowByRow = message.replicaIdentity === 'f' || keyIndexes.length === 0;
  return {
    message,
    target,
    sql: target?.sql ?? '',
    name: `${message.namespace}.${message.name}`,
    keyIndexes,
    rowByRow,
    wanted,
    reorderable: !rowByRow && target?.keyOnlyUnique === true,
  };
}
