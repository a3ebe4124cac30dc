import { checkNoOtherWriter } from '../archive/lease-decision';
import { describeHolder, thisProcess } from '../archive/lease-holder';
import { readCurrentLease } from '../archive/lease-record';
import type { Repository } from '../archive/repository';
import type { SegmentManifest } from '../archive/segment-manifest';
import type { Logger } from '../logger';
import type { SystemIdentity } from '../pg/connect';
import { parseLsn } from '../pg/lsn';
import { matchSource } from './source-match';

/**
 * What `pitr init` checks before it prepares a writer of the repository, changing nothing: the source
 * follows the archive's history (not a replaced, restored or branched-off server), and no archiver of
 * another slot or source holds the repository's writer lease. Returns the newest segment, read before
 * anything is created.
 */
export async function checkNewWriter(
  repo: Repository,
  source: { system: SystemIdentity; display: string },
  slot: string,
  takeover: boolean,
  log: Logger,
): Promise<SegmentManifest | null> {
  const { system } = source;
  const latest = await repo.latestSegment();
  const owner = await repo.identity();
  if (owner) {
    const end = latest && { storedEndLsn: parseLsn(latest.endLsn), acknowledgedLsn: parseLsn(latest.endLsn), timeline: latest.timeline ?? null };
    matchSource(system, owner, end, { source: source.display, repository: repo.storage.location });
  }
  const self = thisProcess({ command: 'init', slot, systemIdentifier: system.systemIdentifier, database: system.database });
  const decision = await checkNoOtherWriter(repo.storage, await readCurrentLease(repo.storage), self, takeover);
  if (decision.kind === 'take')
    log.warn(
      { event: 'lease_ignored', reason: decision.reason, holder: decision.holder },
      `repository ${repo.storage.location} was last held by ${describeHolder(decision.holder)} (${decision.reason}): preparing slot "${slot}" anyway`,
    );
  return latest;
}
