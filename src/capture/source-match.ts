import { PitrError } from '../errors';
import type { SystemIdentity } from '../pg/connect';
import { formatLsn, parseLsn, type Lsn } from '../pg/lsn';

/** Where the archive stands: the end of its stored data, how far the slot was acknowledged, and on which timeline. */
export interface ArchiveEnd {
  /** End LSN of the newest stored segment. */
  storedEndLsn: Lsn;
  /** The position acknowledged to the slot (at least `storedEndLsn`: idle keepalives move it on). */
  acknowledgedLsn: Lsn;
  /** The source's timeline when the newest segment was received; null for segments from before timelines were recorded. */
  timeline: number | null;
}

/**
 * same      the server is the one the archive follows, at or ahead of it
 * promoted  a standby of it, promoted: a new timeline that branched off at or after the archive's end
 */
export type SourceMatch = { kind: 'same' } | { kind: 'promoted'; from: number; to: number; switchpoint: Lsn };

const RUNBOOK = 'docs/runbooks/replaced-or-promoted-source.md';

/**
 * Checks that the server reached is the database the repository belongs to, and not behind or beside
 * the archive's history; throws PitrError('Repository') naming what it found otherwise. A different
 * system identifier or database is another cluster; the same one behind the archive (a lower WAL
 * position, an older timeline) is a restored copy, whose new transactions would look like duplicates;
 * a newer timeline that branched off before the archive's end lacks transactions the archive holds.
 */
export function matchSource(
  server: SystemIdentity,
  owner: { systemIdentifier: string; database: string },
  end: ArchiveEnd | null,
  where: { source: string; repository: string },
): SourceMatch {
  if (server.systemIdentifier !== owner.systemIdentifier || server.database !== owner.database)
    throw new PitrError(
      'Repository',
      `source ${where.source} is not the database repository ${where.repository} belongs to: it is system identifier ${server.systemIdentifier}, database "${server.database}"; the repository belongs to system identifier ${owner.systemIdentifier}, database "${owner.database}"`,
      `the server at this address was replaced (rebuilt, restored from a dump, upgraded with pg_upgrade, or another cluster): nothing of it was archived or acknowledged, and its slot was left alone. Point --source at the database this repository belongs to, or give the new server a repository of its own (${RUNBOOK})`,
    );
  if (!end) return { kind: 'same' };
  const archived = end.timeline ?? server.timeline;
  const behind = (what: string): PitrError =>
    new PitrError(
      'Repository',
      `source ${where.source} is behind the archive: ${what}`,
      `the server was restored from an older backup or copy; its new transactions would take positions the archive already holds. Nothing was archived or acknowledged. Point --source at the server the archive follows, or give this one a repository of its own (${RUNBOOK})`,
    );
  if (server.timeline < archived) throw behind(`it is on timeline ${server.timeline}, the archive already on timeline ${archived}`);
  if (server.timeline > archived) {
    const branch = server.history.find((s) => s.timeline === archived);
    const since = server.history.find((s) => s.timeline === server.timeline - 1)?.switchpoint;
    if (!branch || branch.switchpoint < end.storedEndLsn)
      throw new PitrError(
        'Repository',
        `source ${where.source} branched off the archive's history: it is on timeline ${server.timeline} since ${since === undefined ? 'an unknown position' : formatLsn(since)}, but the archive holds transactions of timeline ${archived} up to ${formatLsn(end.storedEndLsn)}${branch ? `, after the branch point ${formatLsn(branch.switchpoint)}` : ', and timeline ' + String(archived) + ' is not in its history'}`,
        `a standby that had not received everything was promoted: the archive holds transactions the new primary never had. They stay restorable from this repository; give the promoted server a repository of its own (${RUNBOOK})`,
      );
    return { kind: 'promoted', from: archived, to: server.timeline, switchpoint: branch.switchpoint };
  }
  if (parseLsn(server.xlogPos) < end.acknowledgedLsn)
    throw behind(`its WAL ends at ${server.xlogPos}, and the archive is complete up to ${formatLsn(end.acknowledgedLsn)}`);
  return { kind: 'same' };
}
