import { Readable } from 'node:stream';
import { decodeCheckedJson } from '../archive/checked-json';
import { digestStream } from '../archive/checked-stream';
import { IDENTITY_OBJECT, type Repository } from '../archive/repository';
import { SEGMENTS_PREFIX, segmentDataName, segmentManifestName, type SegmentManifest } from '../archive/segment-manifest';
import { readSegmentRecords } from '../archive/segment-reader';
import { BACKUPS_PREFIX, MANIFEST_FILE, STARTED_FILE, type BackupManifest, type StoredPart } from '../archive/backup-manifest';
import { parseLsn } from '../pg/lsn';
import { parseIsoMicros } from '../pg/pg-time';
import { decodePgoutput } from '../archive/pgoutput-decoder';
import { isPitrError, messageOf } from '../errors';
import { SLOTS_PREFIX, slotCreationName, type SlotCreation } from '../archive/slot-creation';
import { verifyIndex } from './verify-index';
import { liveSegmentNames, uploadUnderWay } from '../archive/segment-names';
import { archiveGaps, followsDirectly, gapPointText, type ArchiveGap } from '../archive/archive-gaps';
import { unreplayableChanges } from './schema-change-check';
import { verifySealedRepository } from './verify-sealed';

/** unreplayable: a schema change replay would refuse (with --ddl). */
export type ProblemStatus = 'missing' | 'corrupt' | 'unreferenced' | 'gap' | 'unreplayable';

export interface Problem {
  object: string;
  status: ProblemStatus;
  detail: string;
}

export interface VerifyReport {
  ok: boolean;
  repository: string;
  checked: { objects: number; bytes: number };
  problems: Problem[];
  /**
   * Gaps recorded when a replication slot was re-created, with a complete backup taken after them: the
   * points inside stay unrestorable, but the archive is as it should be and restorable to its end, so
   * they are listed without making the repository fail. Until such a backup exists they are problems.
   */
  recordedGaps: Problem[];
  /**
   * An encrypted repository verified without its key: only what needs no key was checked
   * (verify-sealed.ts): envelopes, names and presence, not contents nor the manifests' chain.
   */
  withoutKey?: true;
}

export interface VerifyOptions {
  /** Also decompress and decode every record of every segment. */
  deep?: boolean;
  /**
   * Only what matters from this time on (microseconds since the Unix epoch): the segments with commits at
   * or after it, and the backups a restore to it or later may start from (the newest that ended by then,
   * or the oldest when none had, and every newer one). Older objects are neither read nor reported.
   */
  since?: bigint;
  /** Also read the segments holding schema changes and report those a restore could not replay. */
  ddl?: boolean;
}

/** Reads every object the repository's manifests name and checks it, collecting every problem found. */
export async function verifyRepository(repo: Repository, options: VerifyOptions = {}): Promise<VerifyReport> {
  const encryption = repo.storage.encryption;
  if (encryption && encryption.currentKeyId === undefined) {
    const { problems, checked } = await verifySealedRepository(repo, encryption);
    return { ok: problems.length === 0, repository: repo.storage.location, checked, problems, recordedGaps: [], withoutKey: true };
  }
  const verifier = new Verifier(repo, options.deep ?? false, options.since, options.ddl ?? false);
  await verifier.run();
  return {
    ok: verifier.problems.length === 0,
    repository: repo.storage.location,
    checked: verifier.checked,
    problems: verifier.problems,
    recordedGaps: verifier.recordedGaps,
  };
}

class Verifier {
  readonly problems: Problem[] = [];
  readonly recordedGaps: Problem[] = [];
  readonly checked = { objects: 0, bytes: 0 };
  /** With `since`: the newest segment wholly before it, read only to check the chain's link into the range. */
  private anchor: SegmentManifest | undefined;
  private readonly segmentsByName = new Map<string, SegmentManifest>();

