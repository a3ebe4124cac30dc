import fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BACKUPS_PREFIX, MANIFEST_FILE, STARTED_FILE, type BackupManifest } from '../archive/backup-manifest';
import { decodeCheckedJson } from '../archive/checked-json';
import { IDENTITY_OBJECT, type Repository } from '../archive/repository';
import { SEGMENTS_PREFIX, segmentDataName, type SegmentManifest } from '../archive/segment-manifest';
import { SLOTS_PREFIX } from '../archive/slot-creation';
import { isPitrError, messageOf } from '../errors';
import type { Logger } from '../logger';
import { readChecked, type ObjectCheck } from './copy-object';
import type { Problem, VerifyReport } from './verify';

/**
 * Verify over several repositories of one source: an object missing or corrupt in one is looked for in
 * the others, and with --repair restored from a good copy. "Good" means the other repository's own
 * verify found nothing wrong with it and, when it is read to repair, it passes the check of the
 * repository being repaired (the SHA-256 that repository's manifest records, or its own checksum).
 */
export interface CrossProblem extends Problem {
  repository: string;
  /** The repository holding a good copy, or null when none does (or the object is not a copyable one: the index is rebuilt, not copied). */
  goodCopy: string | null;
}

export interface Repair {
  repository: string;
  object: string;
  status: 'missing' | 'corrupt';
  /** Where the good bytes came from; null when no copy passed the check. */
  from: string | null;
  /** stored: put create-only; replaced: the damaged bytes removed, then the good ones put; failed: not repaired. */
  action: 'stored' | 'replaced' | 'failed';
  detail: string;
}

interface Verified {
  repo: Repository;
  report: VerifyReport;
}

const repairable = <P extends Problem>(p: P): p is P & { status: 'missing' | 'corrupt' } =>
  (p.status === 'missing' || p.status === 'corrupt') && !p.object.startsWith('index/') && !p.object.endsWith('/');

/**
 * Each repository's problems, missing and corrupt objects with the other repository (in --repo order)
 * holding a good copy; and the segments a repository lacks altogether (manifest and data) inside its own
 * chain (between its first and newest segment) that another holds, which its verify sees only as a gap.
 * Segments before a repository's first or after its newest are not reported: its retention may be
 * shorter, or it may be a copy catching up ("pitr copy").
 */
export async function locateGoodCopies(verified: readonly Verified[]): Promise<CrossProblem[]> {
  const out: CrossProblem[] = [];
  const live = await Promise.all(verified.map((v) => v.repo.segmentManifestNames()));
  for (const [index, { repo, report }] of verified.entries()) {
    for (const problem of report.problems) {
      const goodCopy = repairable(problem) ? await firstGoodCopy(problem.object, repo, verified) : undefined;
      out.push({ ...problem, repository: repo.storage.location, goodCopy: goodCopy?.repo.storage.location ?? null });
    }
    out.push(...absentSegments(index, verified, live));
  }
  return out;
}

function absentSegments(index: number, verified: readonly Verified[], live: readonly string[][]): CrossProblem[] {
  const mine = live[index] as string[];
  const [first, newest] = [mine[0], mine[mine.length - 1]];
  if (first === undefined || newest === undefined) return [];
  const have = new Set(mine);
  const found = new Map<string, string>();
  for (const [other, names] of live.entries()) {
    const good = verified[other] as Verified;
    if (other === index) continue;
    for (const name of names) {
      if (name <= first || name >= newest || have.has(name) || found.has(name)) continue;
      const data = segmentDataName(name.slice(0, -'.json'.length));
      if (good.report.problems.some((p) => p.object === name || p.object === data)) continue;
      found.set(name, good.repo.storage.location);
    }
  }
  const location = (verified[index] as Verified).repo.storage.location;
  return [...found].flatMap(([name, goodCopy]) => [
    {
      repository: location,
      object: segmentDataName(name.slice(0, -'.json'.length)),
      status: 'missing' as const,
      detail: `segment data absent inside the chain (its manifest is absent too)`,
      goodCopy,
    },
    { repository: location, object: name, status: 'missing' as const, detail: `segment manifest absent inside the chain: the chain has a gap here`, goodCopy },
  ]);
}

/** The other repositories that hold `object` and found nothing wrong with it. */
function candidates(object: string, damaged: Repository, verified: readonly Verified[]): Verified[] {
  return verified.filter(
    (v) => v.repo !== damaged && !v.report.problems.some((p) => p.object === object && (p.status === 'missing' || p.status === 'corrupt')),
  );
}

async function firstGoodCopy(object: string, damaged: Repository, verified: readonly Verified[]): Promise<Verified | undefined> {
  for (const v of candidates(object, damaged, verified)) if (await v.repo.storage.stat(object)) return v;
  return undefined;
}

/**
 * Restores every missing or corrupt object from a good copy: the identity first, then data and backup
 * parts, then manifests in name order (segment manifests in chain order), so no manifest is stored before
 * what it names. A missing object is put create-only; a corrupt one is removed and the good bytes put in
 * its place, the one case where pitr replaces stored bytes, and only with bytes checked first.
 */
