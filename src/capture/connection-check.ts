import { PitrError } from '../errors';
import { identifySession } from '../pg/connect';
import { formatLsn, parseLsn, type Lsn } from '../pg/lsn';
import type { ReplicationSession } from '../pg/replication-session';
import { quoteLiteral } from '../pg/sql-quote';
import { publicationExists } from './source-checks';
import { matchSource, type ArchiveEnd, type SourceMatch } from './source-match';

export interface ConnectionExpectations {
  owner: { systemIdentifier: string; database: string };
  end: ArchiveEnd | null;
  slot: string;
  publication: string;
  source: string;
  repository: string;
}

export interface CheckedConnection {
  match: SourceMatch;
  timeline: number;
  /** The slot's confirmed_flush_lsn: where the server resends from (null if it has none). */
  slotLsn: Lsn | null;
}

/**
 * What the archiver checks on every replication connection, before START_REPLICATION: that the server is
 * the database the repository belongs to and follows the archive's history (source-match.ts), and that
 * the slot and the publication exist (the slot first: before "pitr init" neither does), and where the slot
 * stands (when behind the archive's end, history-check.ts compares what the server sends again). Throws PitrError
 * for each refusal; the caller drops the connection, so nothing is streamed, acknowledged or held on a
 * server that fails them.
 */
export async function checkConnection(session: ReplicationSession, expected: ConnectionExpectations): Promise<CheckedConnection> {
  const server = await identifySession(session);
  const match = matchSource(server, expected.owner, expected.end, { source: expected.source, repository: expected.repository });
  const { rows } = (await session.query(
    `SELECT confirmed_flush_lsn::text AS confirmed FROM pg_catalog.pg_replication_slots WHERE slot_name = ${quoteLiteral(expected.slot)}`,
  )) as { rows: { confirmed: string | null }[] };
  if (rows.length === 0) throw missingSlot(expected, match);
  if (!(await publicationExists(session, expected.publication)))
    throw new PitrError(
      'SourceConfig',
      `publication "${expected.publication}" does not exist on ${expected.source}`,
      `run "pitr init --publication ${expected.publication}" to create it, or give the publication "pitr init" created (--publication, default pitr)`,
    );
  const confirmed = rows[0]?.confirmed ?? null;
  return { match, timeline: server.timeline, slotLsn: confirmed === null ? null : parseLsn(confirmed) };
}

function missingSlot(expected: ConnectionExpectations, match: SourceMatch): PitrError {
  if (match.kind === 'promoted')
    return new PitrError(
      'SourceConfig',
      `replication slot "${expected.slot}" does not exist on ${expected.source}, which was promoted: it is on timeline ${match.to} since ${formatLsn(match.switchpoint)}, the archive was on timeline ${match.from}`,
      `a standby has none of its primary's logical slots (before PostgreSQL 17's failover slots): run "pitr init" against the promoted server; it creates the slot and records the gap from the archive's last commit to the new slot's start; then take a base backup (docs/runbooks/replaced-or-promoted-source.md)`,
    );
  return new PitrError('SourceConfig', `replication slot "${expected.slot}" does not exist on ${expected.source}`, 'run "pitr init" first');
}

/** Where a continuous stream resumes after a promotion: never past the point where the new timeline began. */
export function resumeAfter(match: SourceMatch, acknowledged: Lsn): Lsn {
  return match.kind === 'promoted' && match.switchpoint < acknowledged ? match.switchpoint : acknowledged;
}
