import fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import PQueue from 'p-queue';
import { ArchiveView } from '../archive/archive-view';
import { BACKUPS_PREFIX, MANIFEST_FILE, STARTED_FILE, type BackupManifest } from '../archive/backup-manifest';
import { decodeCheckedJson } from '../archive/checked-json';
import { rebuildIndex } from '../archive/index-builder';
import { IndexMaintainer } from '../archive/index-maintainer';
import { PAGE_FANOUT } from '../archive/index-format';
import { IDENTITY_OBJECT, type Repository, type RepositoryIdentity } from '../archive/repository';
import { SEGMENTS_PREFIX, segmentDataName, type SegmentManifest } from '../archive/segment-manifest';
import { liveSegmentNames } from '../archive/segment-names';
import { SLOTS_PREFIX } from '../archive/slot-creation';
import { Progress } from '../backup/progress';
import { isPitrError, messageOf, PitrError } from '../errors';
import type { Logger } from '../logger';
import type { ObjectInfo, Storage } from '../storage/storage';
import { copyObject, type CopyOutcome, type ObjectCheck } from './copy-object';

/**
 * `pitr copy`: one repository into another, incrementally and create-only. Every object is checked as
 * it is read from the source; the target receives, in the order the archive's writers keep, only
 * checked bytes: the identity first, segment data before its manifest and manifests in chain order (a
 * slot creation record before the first segment streamed from its slot), a backup's parts before its
 * manifest. Not copied: the writer lease (the source's writer's, not the target's), the index (a cache
 * of the segments, which may name segments the copy did not take; the target's own is built from what
 * it holds), incomplete backups, and anything else the format does not name.
 *
 * Terminology: "present" objects are already in the target with the source's bytes; "held back" are
 * segments after one that could not be copied, left for the next run so the target's chain has no hole.
 */
export interface CopyOptions {
  /** Objects transferred at once. */
  transfers: number;
  log: Logger;
  signal?: AbortSignal;
  /**
   * Segments up to this one (by name) are neither listed nor copied: an archiver's catch-up of a repository
   * whose archive ends there lists only what follows, however long the archive (holes before it are repaired
   * by "pitr verify --repair", not here).
   */
  segmentsAfter?: string;
  /** Segments after this one (by name) are left out: an archiver joining a repository late copies the archive as it was when streaming began, the stream brings the rest. */
  segmentsThrough?: string;
}

export interface CopyProblem {
  object: string;
  detail: string;
}

export interface CopyReport {
  ok: boolean;
  from: string;
  to: string;
  copied: { objects: number; bytes: number };
  present: { objects: number; bytes: number };
  /** Objects whose source copy failed its check: not copied. */
  refused: CopyProblem[];
  /** Objects the target holds with other bytes: left as they are. */
  differs: CopyProblem[];
  /** Segments not copied because one before them was not (their manifests would leave a hole in the chain). */
  heldBack: number;
  /** Objects removed from the source after it was listed (by prune or compact): the next run sees the new state. */
  gone: number;
  indexBuilt: boolean;
  seconds: number;
}

/** The prefixes whose objects are copied; everything else (index/, lease/, probes) is not. */
const isCopied = (name: string): boolean =>
  name === IDENTITY_OBJECT || name.startsWith(SEGMENTS_PREFIX) || name.startsWith(SLOTS_PREFIX) || name.startsWith(BACKUPS_PREFIX);
const IGNORED_IN_EMPTY_TARGET = ['lease/', '.probe/', '.tmp/'];

/**
 * `after` when the source's first segment after it names it as its predecessor (the source's chain goes on
 * from there), else undefined: then everything is listed (compaction in the source merged segments across
 * it, or the chains differ there), and the copy takes what the target lacks wherever it is.
 */
