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
  for (const { target, end } of ends) {
    if (end >= newest.end) continue;
    log.info(
      { event: 'repository_catching_up', repository: target.name, from: newest.target.name, newest: newest.name },
      `repository ${target.name} ends before ${newest.target.name}: copying what it lacks before streaming`,
    );
    const report = await copyRepository(newest.target.repo, target.repo, { transfers: 4, log });
    const latest = await target.repo.latestSegment();
    if (!report.ok || latest?.name !== newest.name)
      throw new PitrError(
        'Repository',
        `repository ${target.name} (${target.repo.storage.location}) could not be brought level with ${newest.target.name}: ${report.refused.length + report.differs.length} object(s) not copied, ${report.heldBack} held back`,
        `see the errors above; "pitr verify" over both repositories with --repair, or "pitr copy --from ${newest.target.repo.storage.location} --into ${target.repo.storage.location}"`,
      );
    log.info(
      { event: 'repository_caught_up', repository: target.name, copied: report.copied.objects, bytes: report.copied.bytes },
      `repository ${target.name} caught up (${report.copied.objects} objects copied)`,
    );
  }
  return newest.target.repo;
}
