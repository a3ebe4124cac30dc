import type { Repository } from '../archive/repository';
import { segmentDataName, type SegmentManifest } from '../archive/segment-manifest';
import { readSegmentRecords } from '../archive/segment-reader';
import type { BackupManifest } from '../archive/backup-manifest';
import { listBackups } from '../archive/backup-catalog';
import { decodePgoutput } from '../archive/pgoutput-decoder';
import { formatLsn, parseLsn, type Lsn } from '../pg/lsn';
import { formatUnixMicros, parseIsoMicros } from '../pg/pg-time';
import { MessagePrefix } from '../archive/segment-format';
import { PitrError } from '../errors';
import { readSlotCreations } from '../archive/slot-creation';
import { ArchiveView } from '../archive/archive-view';
import { gapBounds, gapCause, gapPointText, type ArchiveGap } from '../archive/archive-gaps';
import {
  backupBound,
  pointText,
  recoverableWindow,
  toPoint,
  type ExactPoint,
  type Point as TextPoint,
  type RecoverableRange,
} from '../archive/recoverable-window';
import type { TargetSpec } from './target';

/** Which transactions a restore applies: those `includes` accepts, in commit order, stopping at the first it refuses. */
export interface StopRule {
  describe: string;
  includes(commitLsn: Lsn, commitTime: bigint): boolean;
}

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

type Point = ExactPoint;

/** Segments read past the target for its next heartbeat, at most (one heartbeat interval of small segments). */
const MAX_LOOK_AHEAD = 16;

/** Commit LSN of the first transaction accepted by `match`, decoding only the segments given. */
async function findCommit(
  repo: Repository,
  segments: SegmentManifest[],
  match: (message: ReturnType<typeof decodePgoutput>, xid: number) => boolean,
): Promise<Lsn | undefined> {
  for (const segment of segments) {
    let xid = 0;
    let commitLsn = 0n;
    for await (const record of readSegmentRecords(repo.storage.readStream(segmentDataName(segment.name)), segment.name, segment.sha256)) {
      const message = decodePgoutput(record);
      if (message.tag === 'B') {
        xid = message.xid;
        commitLsn = message.finalLsn;
        if (match(message, xid)) return commitLsn;
      } else if (match(message, xid)) return commitLsn;
    }
  }
  return undefined;
}