async function continuesFrom(from: Repository, after: string | undefined): Promise<string | undefined> {
  if (after === undefined) return undefined;
  const { objects } = await from.storage.list(SEGMENTS_PREFIX, { startAfter: `${after}.lz4` });
  const next = objects.map((o) => o.name).find((n) => n.endsWith('.json'));
  if (next === undefined) return (await from.storage.stat(`${after}.json`)) ? after : undefined;
  const manifest = await from.readSegmentManifest(next).catch(() => undefined);
  return manifest?.previous?.name === after ? after : undefined;
}

/**
 * The objects a copy considers: everything under the copied prefixes, or, with `segmentsAfter`, the
 * segments after it only (the rest whole: identity, slot records and backups are few). `everything`: the
 * target's other objects too, which tell an empty location from a foreign one.
 */
async function listCopied(storage: Storage, segmentsAfter: string | undefined, everything = false): Promise<ObjectInfo[]> {
  if (segmentsAfter === undefined) return (await storage.list('')).objects.filter((o) => everything || isCopied(o.name));
  const [identity, slots, backups, segments] = await Promise.all([
    storage.stat(IDENTITY_OBJECT),
    storage.list(SLOTS_PREFIX),
    storage.list(BACKUPS_PREFIX),
    storage.list(SEGMENTS_PREFIX, { startAfter: `${segmentsAfter}.lz4` }),
  ]);
  return [...(identity ? [identity] : []), ...slots.objects, ...backups.objects, ...segments.objects];
}

export async function copyRepository(from: Repository, to: Repository, options: CopyOptions): Promise<CopyReport> {
  const started = performance.now();
  if (from.storage.location === to.storage.location)
    throw new PitrError('Usage', `--from and --into name the same repository (${from.storage.location})`, 'copy into another location');
  const identity = await sourceIdentity(from);
  // the target is listed before the source: what the source gains meanwhile is copied, never taken as present
  const after = await continuesFrom(from, options.segmentsAfter);
  const target = new Map((await listCopied(to.storage, after, true)).map((o) => [o.name, o]));
  const through = options.segmentsThrough;
  const listing = (await listCopied(from.storage, after)).filter(
    (o) => through === undefined || !o.name.startsWith(SEGMENTS_PREFIX) || o.name.replace(/\.(json|lz4)$/, '') <= through,
  );
  await checkTarget(to, target, identity);
  const spoolDir = await fs.mkdtemp(path.join(tmpdir(), 'pitr-copy-'));
  const run = new CopyRun(from.storage, to.storage, target, listing, spoolDir, options);
  try {
    await run.copyIdentity();
    await Promise.all([run.copySegments(), run.copyBackups()]);
  } finally {
    run.progress.finish();
    await fs.rm(spoolDir, { recursive: true, force: true });
  }
  const indexBuilt = run.report.copied.objects > 0 ? await buildIndex(to, identity, options.log) : false;
  const report = run.report;
  return { ...report, ok: report.refused.length === 0 && report.differs.length === 0, indexBuilt, seconds: (performance.now() - started) / 1000 };
}

/**
 * One complete backup of `from` into `to` (`pitr backup` and scheduled backups with several --repo):
 * its parts, then its manifest, checked and create-only like `copyRepository`; the identity first when
 * `to` is new. Only the backup's own objects are listed, however large the repositories.
 */
