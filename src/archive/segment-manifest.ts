import { formatLsn, lsnToSortableHex, parseLsn, type Lsn } from '../pg/lsn';
import { formatUnixMicros } from '../pg/pg-time';

/** Counts of what a segment holds, by kind. */
export interface ChangeCounts {
  insert: number;
  update: number;
  delete: number;
  truncate: number;
  message: number;
}

/** The manifest stored beside each segment (docs/format.md). LSNs in X/Y form, times ISO with microseconds. */
export interface SegmentManifest {
  format: number;
  kind: 'segment';
  name: string;
  systemIdentifier: string;
  database: string;
  /** Commit LSN of the first and last transaction, and the end LSN of the last one. */
  firstCommitLsn: string;
  lastCommitLsn: string;
  endLsn: string;
  firstCommitTime: string;
  lastCommitTime: string;
  transactions: number;
  changes: ChangeCounts;
  /** Schema-qualified names of the tables with changes in this segment. */
  tables: string[];
  /** Names carried by `pitr mark` markers in this segment. */
  marks: string[];
  ddl: number;
  rawBytes: number;
  storedBytes: number;
  sha256: string;
  /** The segment before this one in the chain (null for the first), so gaps and reordering show. */
  previous: { name: string; sha256: string } | null;
  createdAt: string;
  /**
   * Only on a segment `pitr compact` made from consecutive segments (format 2): how many raw segments it
   * holds and the last of them, which the segment after it names as its previous.
   */
  merged?: { segments: number; last: { name: string; sha256: string } };
  /** The source's timeline while the segment was received; absent in segments written before it was recorded. */
  timeline?: number;
  /** The writer lease's fencing token the segment was stored under (docs/format.md, "Writer lease"); absent before leases. */
  fencingToken?: number;
}

export const SEGMENTS_PREFIX = 'segments/';

/** Segments are grouped by the upper 32 bits of their first commit LSN so listings stay small. */
export function segmentBaseName(firstCommitLsn: Lsn, endLsn: Lsn): string {
  const first = lsnToSortableHex(firstCommitLsn);
  return `${SEGMENTS_PREFIX}${first.slice(0, 8)}/${first}-${lsnToSortableHex(endLsn)}`;
}

export const segmentDataName = (base: string): string => `${base}.lz4`;
export const segmentManifestName = (base: string): string => `${base}.json`;

export interface SegmentPosition {
  firstCommitLsn: Lsn;
  lastCommitLsn: Lsn;
  endLsn: Lsn;
}

export function manifestPosition(manifest: SegmentManifest): SegmentPosition {
  return { firstCommitLsn: parseLsn(manifest.firstCommitLsn), lastCommitLsn: parseLsn(manifest.lastCommitLsn), endLsn: parseLsn(manifest.endLsn) };
}

export const lsnText = formatLsn;
export const timeText = formatUnixMicros;
