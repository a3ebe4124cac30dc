import type { Repository } from './repository';
import { segmentDataName, type SegmentManifest } from './segment-manifest';
import { readSegmentRecords } from './segment-reader';
import { readSlotCreations, type SlotCreation } from './slot-creation';
import type { BackupManifest } from './backup-manifest';
import { listBackups } from './backup-catalog';
import { formatLsn, parseLsn, type Lsn } from '../pg/lsn';
import { formatUnixMicros, parseIsoMicros } from '../pg/pg-time';
import { decodePgoutput } from './pgoutput-decoder';
import { archiveGaps, firstLsnOfSegmentName, type ArchiveGap } from './archive-gaps';

/**
 * The recoverable window, defined once for `pitr list`, `pitr status`, the metrics and the restore
 * planner: from the state the oldest usable base backup holds to the newest archived commit, never
 * across a gap.
 *
 * Terminology: a backup's "bound" is the newest commit it holds. A backup holds exactly the commits below
 * its aligned LSN, so its bound is found in the manifests of the segments wholly before that LSN and by
 * decoding the one segment that straddles it; it is capped at the backup's end time (the backup cannot
 * hold a commit made after it ended). Restoring to a time at or after a backup's bound can start from it.
 *
 * Gaps (archive-gaps.ts) cut the archive into stretches. A backup serves the stretch its aligned LSN
 * falls in: replay from it cannot cross the next gap, and a backup aligned inside a gap serves nothing.
 * A "range" is what one stretch makes restorable: from the bound of its oldest backup to its last
 * archived commit. The window is the range that reaches the archive's end; older ranges stay
 * restorable and are listed beside it.
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

/** Points restorable exactly: from `earliest` (a backup's bound) to `latest` (an archived commit), with no gap in between. */
export interface RecoverableRange {
  earliest: ExactPoint;
  latest: ExactPoint;
  /** The oldest backup a restore into this range can start from. */
  backup: string;
}

export interface RecoverableWindow {
  /** The bound of the oldest backup after the last gap; null when no complete backup can be replayed to the archive's end. */
  earliest: ExactPoint | null;
  /** The newest archived commit (the earliest point when nothing is archived after it yet); null when both are unknown. */
  latest: ExactPoint | null;
  /** The newest archived commit; null when no segment is archived. */
  newestCommit: ExactPoint | null;
  /** Every restorable range, oldest first; the last one is the window when `earliest` is known. */
  ranges: RecoverableRange[];
  /** The gaps found: recorded ones always, broken links only when every segment manifest was given. */
  gaps: ArchiveGap[];
}

/**
 * Bounds already computed, by backup id. Decoding the straddling segment is the costly part; a bound
 * is only remembered once the archive has passed the backup's aligned LSN, after which it cannot change.
 */
export type BackupBoundCache = Map<string, ExactPoint>;

export function toPoint(p: ExactPoint): Point {
  return { lsn: formatLsn(p.lsn), time: formatUnixMicros(p.time) };
}

export function fromPoint(p: Point): ExactPoint {
  return { lsn: parseLsn(p.lsn), time: parseIsoMicros(p.time) };
}

/** "time (lsn)" for messages. */
export function pointText(p: ExactPoint): string {
  return `${formatUnixMicros(p.time)} (${formatLsn(p.lsn)})`;
}

/**
 * The newest commit inside `backup`, from `segments` (manifests in LSN order; only those starting before its
 * aligned LSN matter). A gap that ends before the aligned LSN was copied into the backup without being
 * archived: its missed transactions committed before the gap's end time, which bounds them.
 */