  constructor(
    private readonly repo: Repository,
    private readonly deep: boolean,
    private readonly since: bigint | undefined,
    private readonly ddl: boolean,
  ) {}

  private get storage(): Repository['storage'] {
    return this.repo.storage;
  }

  private report(object: string, status: ProblemStatus, detail: string): void {
    this.problems.push({ object, status, detail });
  }

  async run(): Promise<void> {
    await this.checkIdentity();
    const creations = await this.checkSlotCreations();
    const segments = await this.checkSegments();
    const backups = await this.checkBackups();
    const gaps = archiveGaps({ segmentNames: segments.map((s) => segmentManifestName(s.name)), segments, creations, backups: backups.map((b) => b.manifest) });
    this.checkGaps(gaps, backups);
    if (this.since === undefined) for (const p of await verifyIndex(this.repo, segments)) this.report(p.object, p.status, p.detail);
    for (const { prefix, manifest } of backups) this.checkBackupCoverage(prefix, manifest, segments, gaps);
    if (this.ddl)
      for (const change of await unreplayableChanges(this.repo, segments))
        this.report(
          change.segment,
          'unreplayable',
          `schema change committed at ${change.commitLsn} (${change.commitTime}, xid ${change.xid}), ${change.tag}: ${change.reason}; a restore to a point at or after it stops there`,
        );
  }

  /** The slot creation records `pitr init` stored: each checked, and matched against its name. */
  private async checkSlotCreations(): Promise<SlotCreation[]> {
    const { objects } = await this.storage.list(SLOTS_PREFIX);
    const records: SlotCreation[] = [];
    for (const object of objects) {
      if (!/^slots\/[^/]+\/[0-9A-F]{16}\.json$/.test(object.name)) {
        this.report(object.name, 'unreferenced', 'not a slot creation record');
        continue;
      }
      const record = await this.readChecked<SlotCreation>(object.name);
      if (!record) continue;
      let named: string | undefined;
      try {
        named = slotCreationName(record.slot, parseLsn(record.consistentPoint));
      } catch {
        named = undefined;
      }
      if (record.kind !== 'slot-creation' || named !== object.name) {
        this.report(object.name, 'corrupt', `record describes slot ${String(record.slot)} at ${String(record.consistentPoint)}, not what its name says`);
        continue;
      }
      records.push(record);
    }
    return records;
  }

  /**
   * Broken links are problems. A recorded gap (a slot re-created) is one until a complete backup is
   * aligned after it; from then on the archive is restorable to its end again and the gap is listed apart.
   */
  private checkGaps(gaps: readonly ArchiveGap[], backups: readonly { manifest: BackupManifest }[]): void {
    for (const gap of gaps) {
      const times = `from ${gapPointText(gap.from)} to ${gap.to.time} (${gap.to.lsn})`;
      if (gap.cause === 'broken-chain') {
        const before = gap.before as string;
        this.report(segmentManifestName(before), 'gap', `${this.linkDetail(gap)}: gap between ${gap.fromLsn} and ${gap.toLsn}, ${times}`);
        continue;
      }
      const object = slotCreationName(gap.slot as string, parseLsn(gap.toLsn));
      const after = backups.find((b) => parseLsn(b.manifest.alignedLsn) >= parseLsn(gap.toLsn));
      const detail =
        `replication slot "${gap.slot ?? '?'}" re-created: gap ${times}, nothing committed in between was archived and no point inside can be restored; ` +
        (after
          ? `backup ${after.manifest.id} (aligned at ${after.manifest.alignedLsn}) restores from after it`
          : 'no base backup after it, so nothing after it can be restored: take one now ("pitr backup")');
      if (after) this.recordedGaps.push({ object, status: 'gap', detail });
      else this.report(object, 'gap', detail);
    }
  }

