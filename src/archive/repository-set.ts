import { PitrError, messageOf } from '../errors';
import { FallbackStorage, type ObjectCheck } from '../storage/fallback-storage';
import type { Storage } from '../storage/storage';
import { BACKUPS_PREFIX, MANIFEST_FILE, type BackupManifest, type StoredPart } from './backup-manifest';
import { decodeCheckedJson } from './checked-json';
import { IDENTITY_OBJECT, Repository, type RepositoryIdentity } from './repository';
import { SEGMENTS_PREFIX, type SegmentManifest } from './segment-manifest';

/** One repository given to a reading command, opened. */
export interface SetMember {
  name: string;
  storage: Storage;
  /** The storage class configured for it (gs:// only), if any. */
  storageClass?: string;
}

/** How much a command read from one repository (the `repositories` field of its --json output). */
export interface RepositoryUse {
  name: string;
  location: string;
  objectsRead: number;
}

/** Segment digests remembered from manifests read, so a segment's data read needs no second manifest read. */
const DIGESTS_KEPT = 4096;

/**
 * The repositories a reading command (restore, log, undo, drill, list) was given, as one repository:
 * every object is read from the first repository that holds an intact copy of it (FallbackStorage), and
 * the archive's shape (segments, backups) is the union of what they hold. How a copy is known intact:
 *
 *   - a JSON object (repository.json, segment and backup manifests, index pages) checks itself;
 *   - a segment data object: the size and SHA-256 its manifest records;
 *   - a backup object: the size and SHA-256 the backup's manifest records for it.
 *
 * Every repository must belong to the same source (repository.json).
 */
export class RepositorySet {
  private readonly digests = new Map<string, { sha256: string; size: number }>();
  private backup: { id: string; parts: Promise<Map<string, StoredPart>> } | undefined;

  private constructor(
    readonly members: readonly SetMember[],
    private readonly storage: FallbackStorage,
    readonly repo: Repository,
    readonly identity: RepositoryIdentity,
  ) {}

  /**
   * Opens the repositories for reading, in the order given. Refuses a location that holds no repository
   * and a mix of sources; with several, one that cannot be reached at all is left out with a warning.
   */
  static async open(members: readonly SetMember[], warn: (message: string) => void): Promise<RepositorySet> {
    const usable: { member: SetMember; identity: RepositoryIdentity }[] = [];
    let firstError: unknown;
    for (const member of members) {
      let identity: RepositoryIdentity | null;
      try {
        identity = await new Repository(member.storage).identity();
      } catch (error) {
        if (members.length === 1) throw error;
        firstError ??= error;
        warn(`${describe(member)}: cannot read ${IDENTITY_OBJECT}: ${messageOf(error)}; not using this repository`);
        continue;
      }
      if (!identity)
        throw new PitrError(
          'Repository',
          `no repository at ${member.storage.location} (it holds no ${IDENTITY_OBJECT})`,
          'check --repo or PITR_REPO; "pitr init" or "pitr backup" creates a repository',
        );
      const first = usable[0];
      if (first && (first.identity.systemIdentifier !== identity.systemIdentifier || first.identity.database !== identity.database))
        throw new PitrError(
          'Repository',
          `repositories ${describe(first.member)} and ${describe(member)} belong to different sources: system identifier ${first.identity.systemIdentifier}, database "${first.identity.database}" and system identifier ${identity.systemIdentifier}, database "${identity.database}"`,
          'give only repositories of one source (copies of the same archive)',
        );
      usable.push({ member, identity });
    }
    const first = usable[0];
    if (!first) throw firstError;
    // the checks read manifests through the set itself: the storage asks the set once it exists
    const holder: { set?: RepositorySet } = {};
    const storage = new FallbackStorage(
      usable.map((u) => u.member),
      (name) => (holder.set as RepositorySet).checkOf(name),
      warn,
    );
    holder.set = new RepositorySet(members, storage, new Repository(storage), first.identity);
    return holder.set;
  }

