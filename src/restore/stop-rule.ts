import type { Repository } from '../archive/repository';
import type { ArchiveView } from '../archive/archive-view';
import { segmentDataName, type SegmentManifest } from '../archive/segment-manifest';
import { readSegmentRecords } from '../archive/segment-reader';
import { decodePgoutput } from '../archive/pgoutput-decoder';
import { MessagePrefix } from '../archive/segment-format';
import { pointText, type ExactPoint } from '../archive/recoverable-window';
import { PitrError } from '../errors';
import { formatLsn, type Lsn } from '../pg/lsn';
import { formatUnixMicros } from '../pg/pg-time';
import type { TargetSpec } from './target';

/** Which transactions a restore applies: those `includes` accepts, in commit order, stopping at the first it refuses. */
export interface StopRule {
  describe: string;
  includes(commitLsn: Lsn, commitTime: bigint): boolean;
}

/** A restore target resolved against the archive. */
export interface ResolvedStop {
  stop: StopRule;
  /** The commit LSN bound, when the target names one (an LSN, a mark, a transaction). */
  stopLsn: Lsn | undefined;
  /** The target as the restore's summary names it. */
  resolved: string;
}

/** What a target is checked against: the recoverable window and the archive's end. */
export interface StopBounds {
  earliest: ExactPoint;
  latest: ExactPoint;
  /** The end LSN of the newest archived segment. */
  endLsn: Lsn;
  /** The refusal of a target outside the window. */
  outside(what: string): PitrError;
}

/**
 * Resolves the target to a rule on (commit LSN, commit time). A mark or a transaction is looked up in
 * the archive (only in the segments the index says may hold it); a target outside the window is refused.
 */
export async function resolveStop(repo: Repository, view: ArchiveView, target: TargetSpec, exclusive: boolean, bounds: StopBounds): Promise<ResolvedStop> {
  const { earliest, latest, outside } = bounds;
  switch (target.kind) {
    case 'latest':
      return { stop: { describe: 'latest', includes: () => true }, stopLsn: undefined, resolved: `latest: ${pointText(latest)}` };
    case 'lsn': {
      if (target.lsn < earliest.lsn || target.lsn > bounds.endLsn) throw outside(`lsn:${formatLsn(target.lsn)}`);
      const bound = target.lsn;
      return {
        stop: { describe: `lsn:${formatLsn(bound)}`, includes: (lsn) => (exclusive ? lsn < bound : lsn <= bound) },
        stopLsn: bound,
        resolved: `lsn ${formatLsn(bound)}${exclusive ? ' (exclusive)' : ''}`,
      };
    }
    case 'time': {
      if (target.micros < earliest.time || target.micros > latest.time) throw outside(formatUnixMicros(target.micros));
      const bound = target.micros;
      return {
        stop: { describe: formatUnixMicros(bound), includes: (_lsn, time) => (exclusive ? time < bound : time <= bound) },
        stopLsn: undefined,
        resolved: `${formatUnixMicros(bound)}${exclusive ? ' (exclusive)' : ''}`,
      };
    }
    case 'mark':
    case 'xid': {
      const found = await findTargetCommit(repo, view, target);
      if (found < earliest.lsn) throw outside(`${target.kind} at ${formatLsn(found)}`);
      return {
        stop: { describe: `${target.kind} at ${formatLsn(found)}`, includes: (lsn) => (exclusive ? lsn < found : lsn <= found) },
        stopLsn: found,
        resolved: `commit ${formatLsn(found)}${exclusive ? ' (exclusive: just before it)' : ''}`,
      };
    }
    default: {
      const never: never = target;
      throw new Error(`unknown target ${String(never)}`);
    }
  }
}

/** The commit LSN of the transaction a mark or an xid names. */
async function findTargetCommit(repo: Repository, view: ArchiveView, target: Extract<TargetSpec, { kind: 'mark' | 'xid' }>): Promise<Lsn> {
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
  return found;
}

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

/** Whether a target lies inside or after a gap starting at `gapFromLsn` / `gapFromTime` (latest always does). */
export function reachesPast(target: TargetSpec, resolved: ResolvedStop, exclusive: boolean, gapFromLsn: Lsn, gapFromTime: bigint | undefined): boolean {
  if (target.kind === 'latest') return true;
  if (target.kind === 'time') return gapFromTime === undefined || target.micros > gapFromTime;
  const bound = resolved.stopLsn as Lsn;
  return exclusive ? bound > gapFromLsn : bound >= gapFromLsn;
}
