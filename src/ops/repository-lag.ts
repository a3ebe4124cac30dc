import { ArchiveView } from '../archive/archive-view';
import { listBackups } from '../archive/backup-catalog';
import { IDENTITY_OBJECT, type Repository } from '../archive/repository';
import { messageOf } from '../errors';
import { archiveSize } from './repository-size';
import { formatLsn, parseLsn } from '../pg/lsn';

/** A status reason (status.ts's LagReason; a lag is only ever a warning). */
export interface LagReason {
  severity: 'warning';
  message: string;
}

/** One of several repositories, as `pitr status` is given them (--repo repeated). */
export interface StatusMember {
  name: string;
  repo: Repository;
  async: boolean;
  /** Its storage-class setting (gs:// only). */
  storageClass?: string;
}

/** `status --json`'s per-repository entry: the newest segment it holds and how far it is behind the newest of them all. */
export interface RepositoryLagEntry {
  name: string;
  location: string;
  async: boolean;
  reachable: boolean;
  /** End LSN and newest commit time of the newest segment stored there; null when it holds none (or could not be read). */
  newest: { lsn: string; time: string } | null;
  /** WAL bytes and seconds of commits behind the newest segment any of them holds; null when unknown. */
  lagBytes: number | null;
  lagSeconds: number | null;
  /** Its storage-class setting, else the class its objects report (GCS); null when neither says (a local directory). */
  storageClass: string | null;
  /** Segment data and backup objects of its archive and their total size, from its own index and backup manifests; null when unknown. */
  objects: number | null;
  bytes: number | null;
  /** Why it could not be read. */
  error?: string;
}

const seconds = (s: number): string => (s < 10 ? `${s.toFixed(1)}s` : `${Math.round(s)}s`);

/**
 * Compares the repositories an archiver writes: each one's newest stored segment against the newest any
 * of them holds. One that cannot be read, or lags by more than `maxLagMs` of commits, is a warning that
 * names it (the archive is degraded: one copy is missing or stale).
 */
export async function repositoryLag(members: readonly StatusMember[], maxLagMs: number): Promise<{ entries: RepositoryLagEntry[]; reasons: LagReason[] }> {
  const read = await Promise.all(
    members.map(async (m) => {
      const facts = { storageClass: m.storageClass ?? null, objects: null as number | null, bytes: null as number | null };
      try {
        const latest = await m.repo.latestSegment();
        const [size, identity] = await Promise.all([repositorySize(m.repo), m.storageClass ? undefined : m.repo.storage.stat(IDENTITY_OBJECT)]);
        return { m, latest, error: undefined, facts: { ...facts, ...size, storageClass: facts.storageClass ?? identity?.storageClass ?? null } };
      } catch (error) {
        return { m, latest: null, error: messageOf(error), facts };
      }
    }),
  );
  const heads = read.flatMap((r) => (r.latest ? [r.latest] : []));
  const newest = heads.reduce<(typeof heads)[number] | undefined>((a, b) => (!a || parseLsn(b.endLsn) > parseLsn(a.endLsn) ? b : a), undefined);
  const reasons: LagReason[] = [];
  const entries = read.map(({ m, latest, error, facts }): RepositoryLagEntry => {
    const location = m.repo.storage.location;
    const kind = m.async ? 'asynchronous repository' : 'repository';
    if (error !== undefined) {
      reasons.push({ severity: 'warning', message: `${kind} ${m.name} (${location}) unreachable: ${error}` });
      return { name: m.name, location, async: m.async, reachable: false, newest: null, lagBytes: null, lagSeconds: null, ...facts, error };
    }
    const lagBytes = newest ? Number(parseLsn(newest.endLsn) - (latest ? parseLsn(latest.endLsn) : 0n)) : null;
    const lagSeconds = newest && latest ? Math.max(0, (Date.parse(newest.lastCommitTime) - Date.parse(latest.lastCommitTime)) / 1000) : null;
    if (newest && !latest)
      reasons.push({ severity: 'warning', message: `${kind} ${m.name} (${location}) holds no segments; the others end at ${newest.endLsn}` });
    else if (lagSeconds !== null && lagSeconds * 1000 > maxLagMs && newest)
      reasons.push({
        severity: 'warning',
        message: `${kind} ${m.name} (${location}) lags ${seconds(lagSeconds)} (${lagBytes ?? 0} bytes) behind the newest archived segment, more than --max-lag ${seconds(maxLagMs / 1000)} (it ends at ${latest?.endLsn ?? '-'}, the newest at ${newest.endLsn})`,
      });
    return {
      name: m.name,
      location,
      async: m.async,
      reachable: true,
      newest: latest ? { lsn: formatLsn(parseLsn(latest.endLsn)), time: latest.lastCommitTime } : null,
      lagBytes,
      lagSeconds,
      ...facts,
    };
  });
  return { entries, reasons };
}

/** What its archive takes up, from its own index and backup manifests (a few objects whatever its age); null figures when they cannot be read. */
async function repositorySize(repo: Repository): Promise<{ objects: number | null; bytes: number | null }> {
  try {
    const [view, backups] = await Promise.all([ArchiveView.open(repo), listBackups(repo)]);
    const size = archiveSize(view, backups);
    return { objects: size.objects, bytes: size.bytes };
  } catch {
    return { objects: null, bytes: null };
  }
}