export async function backupBound(
  repo: Repository,
  backup: BackupManifest,
  segments: readonly SegmentManifest[],
  gaps: readonly ArchiveGap[] = [],
): Promise<ExactPoint> {
  const aligned = parseLsn(backup.alignedLsn);
  let newest: bigint | undefined;
  for (const gap of gaps) {
    const end = parseIsoMicros(gap.to.time);
    if (parseLsn(gap.toLsn) <= aligned && (newest === undefined || end > newest)) newest = end;
  }
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

export interface WindowSources {
  /** Complete backups; listed when not given. */
  backups?: readonly BackupManifest[];
  /** Every segment manifest in LSN order, when the caller has read them anyway; otherwise only those needed are read. */
  segments?: readonly SegmentManifest[];
  /** The slot creation records; read when not given. */
  creations?: readonly SlotCreation[];
  cache?: BackupBoundCache;
}

/** A stretch of the archive between gaps: backups aligned in [start, end] can be replayed to its last commit. */
interface Stretch {
  start: Lsn;
  /** Null for the last stretch, which runs to the archive's end. */
  end: Lsn | null;
  /** The last archived commit before the gap that ends the stretch. */
  lastCommit: ExactPoint | null;
  oldestBackup?: BackupManifest;
}

function stretchesOf(gaps: readonly ArchiveGap[]): Stretch[] {
  const stretches: Stretch[] = [];
  let start = 0n;
  for (const gap of gaps) {
    stretches.push({
      start,
      end: parseLsn(gap.fromLsn),
      lastCommit: gap.from && { lsn: parseLsn(gap.from.lsn), time: parseIsoMicros(gap.from.time) },
    });
    start = parseLsn(gap.toLsn);
  }
  stretches.push({ start, end: null, lastCommit: null });
  return stretches;
}

/** The recoverable window of a repository, its ranges and its gaps (see the top of this file). */
export async function recoverableWindow(repo: Repository, sources: WindowSources = {}): Promise<RecoverableWindow> {
  const backups = [...(sources.backups ?? (await listBackups(repo)))].sort((a, b) => compareLsn(parseLsn(a.alignedLsn), parseLsn(b.alignedLsn)));
  const creations = sources.creations ?? (await readSlotCreations(repo));
  const names = sources.segments ? sources.segments.map((s) => `${s.name}.json`) : await repo.segmentManifestNames();
  const gaps = archiveGaps({ segmentNames: names, ...(sources.segments ? { segments: sources.segments } : {}), creations, backups });

  const stretches = stretchesOf(gaps);
  for (const backup of backups) {
    const aligned = parseLsn(backup.alignedLsn);
    const stretch = stretches.find((s) => aligned >= s.start && (s.end === null || aligned <= s.end));
    if (stretch && !stretch.oldestBackup) stretch.oldestBackup = backup;
  }

  let segments: readonly SegmentManifest[];
  let newestSegment: SegmentManifest | undefined;
  if (sources.segments) {
    segments = sources.segments;
    newestSegment = segments[segments.length - 1];
  } else {
    // Only the segments a bound is looked for in (from a stretch's start to its oldest backup), and the newest.
    const needed = names.filter((n) => {
      const first = firstLsnOfSegmentName(n) ?? 0n;
      return stretches.some((s) => s.oldestBackup && !sources.cache?.has(s.oldestBackup.id) && first >= s.start && first < parseLsn(s.oldestBackup.alignedLsn));
    });
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

  const ranges: RecoverableRange[] = [];
  let last: ExactPoint | null = null;
  for (const stretch of stretches) {
    const backup = stretch.oldestBackup;
    if (!backup) continue;
    let earliest = sources.cache?.get(backup.id);
    if (!earliest) {
      earliest = await backupBound(repo, backup, segments, gaps);
      if (newestCommit && newestCommit.lsn >= earliest.lsn) sources.cache?.set(backup.id, earliest);
    }
    if (stretch.end !== null) {
      if (stretch.lastCommit) ranges.push({ earliest, latest: stretch.lastCommit, backup: backup.id });
      continue;
    }
    // the last stretch: up to the newest commit, when one was archived after its start
    const latest = newestCommit && newestCommit.lsn >= stretch.start ? newestCommit : earliest;
    ranges.push({ earliest, latest, backup: backup.id });
    last = earliest;
  }
  const windowRange = last ? ranges[ranges.length - 1] : undefined;
  return {
    earliest: windowRange?.earliest ?? null,
    latest: windowRange?.latest ?? newestCommit,
    newestCommit,
    ranges,
    gaps,
  };
}

const compareLsn = (a: Lsn, b: Lsn): number => (a < b ? -1 : a > b ? 1 : 0);