export async function copyBackupInto(from: Repository, to: Repository, id: string, options: CopyOptions): Promise<CopyReport> {
  const started = performance.now();
  const identity = await sourceIdentity(from);
  const prefix = `${BACKUPS_PREFIX}${id}/`;
  const identityInfo = async (storage: Storage): Promise<ObjectInfo[]> => {
    const info = await storage.stat(IDENTITY_OBJECT);
    return info ? [info] : [];
  };
  const target = new Map([...(await identityInfo(to.storage)), ...(await to.storage.list(prefix)).objects].map((o) => [o.name, o]));
  const listing = [...(await identityInfo(from.storage)), ...(await from.storage.list(prefix)).objects];
  await checkTarget(to, target, identity);
  const spoolDir = await fs.mkdtemp(path.join(tmpdir(), 'pitr-copy-'));
  const run = new CopyRun(from.storage, to.storage, target, listing, spoolDir, options);
  try {
    await run.copyIdentity();
    await run.copyBackups();
  } finally {
    run.progress.finish();
    await fs.rm(spoolDir, { recursive: true, force: true });
  }
  const report = run.report;
  const ok = report.refused.length === 0 && report.differs.length === 0 && (await to.storage.stat(`${prefix}${MANIFEST_FILE}`)) !== null;
  if (!ok)
    throw new PitrError(
      'Repository',
      `backup ${id} could not be stored in ${to.storage.location}: ${[...report.refused, ...report.differs].map((p) => `${p.object}: ${p.detail}`).join('; ') || 'its manifest is not there'}`,
      `run "pitr copy --from ${from.storage.location} --into ${to.storage.location}" once it can be written`,
    );
  return { ...report, ok, indexBuilt: false, seconds: (performance.now() - started) / 1000 };
}

async function sourceIdentity(from: Repository): Promise<RepositoryIdentity> {
  let identity: RepositoryIdentity | null;
  try {
    identity = await from.identity();
  } catch (error) {
    if (isPitrError(error, 'Integrity'))
      throw new PitrError(
        'Integrity',
        `the identity of ${from.storage.location} is damaged: ${messageOf(error)}`,
        'repair it first ("pitr verify --repair" with a good copy)',
      );
    throw error;
  }
  if (!identity) throw new PitrError('Repository', `no repository at ${from.storage.location} (it holds no ${IDENTITY_OBJECT})`, 'check --from');
  return identity;
}

/** The target must hold this source's repository, or nothing yet. */
async function checkTarget(to: Repository, target: ReadonlyMap<string, ObjectInfo>, source: RepositoryIdentity): Promise<void> {
  if (target.has(IDENTITY_OBJECT)) {
    const identity = await to.identity();
    if (identity && (identity.systemIdentifier !== source.systemIdentifier || identity.database !== source.database))
      throw new PitrError(
        'Repository',
        `repository ${to.storage.location} belongs to another database (system identifier ${identity.systemIdentifier}, database "${identity.database}"), not to the source's (system identifier ${source.systemIdentifier}, database "${source.database}")`,
        'copy into an empty location, or into a copy of this same repository',
      );
    return;
  }
  const other = [...target.keys()].find((name) => !IGNORED_IN_EMPTY_TARGET.some((prefix) => name.startsWith(prefix)));
  if (other)
    throw new PitrError(
      'Repository',
      `${to.storage.location} is not empty (it holds ${other}) and holds no repository`,
      'copy into an empty location, or into a copy of this same repository',
    );
}

/** The target's index, built from the segments it holds when it has none or its unindexed tail is long. */
async function buildIndex(to: Repository, identity: RepositoryIdentity, log: Logger): Promise<boolean> {
  try {
    const view = await ArchiveView.open(to);
    const indexed = view.source.catalog?.pages.reduce((n, p) => n + p.segments, 0) ?? 0;
    if (view.count - indexed < PAGE_FANOUT) return false;
    if (view.source.kind === 'index') {
      // an index that is sound: extended by the pages of what follows it, as the archiver does
      const maintainer = new IndexMaintainer(to, identity, log);
      maintainer.start();
      await maintainer.close();
      return true;
    }
    await rebuildIndex(to, identity, await view.all(), log);
    return true;
  } catch (error) {
    // the index is a cache: the target's readers list the segments without it
    log.warn({ event: 'copy_index_failed', error: messageOf(error) }, `the index of ${to.storage.location} was not built: ${messageOf(error)}`);
    return false;
  }
}