export async function planRestore(repo: Repository, target: TargetSpec, exclusive: boolean): Promise<RestorePlan> {
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
  const bounds = new Map<string, Point>();
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
  const earliest = firstRange.earliest;
  const latest = recoverable.newestCommit ?? earliest;
  const last = view.newest;
  const rangeText = (r: RecoverableRange): string => `${pointText(r.earliest)} to ${pointText(r.latest)} (backup ${r.backup})`;
  const restorable = gaps.length > 0 ? `; with gaps in the archive, restorable only: ${ranges.map(rangeText).join(', ')}` : '';
  const outside = (what: string): PitrError =>
    new PitrError(
      'NotFound',
      `restore target ${what} is outside the recoverable window: earliest ${pointText(earliest)}, latest ${pointText(latest)}${restorable}`,
      'choose a target inside the window ("pitr list" shows it)',
    );

  // Resolve the target to a rule on (commit LSN, commit time).
  let stop: StopRule;
  let stopLsn: Lsn | undefined; // commit LSN bound, when known
  let resolved: string;
  switch (target.kind) {
    case 'latest':
      stop = { describe: 'latest', includes: () => true };
      resolved = `latest: ${pointText(latest)}`;
      break;
    case 'lsn': {
      if (target.lsn < earliest.lsn || target.lsn > (last ? parseLsn(last.endLsn) : earliest.lsn)) throw outside(`lsn:${formatLsn(target.lsn)}`);
      const bound = target.lsn;
      stopLsn = bound;
      stop = { describe: `lsn:${formatLsn(bound)}`, includes: (lsn) => (exclusive ? lsn < bound : lsn <= bound) };
      resolved = `lsn ${formatLsn(bound)}${exclusive ? ' (exclusive)' : ''}`;
      break;
    }
    case 'time': {
      if (target.micros < earliest.time || target.micros > latest.time) throw outside(formatUnixMicros(target.micros));
      const bound = target.micros;
      stop = { describe: formatUnixMicros(bound), includes: (_lsn, time) => (exclusive ? time < bound : time <= bound) };
      resolved = `${formatUnixMicros(bound)}${exclusive ? ' (exclusive)' : ''}`;
      break;
    }
    case 'mark':
    case 'xid': {
      const candidates = await view.segments(target.kind === 'mark' ? { mark: target.name } : {});
      const found =
        target.kind === 'mark'
          ? await findCommit(
              repo,
              candidates,
              (m) => m.tag === 'M' && m.prefix === MessagePrefix.Mark && (JSON.parse(m.content.toString('utf8')) as { name: string }).name === target.name,
            )
          : await findCommit(repo, candidates, (m, xid) => m.tag === 'B' && xid === target.xid);
      if (found === undefined)
        throw new PitrError(
          'NotFound',
          `restore target ${target.kind}:${target.kind === 'mark' ? target.name : target.xid} is not in the archive`,
          target.kind === 'mark' ? 'list the marks with "pitr list"' : 'find the transaction with "pitr log"',
        );
      if (found < earliest.lsn) throw outside(`${target.kind} at ${formatLsn(found)}`);
      stopLsn = found;
      stop = { describe: `${target.kind} at ${formatLsn(found)}`, includes: (lsn) => (exclusive ? lsn < found : lsn <= found) };
      resolved = `commit ${formatLsn(found)}${exclusive ? ' (exclusive: just before it)' : ''}`;
      break;
    }
    default: {
      const never: never = target;
      throw new Error(`unknown target ${String(never)}`);
    }
  }

  // The newest backup holding nothing past the target.
  const usable = backups.filter((b) => {
    const bound = bounds.get(b.id) as Point;
    if (stopLsn !== undefined) return exclusive ? bound.lsn <= stopLsn : bound.lsn <= stopLsn + 1n;
    return stop.includes(bound.lsn, bound.time) || target.kind === 'latest';
  });
  const backup = usable[usable.length - 1];
  if (!backup) throw outside(resolved);
  const aligned = parseLsn(backup.alignedLsn);

  // Replay from the backup must not cross a gap the target lies in or after.
  const reachesInto = (gap: ArchiveGap): boolean => {
    if (target.kind === 'latest') return true;
    if (target.kind === 'time') return gap.from === null || target.micros > parseIsoMicros(gap.from.time);
    const bound = stopLsn as Lsn;
    return exclusive ? bound > parseLsn(gap.fromLsn) : bound >= parseLsn(gap.fromLsn);
  };
  const blocking = gaps.find((g) => parseLsn(g.toLsn) > aligned && reachesInto(g));
  if (blocking) throw gapRefusal(blocking, resolved, target, ranges);

  // Segments after the backup, up to the target; a gap after the backup lies past the target (checked above).
  const gapStarts = new Set(gaps.filter((g) => parseLsn(g.toLsn) > aligned && g.before !== null).map((g) => g.before));
  const replay: SegmentManifest[] = [];
  for (const segment of await view.segments({ endAfter: aligned })) {
    if (gapStarts.has(segment.name)) break;
    if (replay.length > 0 && !stop.includes(parseLsn(segment.firstCommitLsn), parseIsoMicros(segment.firstCommitTime))) break;
    replay.push(segment);
  }
  // the range the restore lands in: the one started by the newest range's backup at or before this one
  const range = [...ranges].reverse().find((r) => r.earliest.lsn <= aligned) ?? firstRange;
  const window = {
    earliest: toPoint(range.earliest),
    latest: toPoint(range === ranges[ranges.length - 1] && recoverable.earliest ? latest : range.latest),
  };
  const lookAhead: SegmentManifest[] = [];
  if (target.kind !== 'latest') {
    const last = replay[replay.length - 1];
    // read page by page from the last segment replayed: only as far as the look-ahead goes
    for await (const segment of view.eachSegment({ endAfter: last ? parseLsn(last.endLsn) - 1n : 0n })) {
      if (last === undefined || gapStarts.has(segment.name)) break;
      if (parseLsn(segment.firstCommitLsn) <= parseLsn(last.firstCommitLsn)) continue;
      lookAhead.push(segment);
      // logical messages that are neither schema changes nor marks are heartbeats
      if (segment.changes.message - segment.ddl - segment.marks.length > 0 || lookAhead.length >= MAX_LOOK_AHEAD) break;
    }
  }
  return { backup, segments: replay, lookAhead, stop, window, resolved };
}

/**
 * The refusal of a target inside a gap, or after one with no backup between them: both bounds of the gap,
 * and where restorable points are instead.
 */
function gapRefusal(gap: ArchiveGap, resolved: string, target: TargetSpec, ranges: readonly RecoverableRange[]): PitrError {
  const inside = target.kind === 'time' ? target.micros < parseIsoMicros(gap.to.time) : target.kind === 'lsn' ? target.lsn < parseLsn(gap.toLsn) : false; // latest, a mark or a transaction: an archived commit, so after the gap
  const next = ranges.find((r) => r.earliest.lsn >= parseLsn(gap.toLsn));
  const before = gap.from ? `up to ${gapPointText(gap.from)}` : undefined;
  const afterGap = next ? `from ${pointText(next.earliest)} on (backup ${next.backup})` : undefined;
  const choose = [before, afterGap].filter((t) => t !== undefined).join(', or ');
  if (inside)
    return new PitrError(
      'Integrity',
      `restore target ${resolved} lies inside a gap in the archive ${gapBounds(gap)} (${gapCause(gap)}): no point inside it can be restored`,
      next
        ? `choose a target ${choose} ("pitr list")`
        : `choose a target ${before ?? 'after the gap'}; points after the gap need a base backup taken after it: take one now ("pitr backup")`,
    );
  return new PitrError(
    'Integrity',
    next
      ? `restore target ${resolved} lies after a gap in the archive ${gapBounds(gap)} (${gapCause(gap)}) but before the earliest point restorable after it, ${pointText(next.earliest)}`
      : `restore target ${resolved} lies after a gap in the archive ${gapBounds(gap)} (${gapCause(gap)}) and every base backup is older than the gap`,
    next
      ? `choose a target ${choose} ("pitr list")`
      : `take a new base backup now ("pitr backup"): points after it become restorable${before ? `; targets ${before} still are` : ''}`,
  );
}

const compareLsn = (a: Lsn, b: Lsn): number => (a < b ? -1 : a > b ? 1 : 0);
