import type { Repository } from '../archive/repository';
import { parseLsn } from '../pg/lsn';
import type { SyncTarget } from '../capture/archive-targets';
import { PitrError } from '../errors';
import type { Logger } from '../logger';
import { copyRepository } from './copy';

/**
 * Before an archiver streams into several synchronous repositories: each whose newest segment ends
 * before the newest of them all (a repository added later, or one that was down when an earlier run
 * stopped) receives what it lacks by an incremental copy from the one that has it (`pitr copy`: checked,
 * create-only, chain order). Answers that repository: the stream continues its chain in every one.
 */
export async function levelTargets(targets: readonly SyncTarget[], log: Logger): Promise<Repository> {
  const ends = await Promise.all(
    targets.map(async (target) => {
      const latest = await target.repo.latestSegment();
      return { target, end: latest ? parseLsn(latest.endLsn) : -1n, name: latest?.name ?? null };
    }),
  );
  const newest = ends.reduce((a, b) => (b.end > a.end ? b : a));
  for (const { target, end, name } of ends) {
    if (end >= newest.end) continue;
    await copyLevel(newest.target, target, newest.name, log, 'before streaming', { after: name });
  }
  return newest.target.repo;
}

/**
 * A synchronous repository that could not be reached when the archiver started, joining once it can: it
 * receives by copy the archive as it was when streaming began (`through`: the newest segment then, or null
 * for none), and the segments sealed since come from the stream. One that holds more than that (it was
 * written while the others were not) cannot continue the same chain: an integrity error, naming both.
 */
export async function levelLateTarget(from: SyncTarget, into: SyncTarget, through: string | null, log: Logger): Promise<void> {
  const latest = await into.repo.latestSegment();
  if (latest && (through === null || latest.name > through))
    throw new PitrError(
      'Integrity',
      `repository ${into.name} (${into.repo.storage.location}) holds segment ${latest.name}, newer than ${through ?? 'anything'} in ${from.name}, where this archiver's stream continues: the two archives have diverged`,
      `stop the archiver and start it with both repositories reachable (it continues from the newer one), or take ${into.name} out of the set`,
    );
  if (latest?.name === through) return;
  await copyLevel(from, into, through, log, 'while the stream goes on', { after: latest?.name ?? null, through: through ?? '' });
}

/**
 * The copy of what `into` lacks from `from`, up to `newest`: only the segments after `into`'s newest
 * (`after`) are listed, so that a catch-up costs what it copies, not the archive's length.
 */
async function copyLevel(
  from: SyncTarget,
  into: SyncTarget,
  newest: string | null,
  log: Logger,
  when: string,
  segments: { after: string | null; through?: string },
): Promise<void> {
  log.info(
    { event: 'repository_catching_up', repository: into.name, from: from.name, newest },
    `repository ${into.name} ends before ${from.name}: copying what it lacks ${when}`,
  );
  const report = await copyRepository(from.repo, into.repo, {
    transfers: 4,
    log,
    ...(segments.after === null ? {} : { segmentsAfter: segments.after }),
    ...(segments.through === undefined ? {} : { segmentsThrough: segments.through }),
  });
  const latest = await into.repo.latestSegment();
  if (!report.ok || (latest?.name ?? null) !== newest)
    throw new PitrError(
      'Repository',
      `repository ${into.name} (${into.repo.storage.location}) could not be brought level with ${from.name}: ${report.refused.length + report.differs.length} object(s) not copied, ${report.heldBack} held back`,
      `see the errors above; "pitr verify" over both repositories with --repair, or "pitr copy --from ${from.repo.storage.location} --into ${into.repo.storage.location}"`,
    );
  log.info(
    { event: 'repository_caught_up', repository: into.name, copied: report.copied.objects, bytes: report.copied.bytes },
    `repository ${into.name} caught up (${report.copied.objects} objects copied)`,
  );
}