class CopyRun {
  readonly report: Omit<CopyReport, 'ok' | 'indexBuilt' | 'seconds'>;
  readonly progress: Progress;
  private readonly queue: PQueue;
  private readonly source: Map<string, ObjectInfo>;

  constructor(
    private readonly from: Storage,
    private readonly to: Storage,
    private readonly target: ReadonlyMap<string, ObjectInfo>,
    listing: readonly ObjectInfo[],
    private readonly spoolDir: string,
    private readonly options: CopyOptions,
  ) {
    this.source = new Map(listing.map((o) => [o.name, o]));
    this.queue = new PQueue({ concurrency: options.transfers });
    this.report = {
      from: from.location,
      to: to.location,
      copied: { objects: 0, bytes: 0 },
      present: { objects: 0, bytes: 0 },
      refused: [],
      differs: [],
      heldBack: 0,
      gone: 0,
    };
    const missing = listing.filter((o) => !target.has(o.name));
    this.progress = new Progress(
      'copy',
      missing.length,
      missing.reduce((n, o) => n + o.size, 0),
      options.log,
      { unit: 'objects' },
    );
  }

  /** Copies one object and counts the outcome; true when the target now holds it. */
  private async copy(name: string, check: ObjectCheck, equivalent?: (s: Buffer, t: Buffer) => boolean): Promise<boolean> {
    if (this.options.signal?.aborted)
      throw new PitrError('Interrupted', 'copy interrupted before its end', 'run the same "pitr copy" again: it copies what the target still lacks');
    const present = this.target.get(name);
    const source = this.source.get(name);
    const outcome = await copyObject({
      from: this.from,
      to: this.to,
      name,
      check,
      spoolDir: this.spoolDir,
      ...(source ? { source } : {}),
      ...(present ? { present } : {}),
      ...(equivalent ? { equivalent } : {}),
      onBytes: (n) => this.progress.addBytes(n),
    });
    return this.count(name, outcome);
  }

  private outcome(object: string, outcome: CopyOutcome): DataStep {
    return this.count(object, outcome) ? 'data' : 'failed';
  }

  private count(object: string, outcome: CopyOutcome): boolean {
    switch (outcome.status) {
      case 'copied':
        this.report.copied.objects++;
        this.report.copied.bytes += outcome.bytes;
        this.progress.itemDone();
        this.options.log.debug({ event: 'object_copied', object, bytes: outcome.bytes }, `copied ${object}`);
        return true;
      case 'present':
        this.report.present.objects++;
        this.report.present.bytes += outcome.bytes;
        return true;
      case 'differs':
        this.report.differs.push({ object, detail: outcome.detail });
        this.options.log.error({ event: 'copy_differs', object, detail: outcome.detail }, `${object}: ${outcome.detail}`);
        return false;
      case 'refused':
        this.report.refused.push({ object, detail: outcome.detail });
        this.options.log.error({ event: 'copy_refused', object, detail: outcome.detail }, `${object} not copied: ${outcome.detail}`);
        return false;
      case 'gone':
        this.report.gone++;
        return false;
      default: {
        const never: never = outcome;
        return never;
      }
    }
  }

  async copyIdentity(): Promise<void> {
    const sameSource = (s: Buffer, t: Buffer): boolean => {
      const a = decodeCheckedJson<RepositoryIdentity>(s, IDENTITY_OBJECT);
      const b = decodeCheckedJson<RepositoryIdentity>(t, IDENTITY_OBJECT);
      return a.systemIdentifier === b.systemIdentifier && a.database === b.database;
    };
    if (!(await this.copy(IDENTITY_OBJECT, { kind: 'checked-json' }, tolerant(sameSource))))
      throw new PitrError('Integrity', `the identity of ${this.from.location} could not be copied`, 'see the problems above; nothing else was copied');
  }

