import type { Repository } from './repository';
import { segmentDataName } from './segment-manifest';
import { ArchiveView } from './archive-view';
import { readSegmentRecords } from './segment-reader';
import { readSlotCreations, type SlotCreation } from './slot-creation';
import type { BackupManifest } from './backup-manifest';
import { listBackups } from './backup-catalog';
import { formatLsn, parseLsn, type Lsn } from '../pg/lsn';
import { formatUnixMicros, parseIsoMicros } from '../pg/pg-time';
import { decodePgoutput } from './pgoutput-decoder';
import type { ArchiveGap } from './archive-gaps';

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
  /** The gaps found: recorded ones always, broken links unless only recorded ones were asked for. */
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
 * The newest commit inside `backup`. Only the segments starting before its aligned LSN matter: pages
 * wholly before it are judged from their summaries; the one page (or tail segment) that straddles it is
 * read, and the one segment that straddles it decoded. A gap that ends before the aligned LSN was copied
 * into the backup without being archived: its missed transactions committed before the gap's end time,
 * which bounds them.
 */
export async function backupBound(repo: Repository, backup: BackupManifest, view: ArchiveView, gaps: readonly ArchiveGap[] = []): Promise<ExactPoint> {
  const aligned = parseLsn(backup.alignedLsn);
  let newest: bigint | undefined;
  const consider = (time: bigint): void => {
    if (newest === undefined || time > newest) newest = time;
  };
  for (const gap of gaps) if (parseLsn(gap.toLsn) <= aligned) consider(parseIsoMicros(gap.to.time));
  for (const s of view.summaries) {
    if (parseLsn(s.first.firstCommitLsn) >= aligned) break;
    if (parseLsn(s.last.lastCommitLsn) < aligned) consider(parseIsoMicros(s.newestCommitTime));
  }
  for (const s of await view.straddling(aligned)) {
    if (parseLsn(s.firstCommitLsn) >= aligned) break;
    if (parseLsn(s.lastCommitLsn) < aligned) {
      consider(parseIsoMicros(s.lastCommitTime));
      continue;
    }
    for await (const record of readSegmentRecords(repo.storage.readStream(segmentDataName(s.name)), s.name, s.sha256)) {
      if (record[0] !== 0x42) continue; // Begin: commit LSN and time
      const message = decodePgoutput(record);
      if (message.tag === 'B' && message.finalLsn < aligned) consider(message.commitTime);
    }
  }
  const end = parseIsoMicros(backup.endTime);
  return { lsn: aligned, time: newest !== undefined && newest < end ? newest : end };
}

export interface WindowSources {
  /** Complete backups; listed when not given. */
  backups?: readonly BackupManifest[];
  /** The archive's segments; opened when not given. */
  view?: ArchiveView;
  /** The slot creation records; read when not given. */
  creations?: readonly SlotCreation[];
  /** The gaps, when the caller found them already. */
  gaps?: readonly ArchiveGap[];
  /** Only recorded gaps (status and the metrics; verify, list and restore find broken links too). */
  recordedOnly?: boolean;
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
  const view = sources.view ?? (await ArchiveView.open(repo));
  const gaps = sources.gaps ? [...sources.gaps] : await view.gaps(creations, backups, sources.recordedOnly === true);

  const stretches = stretchesOf(gaps);
  for (const backup of backups) {
    const aligned = parseLsn(backup.alignedLsn);
    const stretch = stretches.find((s) => aligned >= s.start && (s.end === null || aligned <= s.end));
    if (stretch && !stretch.oldestBackup) stretch.oldestBackup = backup;
  }

  const newestSegment = view.newest;
  const newestCommit = newestSegment ? { lsn: parseLsn(newestSegment.lastCommitLsn), time: parseIsoMicros(newestSegment.lastCommitTime) } : null;

  const ranges: RecoverableRange[] = [];
  let last: ExactPoint | null = null;
  for (const stretch of stretches) {
    const backup = stretch.oldestBackup;
    if (!backup) continue;
    let earliest = sources.cache?.get(backup.id);
    if (!earliest) {
      earliest = await backupBound(repo, backup, view, gaps);
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