  /** Why a link is broken: a wrong checksum, or another predecessor named. */
  private linkDetail(gap: ArchiveGap): string {
    const segment = this.segmentsByName.get(gap.before as string) as SegmentManifest;
    const previous = this.segmentsByName.get(gap.after as string) as SegmentManifest;
    return segment.previous?.name === previous.name
      ? `its previous sha256 ${segment.previous.sha256} does not match ${previous.name} (${previous.sha256})`
      : `follows ${segment.previous?.name ?? 'nothing'}, not ${previous.name}`;
  }

  /** A checked JSON document, or undefined after reporting it missing or corrupt. */
  private async readChecked<T extends object>(name: string): Promise<T | undefined> {
    let bytes: Buffer;
    try {
      bytes = await this.storage.read(name);
    } catch (error) {
      if (isPitrError(error, 'NotFound')) {
        this.report(name, 'missing', 'object does not exist');
        return undefined;
      }
      // a store that checks digests on download (GCS) refuses a damaged object outright
      if (isPitrError(error, 'Integrity')) {
        this.report(name, 'corrupt', messageOf(error));
        return undefined;
      }
      throw error;
    }
    this.checked.objects++;
    this.checked.bytes += bytes.length;
    try {
      return decodeCheckedJson<T>(bytes, name);
    } catch (error) {
      this.report(name, 'corrupt', messageOf(error).replace(`object ${name} is corrupt: `, ''));
      return undefined;
    }
  }

  /** Streams an object through SHA-256 and compares digest and size with what its manifest says. */
  private async checkPart(name: string, expected: { sha256: string; storedBytes: number }): Promise<void> {
    let digest: { sha256: string; bytes: number };
    try {
      digest = await digestStream(this.storage.readStream(name));
    } catch (error) {
      if (isPitrError(error, 'NotFound')) return this.report(name, 'missing', 'object does not exist');
      if (isPitrError(error, 'Integrity')) return this.report(name, 'corrupt', messageOf(error));
      throw error;
    }
    const { sha256: actual, bytes: size } = digest;
    this.checked.objects++;
    this.checked.bytes += size;
    if (actual !== expected.sha256) this.report(name, 'corrupt', `sha256 ${actual} does not match its manifest (${expected.sha256})`);
    else if (size !== expected.storedBytes) this.report(name, 'corrupt', `${size} bytes, its manifest says ${expected.storedBytes}`);
  }