  /**
   * The live segments in chain order: data in parallel (bounded by the queue), each manifest once its
   * data and every manifest before it are in the target. Slot creation records go in before the first
   * segment at or after their consistent point, as the archive's writers stored them.
   */
  async copySegments(): Promise<void> {
    const manifests = liveSegmentNames([...this.source.keys()].filter((n) => n.startsWith(SEGMENTS_PREFIX) && n.endsWith('.json')));
    const records = [...this.source.keys()].filter((n) => /^slots\/[^/]+\/[0-9A-F]{16}\.json$/.test(n));
    const recordsBefore = (i: number): string[] => {
      const first = i < manifests.length ? segmentFirstHex(manifests[i] as string) : undefined;
      const previous = i > 0 ? segmentFirstHex(manifests[i - 1] as string) : undefined;
      return records.filter((r) => {
        const lsn = r.slice(-'0000000000000000.json'.length, -'.json'.length);
        return (first === undefined || lsn <= first) && (previous === undefined || lsn > previous);
      });
    };
    // the first segment not copied: those after it are held back (their manifests would leave a hole)
    let brokenAt = Infinity;
    const fail = (i: number): false => {
      if (i > brokenAt) this.report.heldBack++;
      brokenAt = Math.min(brokenAt, i);
      return false;
    };
    let chain: Promise<boolean> = Promise.resolve(true);
    for (let i = 0; i <= manifests.length; i++) {
      const name = manifests[i];
      const data: Promise<DataStep> =
        name === undefined
          ? Promise.resolve('data')
          : this.queue.add(async () => {
              if (i > brokenAt) return 'failed';
              const step = await this.copySegmentData(name);
              if (step === 'failed') brokenAt = Math.min(brokenAt, i);
              return step;
            });
      const previous = chain;
      chain = (async () => {
        const [step, whole] = await Promise.all([data, previous]);
        if (!whole || step === 'failed') return name === undefined ? false : fail(i);
        for (const record of recordsBefore(i)) await this.copy(record, { kind: 'checked-json', validate: isSlotCreation });
        if (name === undefined || step === 'done') return true;
        return (await this.copy(name, { kind: 'checked-json', validate: segmentNamed(name) }, tolerant(sameSegment))) || fail(i);
      })();
    }
    await chain;
  }

  /**
   * Both objects already in the target with the source's size and MD5 (GCS listings give both): counted as
   * present without reading either. A storage without MD5s in its listings is compared by reading.
   */
  private presentByListing(names: readonly string[]): boolean {
    const same = names.every((name) => {
      const [s, t] = [this.source.get(name), this.target.get(name)];
      return s && t && s.size === t.size && s.md5 !== undefined && s.md5 === t.md5;
    });
    if (!same) return false;
    for (const name of names) this.count(name, { status: 'present', bytes: this.target.get(name)?.size ?? 0 });
    return true;
  }

  /** A segment's data, checked against its manifest; 'done' when its manifest is in the target too (known from the listings). */
  private async copySegmentData(manifestName: string): Promise<DataStep> {
    const base = manifestName.slice(0, -'.json'.length);
    if (this.presentByListing([segmentDataName(base), manifestName])) return 'done';
    let manifest: SegmentManifest;
    try {
      manifest = decodeCheckedJson<SegmentManifest>(await this.from.read(manifestName), manifestName);
    } catch (error) {
      if (isPitrError(error, 'NotFound')) return this.outcome(manifestName, { status: 'gone' });
      if (!isPitrError(error, 'Integrity')) throw error;
      return this.outcome(manifestName, { status: 'refused', detail: messageOf(error).replace(`object ${manifestName} is corrupt: `, '') });
    }
    const wrong = segmentNamed(manifestName)(manifest as unknown as Record<string, unknown>);
    if (wrong) return this.outcome(manifestName, { status: 'refused', detail: wrong });
    return (await this.copy(segmentDataName(base), { kind: 'digest', sha256: manifest.sha256, bytes: manifest.storedBytes })) ? 'data' : 'failed';
  }

