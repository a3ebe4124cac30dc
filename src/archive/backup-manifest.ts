/** A sequence as the backup read it. */
export interface SequenceValue {
  schema: string;
  name: string;
  /** null when the sequence was never used (restore: setval(start, false)). */
  lastValue: string | null;
}

/**
 * How a stored part is compressed: 'lz4' (LZ4 frames, `lz4 -d`) or 'brotli' (one Brotli stream,
 * `brotli -d`). Absent means 'lz4': every part of a format-1 backup, and the schema parts of later ones.
 */
export type PartCodec = 'lz4' | 'brotli';

/** One stored object of a backup and what it holds. */
export interface StoredPart {
  name: string;
  codec?: PartCodec;
  rawBytes: number;
  storedBytes: number;
  sha256: string;
}

export interface BackupTable {
  oid: number;
  schema: string;
  name: string;
  columns: string[];
  rows: number;
  rawBytes: number;
  chunks: (StoredPart & { rows: number })[];
}

/**
 * The manifest, written last: a backup without one is incomplete and never used (docs/format.md).
 * `alignedLsn` is the consistent point of the backup's exported snapshot: the backup holds exactly the
 * transactions whose commit LSN is below it, replay applies those at or after it.
 */
export interface BackupManifest {
  format: number;
  kind: 'backup';
  id: string;
  systemIdentifier: string;
  database: string;
  serverVersion: string;
  serverVersionNum: number;
  alignedLsn: string;
  startTime: string;
  endTime: string;
  /** COPY text format under these settings, like the archive's values. */
  sessionSettings: string;
  schema: { preData: StoredPart; postData: StoredPart; dump: StoredPart };
  tables: BackupTable[];
  sequences: SequenceValue[];
  totals: { tables: number; chunks: number; rows: number; rawBytes: number; storedBytes: number };
}

/**
 * Format of backup manifests this version writes: 2 records a codec per part (table chunks in Brotli);
 * format 1 (all parts LZ4) is read as it is.
 */
export const BACKUP_FORMAT = 2;

export const BACKUPS_PREFIX = 'backups/';
export const MANIFEST_FILE = 'manifest.json';
export const STARTED_FILE = 'started.json';

/** Backup ids sort by aligned LSN, then time: `<LSN 16 hex>-<UTC yyyymmddThhmmssZ>`. */
export function backupId(alignedLsnHex: string, start: Date): string {
  return `${alignedLsnHex}-${start
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}`;
}

export const backupPrefix = (id: string): string => `${BACKUPS_PREFIX}${id}/`;