  /** Objects read from each repository given, in the order given (0 for one left out). */
  usage(): RepositoryUse[] {
    return this.members.map((m) => ({
      name: m.name,
      location: m.storage.location,
      objectsRead: this.storage.members.find((s) => s.storage === m.storage)?.objectsRead ?? 0,
    }));
  }

  /**
   * "read from repo1 (/a)" or, when several were used, "read from repo1 (/a): 40 objects, repo2 (gs://b/c): 3 objects";
   * then the repositories left out after an error, if any.
   */
  describeUsage(): string {
    const used = this.usage().filter((u) => u.objectsRead > 0);
    const leftOut = this.storage.members.filter((m) => m.leftOut !== undefined);
    const after = leftOut.length === 0 ? '' : `; left out after an error: ${leftOut.map((m) => `${m.name} (${m.storage.location})`).join(', ')}`;
    if (used.length <= 1) return `read from ${used.map((u) => `${u.name} (${u.location})`).join('') || 'no repository'}${after}`;
    return `read from ${used.map((u) => `${u.name} (${u.location}): ${u.objectsRead} object${u.objectsRead === 1 ? '' : 's'}`).join(', ')}${after}`;
  }

  /** Removes the temporary copies made while verifying objects. */
  close(): Promise<void> {
    return this.storage.close();
  }

  private async checkOf(name: string): Promise<ObjectCheck> {
    if (name.endsWith('.json')) return { kind: 'whole', intact: (bytes) => this.intactJson(name, bytes) };
    if (name.startsWith(SEGMENTS_PREFIX) && name.endsWith('.lz4')) {
      const base = name.slice(0, -'.lz4'.length);
      let digest = this.digests.get(base);
      if (!digest) {
        // reading the manifest (itself from the first intact copy) remembers the digest
        await this.repo.readSegmentManifest(`${base}.json`).catch(() => undefined);
        digest = this.digests.get(base);
      }
      return digest ? { kind: 'digest', ...digest } : { kind: 'none' };
    }
    if (name.startsWith(BACKUPS_PREFIX)) {
      const [id, ...rest] = name.slice(BACKUPS_PREFIX.length).split('/');
      const part = rest.join('/');
      if (id === undefined || part === '') return { kind: 'none' };
      const stored = (await this.backupParts(id)).get(part);
      return stored ? { kind: 'digest', sha256: stored.sha256, size: stored.storedBytes } : { kind: 'none' };
    }
    return { kind: 'none' };
  }

  private intactJson(name: string, bytes: Buffer): boolean {
    let doc: object;
    try {
      doc = decodeCheckedJson<object>(bytes, name);
    } catch {
      return false;
    }
    const manifest = doc as Partial<SegmentManifest>;
    if (manifest.kind === 'segment' && typeof manifest.name === 'string' && typeof manifest.sha256 === 'string') {
      if (this.digests.size >= DIGESTS_KEPT) this.digests.delete(this.digests.keys().next().value as string);
      this.digests.set(manifest.name, { sha256: manifest.sha256, size: manifest.storedBytes ?? -1 });
    }
    return true;
  }

  /** The stored parts of the backup being read, by name (restores read one backup; the last one asked for is kept). */
  private backupParts(id: string): Promise<Map<string, StoredPart>> {
    if (this.backup?.id !== id) {
      const name = `${BACKUPS_PREFIX}${id}/${MANIFEST_FILE}`;
      const parts = this.storage.read(name).then(
        (bytes) => partsOf(decodeCheckedJson<BackupManifest>(bytes, name)),
        // no intact manifest: nothing to check the backup's objects against (the reader will refuse it)
        () => new Map<string, StoredPart>(),
      );
      this.backup = { id, parts };
    }
    return this.backup.parts;
  }
}

function partsOf(manifest: BackupManifest): Map<string, StoredPart> {
  const parts = new Map<string, StoredPart>();
  const { preData, postData, dump } = manifest.schema;
  for (const part of [preData, postData, dump]) parts.set(part.name, part);
  for (const table of manifest.tables) for (const chunk of table.chunks) parts.set(chunk.name, chunk);
  return parts;
}

const describe = (m: SetMember): string => `${m.name} (${m.storage.location})`;
