import type { Repository } from '../archive/repository';
import type { SegmentManifest } from '../archive/segment-manifest';
import type { BackupManifest } from '../archive/backup-manifest';
import { listBackups } from '../archive/backup-catalog';
import { parseLsn, type Lsn } from '../pg/lsn';
import { parseIsoMicros } from '../pg/pg-time';
import { PitrError } from '../errors';
import { readSlotCreations } from '../archive/slot-creation';
import { ArchiveView } from '../archive/archive-view';
import { gapBounds, gapCause, type ArchiveGap } from '../archive/archive-gaps';
import {
  backupBound,
  pointText,
  recoverableWindow,
  toPoint,
  type ExactPoint,
  type Point as TextPoint,
  type RecoverableRange,
  type RecoverableWindow,
} from '../archive/recoverable-window';
import { gapRefusal } from './gap-refusal';
import { reachesPast, resolveStop, type ResolvedStop, type StopRule } from './stop-rule';
import type { TargetSpec } from './target';

export type { StopRule } from './stop-rule';

export interface RestorePlan {
  backup: BackupManifest;
  /** Segments after the backup's aligned LSN, in order, up to (and including) the one holding the stop. */
  segments: SegmentManifest[];
  /**
   * The segments just after those, up to the first holding logical messages: read, not applied, for the
   * first heartbeat after the target (sequence values no lower than the source's at the target).
   */
  lookAhead: SegmentManifest[];
  stop: StopRule;
  window: { earliest: TextPoint; latest: TextPoint };
  resolved: string;
}

/** Segments read past the target for its next heartbeat, at most (one heartbeat interval of small segments). */
const MAX_LOOK_AHEAD = 16;

/** What a plan is made from: the backups (oldest first), the index, the gaps and the recoverable window. */
interface ArchiveFacts {
  backups: BackupManifest[];
  view: ArchiveView;
  gaps: ArchiveGap[];
  /** Each backup's bound: the newest commit it holds. */
  bounds: Map<string, ExactPoint>;
  recoverable: RecoverableWindow;
  ranges: RecoverableRange[];
  earliest: ExactPoint;
  latest: ExactPoint;
}

/**
 * The plan of a restore to `target`, decided in order: the target as a rule on commits (stop-rule.ts),
 * the newest backup holding nothing past it, no gap crossed on the way, the segments to replay, and
 * those read past the target for its next heartbeat.
 */
export async function planRestore(repo: Repository, target: TargetSpec, exclusive: boolean): Promise<RestorePlan> {
  const facts = await readArchiveFacts(repo);
  const { view, gaps, ranges, earliest, latest } = facts;
  const restorable = gaps.length > 0 ? `; with gaps in the archive, restorable only: ${ranges.map(rangeText).join(', ')}` : '';
  const outside = (what: string): PitrError =>
    new PitrError(
      'NotFound',
      `restore target ${what} is outside the recoverable window: earliest ${pointText(earliest)}, latest ${pointText(latest)}${restorable}`,
      'choose a target inside the window ("pitr list" shows it)',
    );
  const endLsn = view.newest ? parseLsn(view.newest.endLsn) : earliest.lsn;
  const resolved = await resolveStop(repo, view, target, exclusive, { earliest, latest, endLsn, outside });

  const backup = newestBackupBefore(facts, resolved, target, exclusive);
  if (!backup) throw outside(resolved.resolved);
  const aligned = parseLsn(backup.alignedLsn);
  // replay from the backup must not cross a gap the target lies in or after
  const blocking = gaps.find(
    (g) =>
      parseLsn(g.toLsn) > aligned && reachesPast(target, resolved, exclusive, parseLsn(g.fromLsn), g.from === null ? undefined : parseIsoMicros(g.from.time)),
  );
  if (blocking) throw gapRefusal(blocking, resolved.resolved, target, ranges);

  // a gap after the backup lies past the target (checked above): segments stop before it
  const gapStarts = new Set(gaps.filter((g) => parseLsn(g.toLsn) > aligned && g.before !== null).map((g) => g.before));
  const segments = await segmentsToReplay(view, aligned, resolved.stop, gapStarts);
  const lookAhead = target.kind === 'latest' ? [] : await lookAheadOf(view, segments, gapStarts);
  return { backup, segments, lookAhead, stop: resolved.stop, window: landingWindow(facts, aligned), resolved: resolved.resolved };
}

