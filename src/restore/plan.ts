import type { Repository } from '../archive/repository';
import { segmentDataName, type SegmentManifest } from '../archive/segment-manifest';
import { readSegmentRecords } from '../archive/segment-reader';
import type { BackupManifest } from '../backup/backup-manifest';
import { listBackups } from '../backup/catalog';
import { decodePgoutput } from '../capture/pgoutput-decoder';
import { formatLsn, parseLsn, type Lsn } from '../capture/lsn';
import { formatUnixMicros, parseIsoMicros } from '../capture/pg-time';
import { MessagePrefix } from '../archive/segment-format';
import { PitrError } from '../errors';
import { backupBound, pointText, recoverableWindow, type ExactPoint } from '../ops/recoverable-window';
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
  stop: StopRule;
  window: { earliest: string; latest: string };
  resolved: string;
}

type Point = ExactPoint;

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
  const names = await repo.segmentManifestNames();
  const segments = await Promise.all(names.map((n) => repo.readSegmentManifest(n)));
  const bounds = new Map<string, Point>();
  for (const b of backups) bounds.set(b.id, await backupBound(repo, b, segments));
  // the window `pitr list` and `pitr status` show; with backups present both ends are known
  const recoverable = await recoverableWindow(repo, { backups, segments, cache: bounds });
  const earliest = recoverable.earliest as Point;
  const latest = recoverable.latest as Point;
  const last = segments[segments.length - 1];
  const window = { earliest: pointText(earliest), latest: pointText(latest) };
  const outside = (what: string): PitrError =>
    new PitrError(
      'NotFound',
      `restore target ${what} is outside the recoverable window: earliest ${window.earliest}, latest ${window.latest}`,
      'choose a target inside the window ("pitr list" shows it)',
    );

  // Resolve the target to a rule on (commit LSN, commit time).
  let stop: StopRule;
  let stopLsn: Lsn | undefined; // commit LSN bound, when known
  let resolved: string;
  switch (target.kind) {
    case 'latest':
      stop = { describe: 'latest', includes: () => true };
      resolved = `latest: ${window.latest}`;
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
      const candidates = target.kind === 'mark' ? segments.filter((s) => s.marks.includes(target.name)) : segments;
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

  // Segments after the backup, checking the chain for gaps on the way.
  const replay: SegmentManifest[] = [];
  let previous: SegmentManifest | undefined;
  for (const segment of segments) {
    if (parseLsn(segment.endLsn) <= aligned) {
      previous = segment;
      continue;
    }
    if (previous && (segment.previous?.name !== previous.name || segment.previous.sha256 !== previous.sha256) && parseLsn(previous.endLsn) >= aligned) {
      throw new PitrError(
        'Integrity',
        `the archive has a gap between ${formatLsn(parseLsn(previous.endLsn))} and ${segment.firstCommitLsn} (segment ${segment.name} does not follow ${previous.name}); the target lies after it`,
        'choose a target before the gap, or one after a base backup taken after it ("pitr list")',
      );
    }
    if (replay.length > 0 && !stop.includes(parseLsn(segment.firstCommitLsn), parseIsoMicros(segment.firstCommitTime))) break;
    replay.push(segment);
    previous = segment;
  }
  return { backup, segments: replay, stop, window, resolved };
}