  /** Deep check of a segment: hashes, decompresses and decodes every record in one pass. */
  private async checkSegmentDeep(manifest: SegmentManifest): Promise<void> {
    const name = segmentDataName(manifest.name);
    if (!(await this.storage.stat(name))) return this.report(name, 'missing', 'object does not exist');
    let size = 0;
    const storage = this.storage;
    async function* counted(): AsyncGenerator<Buffer> {
      for await (const chunk of storage.readStream(name)) {
        size += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
    }
    let transactions = 0;
    let records = 0;
    try {
      for await (const record of readSegmentRecords(Readable.from(counted()), name, manifest.sha256)) {
        records++;
        try {
          if (decodePgoutput(record).tag === 'B') transactions++;
        } catch (error) {
          this.report(name, 'corrupt', `record ${records} cannot be decoded: ${messageOf(error)}`);
          return;
        }
      }
    } catch (error) {
      if (isPitrError(error, 'NotFound')) return this.report(name, 'missing', 'object does not exist');
      if (!isPitrError(error, 'Integrity')) throw error;
      this.report(name, 'corrupt', messageOf(error).replace(new RegExp(`^segment ${escapeRegExp(name)} (is corrupt: )?`), ''));
      return;
    } finally {
      this.checked.objects++;
      this.checked.bytes += size;
    }
    if (size !== manifest.storedBytes) this.report(name, 'corrupt', `${size} bytes, its manifest says ${manifest.storedBytes}`);
    else if (transactions !== manifest.transactions)
      this.report(name, 'corrupt', `holds ${transactions} transactions, its manifest says ${manifest.transactions}`);
  }

  private async checkIdentity(): Promise<void> {
    if (!(await this.storage.stat(IDENTITY_OBJECT))) {
      this.report(IDENTITY_OBJECT, 'missing', 'the repository has no identity (run "pitr init")');
      return;
    }
    await this.readChecked(IDENTITY_OBJECT);
  }

  /** Every segment manifest and data object, and the chain. Returns the readable manifests in LSN order. */
  private async checkSegments(): Promise<SegmentManifest[]> {
    const { objects: all } = await this.storage.list(SEGMENTS_PREFIX);
    const objects = this.since === undefined ? all : await this.segmentsSince(all, this.since);
    const names = new Set(objects.map((o) => o.name));
    const manifests: SegmentManifest[] = this.anchor ? [this.anchor] : [];
    const referenced = new Set<string>();
    const jsonNames = objects.map((o) => o.name).filter((n) => n.endsWith('.json'));
    const live = new Set(liveSegmentNames(jsonNames));
    for (const object of objects) {
      if (!object.name.endsWith('.json')) continue;
      const base = object.name.slice(0, -'.json'.length);
      referenced.add(object.name);
      referenced.add(segmentDataName(base));
      if (!live.has(object.name)) {
        // left by an interrupted "pitr compact": a compacted segment holds the same transactions
        for (const name of [object.name, segmentDataName(base)].filter((n) => names.has(n)))
          this.report(name, 'unreferenced', 'superseded by a compacted segment holding the same transactions; the next "pitr compact" removes it');
        continue;
      }
      const manifest = await this.readChecked<SegmentManifest>(object.name);
      if (!manifest) continue;
      if (manifest.kind !== 'segment' || manifest.name !== base) {
        this.report(object.name, 'corrupt', `manifest names segment ${String(manifest.name)}, not ${base}`);
        continue;
      }
      manifests.push(manifest);
      if (!names.has(segmentDataName(base))) this.report(segmentDataName(base), 'missing', `object does not exist (named by ${object.name})`);
      else if (this.deep) await this.checkSegmentDeep(manifest);
      else await this.checkPart(segmentDataName(base), manifest);
    }
    const newest = jsonNames.length > 0 ? (jsonNames[jsonNames.length - 1] as string).slice(0, -'.json'.length) : '';
    for (const object of objects) {
      if (referenced.has(object.name)) continue;
      if (uploadUnderWay(object.name, newest)) continue;
      this.report(
        object.name,
        'unreferenced',
        object.name.endsWith('.lz4') ? 'segment data without a manifest: not part of the archive' : 'not a segment object',
      );
    }
    for (const manifest of manifests) this.segmentsByName.set(manifest.name, manifest);
    return manifests;
  }

  /**
   * The segment objects from `since` on: walking back from the newest manifest, the first whose last commit
   * is before `since` is the anchor; everything after it is checked. Unreadable manifests met on the way
   * are inside the range (and reported there).
   */
  private async segmentsSince(all: readonly { name: string; size: number }[], since: bigint): Promise<{ name: string; size: number }[]> {
    const manifestNames = all.map((o) => o.name).filter((n) => n.endsWith('.json'));
    for (let i = manifestNames.length - 1; i >= 0 && !this.anchor; i--) {
      const manifest = await this.repo.readSegmentManifest(manifestNames[i] as string).catch(() => undefined);
      if (manifest && parseIsoMicros(manifest.lastCommitTime) < since) this.anchor = manifest;
    }
    if (!this.anchor) return [...all];
    const after = this.anchor.name;
    return all.filter((o) => o.name.replace(/\.(json|lz4)$/, '') > after);
  }

  /** Backup folders from `since` on: walking back from the newest, up to the first complete one that ended by then. */
  private async backupsSince(prefixes: readonly string[], since: bigint): Promise<string[]> {
    for (let i = prefixes.length - 1; i >= 0; i--) {
      const name = `${prefixes[i] as string}${MANIFEST_FILE}`;
      if (!(await this.storage.stat(name))) continue;
      const manifest = await this.storage
        .read(name)
        .then((bytes) => decodeCheckedJson<BackupManifest>(bytes, name))
        .catch(() => undefined);
      if (manifest && parseIsoMicros(manifest.endTime) <= since) return prefixes.slice(i);
    }
    return [...prefixes];
  }

  /** Every backup folder; returns the complete backups whose manifest could be read. */
  private async checkBackups(): Promise<{ prefix: string; manifest: BackupManifest }[]> {
    const readable: { prefix: string; manifest: BackupManifest }[] = [];
    const listing = await this.storage.list(BACKUPS_PREFIX, { delimiter: '/' });
    const { objects: loose } = listing;
    const prefixes = this.since === undefined ? listing.prefixes : await this.backupsSince(listing.prefixes, this.since);
    for (const object of loose) this.report(object.name, 'unreferenced', 'not inside a backup folder');
    for (const prefix of prefixes) {
      const id = prefix.slice(BACKUPS_PREFIX.length, -1);
      const { objects } = await this.storage.list(prefix);
      const manifestName = `${prefix}${MANIFEST_FILE}`;
      if (!objects.some((o) => o.name === manifestName)) {
        const started = objects.some((o) => o.name === `${prefix}${STARTED_FILE}`);
        this.report(
          prefix,
          'unreferenced',
          `incomplete backup: no ${MANIFEST_FILE}${started ? ` (${STARTED_FILE} present: in progress, or dead and removed by the next "pitr backup")` : ''}`,
        );
        continue;
      }
      const manifest = await this.readChecked<BackupManifest>(manifestName);
      if (!manifest) continue;
      if (manifest.kind !== 'backup' || manifest.id !== id) {
        this.report(manifestName, 'corrupt', `manifest describes backup ${String(manifest.id)}, not ${id}`);
        continue;
      }
      const parts: StoredPart[] = [manifest.schema.dump, manifest.schema.preData, manifest.schema.postData, ...manifest.tables.flatMap((t) => t.chunks)];
      const present = new Set(objects.map((o) => o.name));
      const referenced = new Set([manifestName, `${prefix}${STARTED_FILE}`]);
      for (const part of parts) {
        const name = `${prefix}${part.name}`;
        referenced.add(name);
        if (!present.has(name)) this.report(name, 'missing', `object does not exist (named by ${manifestName})`);
        else await this.checkPart(name, part);
      }
      for (const object of objects) if (!referenced.has(object.name)) this.report(object.name, 'unreferenced', `not named by ${manifestName}`);
      readable.push({ prefix, manifest });
    }
    return readable;
  }

  /**
   * Replay from a backup needs every transaction committed at or after its aligned LSN: the chain must be
   * unbroken from there to the archive's end. A break matters when the segment after it starts past the
   * aligned LSN (the missing transactions may then commit at or after it). A recorded gap ends the check
   * unreported here: its own entry says what stays restorable.
   */
  private checkBackupCoverage(prefix: string, backup: BackupManifest, segments: SegmentManifest[], gaps: readonly ArchiveGap[]): void {
    const aligned = parseLsn(backup.alignedLsn);
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i] as SegmentManifest;
      if (parseLsn(segment.firstCommitLsn) <= aligned) continue;
      if (segment === this.anchor) continue; // with --since: the chain before it is not checked
      const previous = segments[i - 1];
      if (previous ? followsDirectly(previous, segment) : segment.previous === null) continue;
      if (gaps.some((g) => g.cause === 'slot-recreated' && g.before === segment.name)) return;
      const from = previous ? previous.endLsn : `the start of the archive (${segment.previous?.name ?? '?'} is absent)`;
      this.report(
        prefix,
        'gap',
        `backup aligned at ${backup.alignedLsn} cannot be replayed to the archive's end: gap between ${from} and ${segment.firstCommitLsn}`,
      );
      return;
    }
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