export async function repairFromCopies(verified: readonly Verified[], problems: readonly CrossProblem[], log: Logger): Promise<Repair[]> {
  const spoolDir = await fs.mkdtemp(path.join(tmpdir(), 'pitr-repair-'));
  const repairs: Repair[] = [];
  try {
    for (const { repo } of verified) {
      const todo = problems
        .filter((p) => p.repository === repo.storage.location)
        .filter(repairable)
        .sort((a, b) => repairOrder(a.object) - repairOrder(b.object) || (a.object < b.object ? -1 : 1));
      const seen = new Set<string>();
      for (const problem of todo) {
        if (seen.has(problem.object)) continue;
        seen.add(problem.object);
        const repair = await repairOne(repo, problem, verified, spoolDir);
        log.info(
          { event: 'object_repaired', ...repair },
          `${repair.repository}: ${repair.object} ${repair.action}${repair.from ? ` from ${repair.from}` : ''}`,
        );
        repairs.push(repair);
      }
    }
  } finally {
    await fs.rm(spoolDir, { recursive: true, force: true });
  }
  return repairs;
}

const repairOrder = (name: string): number => (name === IDENTITY_OBJECT ? 0 : name.endsWith('.json') ? 2 : 1);

async function repairOne(
  repo: Repository,
  problem: Problem & { status: 'missing' | 'corrupt' },
  verified: readonly Verified[],
  spoolDir: string,
): Promise<Repair> {
  const base = { repository: repo.storage.location, object: problem.object, status: problem.status };
  const reasons: string[] = [];
  for (const good of candidates(problem.object, repo, verified)) {
    const check = await checkFor(problem.object, repo, good.repo);
    if (!check) {
      reasons.push(`${good.repo.storage.location}: no manifest to check it against`);
      continue;
    }
    const read = await readChecked(good.repo.storage, problem.object, check, spoolDir);
    if (!read.ok) {
      reasons.push(`${good.repo.storage.location}: ${read.outcome.status === 'refused' ? read.outcome.detail : 'not there'}`);
      continue;
    }
    try {
      // the one exception to create-only: damaged bytes go, replaced by bytes just checked
      if (problem.status === 'corrupt') await repo.storage.remove(problem.object);
      await repo.storage.put(problem.object, { kind: 'file', path: read.file, consume: true });
    } catch (error) {
      reasons.push(`${good.repo.storage.location}: ${messageOf(error)}`);
      continue;
    } finally {
      await fs.rm(read.file, { force: true });
    }
    return {
      ...base,
      from: good.repo.storage.location,
      action: problem.status === 'corrupt' ? 'replaced' : 'stored',
      detail:
        problem.status === 'corrupt'
          ? `damaged bytes removed and replaced by the good copy (${read.bytes} bytes, checked)`
          : `stored from the good copy (${read.bytes} bytes, checked)`,
    };
  }
  return {
    ...base,
    from: null,
    action: 'failed',
    detail: reasons.length > 0 ? `no good copy: ${reasons.join('; ')}` : 'no other repository holds a good copy',
  };
}

/**
 * What the good copy must pass to repair `object` in `damaged`: data and backup parts the digest the
 * damaged repository's manifest records (the good repository's when that one is unreadable too, as it is
 * then repaired after them); checked JSON its own checksum and what its name says.
 */
async function checkFor(object: string, damaged: Repository, good: Repository): Promise<ObjectCheck | undefined> {
  if (object.endsWith('.json')) {
    if (object === IDENTITY_OBJECT || object.startsWith(SLOTS_PREFIX) || object.endsWith(`/${STARTED_FILE}`)) return { kind: 'checked-json' };
    if (object.startsWith(SEGMENTS_PREFIX)) {
      const base = object.slice(0, -'.json'.length);
      return {
        kind: 'checked-json',
        validate: (doc) => (doc.kind === 'segment' && doc.name === base ? undefined : `manifest names segment ${String(doc.name)}`),
      };
    }
    if (object.startsWith(BACKUPS_PREFIX) && object.endsWith(`/${MANIFEST_FILE}`)) {
      const id = object.slice(BACKUPS_PREFIX.length, -`/${MANIFEST_FILE}`.length);
      return { kind: 'checked-json', validate: (doc) => (doc.kind === 'backup' && doc.id === id ? undefined : `manifest describes backup ${String(doc.id)}`) };
    }
    return undefined;
  }
  if (object.startsWith(SEGMENTS_PREFIX) && object.endsWith('.lz4')) {
    const manifestName = `${object.slice(0, -'.lz4'.length)}.json`;
    for (const repo of [damaged, good]) {
      const manifest = await readJson<SegmentManifest>(repo, manifestName);
      if (manifest) return { kind: 'digest', sha256: manifest.sha256, bytes: manifest.storedBytes };
    }
    return undefined;
  }
  if (object.startsWith(BACKUPS_PREFIX)) {
    const prefix = object.split('/').slice(0, 2).join('/') + '/';
    const partName = object.slice(prefix.length);
    for (const repo of [damaged, good]) {
      const manifest = await readJson<BackupManifest>(repo, `${prefix}${MANIFEST_FILE}`);
      const part = manifest
        ? [manifest.schema.dump, manifest.schema.preData, manifest.schema.postData, ...manifest.tables.flatMap((t) => t.chunks)].find(
            (p) => p.name === partName,
          )
        : undefined;
      if (part) return { kind: 'digest', sha256: part.sha256, bytes: part.storedBytes };
    }
  }
  return undefined;
}

async function readJson<T extends object>(repo: Repository, name: string): Promise<T | undefined> {
  try {
    return decodeCheckedJson<T>(await repo.storage.read(name), name);
  } catch (error) {
    if (isPitrError(error, 'NotFound') || isPitrError(error, 'Integrity')) return undefined;
    throw error;
  }
}
