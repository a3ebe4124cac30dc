import type { Repository } from '../archive/repository';
import { segmentDataName, type SegmentManifest } from '../archive/segment-manifest';
import { readSegmentRecords } from '../archive/segment-reader';
import type { BackupManifest } from '../backup/backup-manifest';
import { listBackups } from '../backup/catalog';
import { formatLsn, lsnFromSortableHex, parseLsn, type Lsn } from '../capture/lsn';
import { formatUnixMicros, parseIsoMicros } from '../capture/pg-time';
import { decodePgoutput } from '../capture/pgoutput-decoder';

/**
 * The recoverable window, defined once for `pitr list`, `pitr status` and the restore planner:
 * from the state the oldest base backup holds to the newest archived commit.
 *
 * Terminology: a backup's "bound" is the newest commit it holds. A backup holds exactly the commits below
 * its aligned LSN, so its bound is found in the manifests of the segments wholly before that LSN and by
 * decoding the one segment that straddles it; it is capped at the backup's end time (the backup cannot
 * hold a commit made after it ended). Restoring to a time at or after a backup's bound can start from it.
 */

/** A commit position for output: LSN in X/Y form and time (ISO, UTC, microseconds). */
export interface Point {
  lsn: string;
  time: string;
}

/** A commit position as numbers: LSN and microseconds since the Unix epoch. */
export interface ExactPoint {
  lsn: Lsn;
  time: bigint;
}

export interface RecoverableWindow {
  /** The oldest backup's bound; null without a complete backup. */
  earliest: ExactPoint | null;
  /** The newest archived commit (the earliest point when nothing is archived yet); null when both are unknown. */
  latest: ExactPoint | null;
  /** The newest archived commit; null when no segment is archived. */
  newestCommit: ExactPoint | null;
}

/**
 * Bounds already computed, by backup id. Decoding the straddling segment is the costly part; a bound
 * is only remembered once the archive has passed the backup's aligned LSN, after which it cannot change.
 */
export type BackupBoundCache = Map<string, ExactPoint>;

export function toPoint(p: ExactPoint): Point {
  return { lsn: formatLsn(p.lsn), time: formatUnixMicros(p.time) };
}

/** "time (lsn)" for messages. */
export function pointText(p: ExactPoint): string {
  return `${formatUnixMicros(p.time)} (${formatLsn(p.lsn)})`;
}

/** The newest commit inside `backup`, from `segments` (manifests in LSN order; only those starting before its aligned LSN matter). */
export async function backupBound(repo: Repository, backup: BackupManifest, segments: readonly SegmentManifest[]): Promise<ExactPoint> {
  const aligned = parseLsn(backup.alignedLsn);
  let newest: bigint | undefined;
  for (const s of segments) {
    if (parseLsn(s.firstCommitLsn) >= aligned) break;
    if (parseLsn(s.lastCommitLsn) < aligned) {
      const last = parseIsoMicros(s.lastCommitTime);
      if (newest === undefined || last > newest) newest = last;
      continue;
    }
    for await (const record of readSegmentRecords(repo.storage.readStream(segmentDataName(s.name)), s.name, s.sha256)) {
      if (record[0] !== 0x42) continue; // Begin: commit LSN and time
      const message = decodePgoutput(record);
      if (message.tag === 'B' && message.finalLsn < aligned && (newest === undefined || message.commitTime > newest)) newest = message.commitTime;
    }
  }
  const end = parseIsoMicros(backup.endTime);
  return { lsn: aligned, time: newest !== undefined && newest < end ? newest : end };
}

/** First commit LSN of a segment, from its manifest's name `segments/<HI>/<FIRST>-<END>.json`. */
function firstLsnOfName(name: string): Lsn | undefined {
  const match = /\/([0-9A-F]{16})-[0-9A-F]{16}\.json$/.exec(name);
  return match?.[1] === undefined ? undefined : lsnFromSortableHex(match[1]);
}

export interface WindowSources {
  /** Complete backups; listed when not given. */
  backups?: readonly BackupManifest[];
  /** Every segment manifest in LSN order, when the caller has read them anyway; otherwise only those needed are read. */
  segments?: readonly SegmentManifest[];
  cache?: BackupBoundCache;
}

/** The recoverable window of a repository (see the top of this file). */
export async function recoverableWindow(repo: Repository, sources: WindowSources = {}): Promise<RecoverableWindow> {
  const backups = sources.backups ?? (await listBackups(repo));
  let oldest: BackupManifest | undefined;
  for (const b of backups) if (!oldest || parseLsn(b.alignedLsn) < parseLsn(oldest.alignedLsn)) oldest = b;

  let segments: readonly SegmentManifest[];
  let newestSegment: SegmentManifest | undefined;
  if (sources.segments) {
    segments = sources.segments;
    newestSegment = segments[segments.length - 1];
  } else {
    // Only the segments that can hold commits below the oldest backup's aligned LSN, and the newest.
    const names = await repo.segmentManifestNames();
    const aligned = oldest ? parseLsn(oldest.alignedLsn) : undefined;
    const cached = oldest ? sources.cache?.get(oldest.id) : undefined;
    const needed = aligned === undefined || cached ? [] : names.filter((n) => (firstLsnOfName(n) ?? 0n) < aligned);
    segments = await Promise.all(needed.map((n) => repo.readSegmentManifest(n)));
    const newestName = names[names.length - 1];
    newestSegment =
      newestName === undefined
        ? undefined
        : newestName === needed[needed.length - 1]
          ? segments[segments.length - 1]
          : await repo.readSegmentManifest(newestName);
  }

  const newestCommit = newestSegment ? { lsn: parseLsn(newestSegment.lastCommitLsn), time: parseIsoMicros(newestSegment.lastCommitTime) } : null;
  let earliest: ExactPoint | null = null;
  if (oldest) {
    earliest = sources.cache?.get(oldest.id) ?? null;
    if (!earliest) {
      earliest = await backupBound(repo, oldest, segments);
      if (newestCommit && newestCommit.lsn >= earliest.lsn) sources.cache?.set(oldest.id, earliest);
    }
  }
  return { earliest, latest: newestCommit ?? earliest, newestCommit };
}