async function readArchiveFacts(repo: Repository): Promise<ArchiveFacts> {
  const backups = await listBackups(repo);
  if (backups.length === 0)
    throw new PitrError(
      'NotFound',
      `repository ${repo.storage.location} has no complete base backup`,
      'take one with "pitr backup" (or run "pitr archive --backup-every 24h")',
    );
  backups.sort((a, b) => compareLsn(parseLsn(a.alignedLsn), parseLsn(b.alignedLsn)));
  // the index: page summaries and the tail; pages are read only where the plan looks into them
  const view = await ArchiveView.open(repo);
  const creations = await readSlotCreations(repo);
  const gaps = await view.gaps(creations, backups);
  const bounds = new Map<string, ExactPoint>();
  for (const b of backups) bounds.set(b.id, await backupBound(repo, b, view, gaps));
  // the window and ranges `pitr list` and `pitr status` show
  const recoverable = await recoverableWindow(repo, { backups, view, creations, gaps, cache: bounds });
  const { ranges } = recoverable;
  const firstRange = ranges[0];
  if (!firstRange) {
    const gap = gaps[0] as ArchiveGap;
    throw new PitrError(
      'Integrity',
      `no base backup in ${repo.storage.location} can be replayed: each lies inside a gap in the archive, ${gapBounds(gap)} (${gapCause(gap)})`,
      'take a new base backup now ("pitr backup")',
    );
  }
  return { backups, view, gaps, bounds, recoverable, ranges, earliest: firstRange.earliest, latest: recoverable.newestCommit ?? firstRange.earliest };
}

/** The newest backup holding nothing past the target. */
function newestBackupBefore(facts: ArchiveFacts, resolved: ResolvedStop, target: TargetSpec, exclusive: boolean): BackupManifest | undefined {
  const { stop, stopLsn } = resolved;
  const usable = facts.backups.filter((b) => {
    const bound = facts.bounds.get(b.id) as ExactPoint;
    if (stopLsn !== undefined) return exclusive ? bound.lsn <= stopLsn : bound.lsn <= stopLsn + 1n;
    return stop.includes(bound.lsn, bound.time) || target.kind === 'latest';
  });
  return usable[usable.length - 1];
}

/** Segments after the backup, up to the first one starting past the stop, never past a gap. */
async function segmentsToReplay(view: ArchiveView, aligned: Lsn, stop: StopRule, gapStarts: ReadonlySet<string | null>): Promise<SegmentManifest[]> {
  const replay: SegmentManifest[] = [];
  for (const segment of await view.segments({ endAfter: aligned })) {
    if (gapStarts.has(segment.name)) break;
    if (replay.length > 0 && !stop.includes(parseLsn(segment.firstCommitLsn), parseIsoMicros(segment.firstCommitTime))) break;
    replay.push(segment);
  }
  return replay;
}

/** The segments after the last replayed, up to the first holding a heartbeat (read page by page: only as far as that). */
async function lookAheadOf(view: ArchiveView, replay: readonly SegmentManifest[], gapStarts: ReadonlySet<string | null>): Promise<SegmentManifest[]> {
  const last = replay[replay.length - 1];
  if (last === undefined) return [];
  const lookAhead: SegmentManifest[] = [];
  for await (const segment of view.eachSegment({ endAfter: parseLsn(last.endLsn) - 1n })) {
    if (gapStarts.has(segment.name)) break;
    if (parseLsn(segment.firstCommitLsn) <= parseLsn(last.firstCommitLsn)) continue;
    lookAhead.push(segment);
    // logical messages that are neither schema changes nor marks are heartbeats
    if (segment.changes.message - segment.ddl - segment.marks.length > 0 || lookAhead.length >= MAX_LOOK_AHEAD) break;
  }
  return lookAhead;
}

/** The range the restore lands in: the one started by the newest range's backup at or before this one. */
function landingWindow(facts: ArchiveFacts, aligned: Lsn): RestorePlan['window'] {
  const { ranges } = facts;
  const range = [...ranges].reverse().find((r) => r.earliest.lsn <= aligned) ?? (ranges[0] as RecoverableRange);
  const isWindow = range === ranges[ranges.length - 1] && facts.recoverable.earliest;
  return { earliest: toPoint(range.earliest), latest: toPoint(isWindow ? facts.latest : range.latest) };
}

const rangeText = (r: RecoverableRange): string => `${pointText(r.earliest)} to ${pointText(r.latest)} (backup ${r.backup})`;

const compareLsn = (a: Lsn, b: Lsn): number => (a < b ? -1 : a > b ? 1 : 0);
