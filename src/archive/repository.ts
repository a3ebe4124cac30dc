import fs from 'node:fs/promises';
import { PitrError, isPitrError } from '../errors';
import type { Storage } from '../storage/storage';
import { decodeCheckedJson, encodeCheckedJson } from './checked-json';
import { readNewestCatalog } from './index-catalog-store';
import { FORMAT_VERSION } from './segment-format';
import { liveSegmentNames } from './segment-names';
import { SEGMENTS_PREFIX, segmentDataName, segmentManifestName, type SegmentManifest } from './segment-manifest';

export const IDENTITY_OBJECT = 'repository.json';

/** Which source a repository belongs to; written once by `pitr init`, checked by every writer. */
export interface RepositoryIdentity {
  format: number;
  systemIdentifier: string;
  database: string;
  createdAt: string;
  /**
   * Present when the repository is encrypted (docs/format.md, "Encryption"): the sealed format and the
   * key id its first objects were sealed with (each object's header names its own key id).
   */
  encryption?: { scheme: string; firstKeyId: string };
}

/** The archive's view of a storage: identity, segment chain. */
export class Repository {
  constructor(readonly storage: Storage) {}

  async identity(): Promise<RepositoryIdentity | null> {
    const info = await this.storage.stat(IDENTITY_OBJECT);
    if (!info) return null;
    return decodeCheckedJson<RepositoryIdentity>(await this.storage.read(IDENTITY_OBJECT), IDENTITY_OBJECT);
  }

  /** Records the source on first use; refuses a repository that belongs to another source. */
  async claim(source: { systemIdentifier: string; database: string }): Promise<RepositoryIdentity> {
    const existing = await this.identity();
    if (existing) {
      this.checkBelongs(existing, source);
      return existing;
    }
    const sealing = this.storage.encryption;
    const identity: RepositoryIdentity = {
      format: FORMAT_VERSION,
      ...source,
      createdAt: new Date().toISOString(),
      ...(sealing?.currentKeyId ? { encryption: { scheme: sealing.scheme, firstKeyId: sealing.currentKeyId } } : {}),
    };
    await this.storage.put(IDENTITY_OBJECT, { kind: 'buffer', data: encodeCheckedJson(identity) }).catch(async (error: unknown) => {
      // A concurrent claim for the same source wrote a different createdAt: fine if it is ours.
      const raced = await this.identity();
      if (!raced) throw error;
      this.checkBelongs(raced, source);
    });
    return (await this.identity()) as RepositoryIdentity;
  }

  private checkBelongs(identity: RepositoryIdentity, source: { systemIdentifier: string; database: string }): void {
    if (identity.systemIdentifier !== source.systemIdentifier || identity.database !== source.database) {
      throw new PitrError(
        'Repository',
        `repository ${this.storage.location} belongs to another database (system identifier ${identity.systemIdentifier}, database "${identity.database}"), not to this source (system identifier ${source.systemIdentifier}, database "${source.database}")`,
        "point --repo at this source's own repository, or at an empty location for a new one",
      );
    }
  }

  /** Manifest names of every segment, in LSN order; a compacted segment replaces those it was made from. */
  async segmentManifestNames(): Promise<string[]> {
    const { objects } = await this.storage.list(SEGMENTS_PREFIX);
    return liveSegmentNames(objects.map((o) => o.name).filter((n) => n.endsWith('.json')));
  }

  /**
   * The newest segment's manifest, or null for an empty archive. With an index, only what follows its
   * last page is listed (archiver start, status across repositories and catch-ups cost the same
   * whatever the archive's age); without one, or when that segment is gone (merged or pruned
   * meanwhile), the newest timeline group is listed.
   */
  async latestSegment(): Promise<SegmentManifest | null> {
    const { catalog } = await readNewestCatalog(this);
    const indexed = catalog?.pages[catalog.pages.length - 1]?.last;
    if (indexed) {
      const after = segmentManifestName(indexed.name);
      const { objects } = await this.storage.list(SEGMENTS_PREFIX, { startAfter: after });
      const tail = objects.map((o) => o.name).filter((n) => n.endsWith('.json'));
      try {
        return await this.readSegmentManifest(tail[tail.length - 1] ?? after);
      } catch (error) {
        if (!isPitrError(error, 'NotFound')) throw error;
      }
    }
    const { prefixes } = await this.storage.list(SEGMENTS_PREFIX, { delimiter: '/' });
    for (const group of [...prefixes].reverse()) {
      const { objects } = await this.storage.list(group);
      const manifests = objects.map((o) => o.name).filter((n) => n.endsWith('.json'));
      const last = manifests[manifests.length - 1];
      if (last) return this.readSegmentManifest(last);
    }
    return null;
  }

  async readSegmentManifest(name: string): Promise<SegmentManifest> {
    return decodeCheckedJson<SegmentManifest>(await this.storage.read(name), name);
  }

  /**
   * Data first, manifest last: a segment without its manifest is not part of the archive. `fence` runs
   * before each of the two is written (the writer lease's check). The spool file is consumed by the
   * data put; called again after a failure past that point, the stored data object stands in for it.
   * `beforeManifest` is waited for between the two: the archiver stores manifests in chain order, so a
   * crash never leaves a segment stored after one that is not. With `keepSpool` the spool file is left
   * in place (an archiver writing several repositories removes it once every one holds the segment).
   */
  async storeSegment(
    base: string,
    spoolPath: string,
    manifest: SegmentManifest,
    fence: () => Promise<void> = async () => undefined,
    beforeManifest: () => Promise<void> = async () => undefined,
    keepSpool = false,
  ): Promise<void> {
    const data = segmentDataName(base);
    await fence();
    if (await exists(spoolPath)) await this.storage.put(data, { kind: 'file', path: spoolPath, consume: !keepSpool });
    else if ((await this.storage.stat(data))?.size !== manifest.storedBytes)
      throw new PitrError('Internal', `the spool file of segment ${base} is gone and its data object is not in ${this.storage.location}`);
    await beforeManifest();
    await fence();
    await this.storage.put(segmentManifestName(base), { kind: 'buffer', data: encodeCheckedJson(manifest) });
  }
}

const exists = (file: string): Promise<boolean> =>
  fs.access(file).then(
    () => true,
    () => false,
  );