  /** Every complete backup: its started marker, its parts in parallel, its manifest once they are all in the target. */
  async copyBackups(): Promise<void> {
    const manifests = [...this.source.keys()].filter((n) => n.startsWith(BACKUPS_PREFIX) && n.split('/').length === 3 && n.endsWith(`/${MANIFEST_FILE}`));
    await Promise.all(manifests.map((name) => this.copyBackup(name)));
  }

  private async copyBackup(manifestName: string): Promise<void> {
    const prefix = manifestName.slice(0, -MANIFEST_FILE.length);
    const id = prefix.slice(BACKUPS_PREFIX.length, -1);
    const validate = (doc: Record<string, unknown>): string | undefined =>
      doc.kind === 'backup' && doc.id === id ? undefined : `manifest describes backup ${String(doc.id)}, not ${id}`;
    let manifest: BackupManifest;
    try {
      manifest = decodeCheckedJson<BackupManifest>(await this.from.read(manifestName), manifestName);
    } catch (error) {
      if (isPitrError(error, 'NotFound')) return void this.count(manifestName, { status: 'gone' });
      if (!isPitrError(error, 'Integrity')) throw error;
      this.count(manifestName, { status: 'refused', detail: messageOf(error).replace(`object ${manifestName} is corrupt: `, '') });
      return;
    }
    const wrong = validate(manifest as unknown as Record<string, unknown>);
    if (wrong) return void this.count(manifestName, { status: 'refused', detail: wrong });
    const startedName = `${prefix}${STARTED_FILE}`;
    if (this.source.has(startedName)) await this.queue.add(() => this.copy(startedName, { kind: 'checked-json' }));
    const parts = [manifest.schema.dump, manifest.schema.preData, manifest.schema.postData, ...manifest.tables.flatMap((t) => t.chunks)];
    const stored = await Promise.all(
      parts.map((part) => this.queue.add(() => this.copy(`${prefix}${part.name}`, { kind: 'digest', sha256: part.sha256, bytes: part.storedBytes }))),
    );
    if (stored.every(Boolean)) await this.copy(manifestName, { kind: 'checked-json', validate });
    else this.options.log.warn({ event: 'copy_backup_incomplete', backup: id }, `backup ${id} not copied whole: its manifest is left out`);
  }
}

/** Where a segment stands once its data step ran: data in the target (manifest to store), both in it already, or not copied. */
type DataStep = 'data' | 'done' | 'failed';

const isSlotCreation = (doc: Record<string, unknown>): string | undefined => (doc.kind === 'slot-creation' ? undefined : 'not a slot creation record');

/** The first commit LSN of a segment, as the 16 hex digits of its name. */
const segmentFirstHex = (manifestName: string): string => (manifestName.split('/').pop() as string).slice(0, 16);

const segmentNamed =
  (manifestName: string) =>
  (doc: Record<string, unknown>): string | undefined => {
    const base = manifestName.slice(0, -'.json'.length);
    return doc.kind === 'segment' && doc.name === base ? undefined : `manifest names segment ${String(doc.name)}, not ${base}`;
  };

/** Two manifests of one segment written separately (each repository by its own writer) agree on what the segment holds. */
function sameSegment(s: Buffer, t: Buffer): boolean {
  const a = decodeCheckedJson<SegmentManifest>(s, 'source manifest');
  const b = decodeCheckedJson<SegmentManifest>(t, 'target manifest');
  return a.name === b.name && a.sha256 === b.sha256 && a.storedBytes === b.storedBytes && a.previous?.sha256 === b.previous?.sha256;
}

/** An equivalence test that answers false for a document it cannot read (a damaged target copy differs). */
const tolerant =
  (equivalent: (s: Buffer, t: Buffer) => boolean) =>
  (s: Buffer, t: Buffer): boolean => {
    try {
      return equivalent(s, t);
    } catch {
      return false;
    }
  };
